"""QuickCall of a user's phones over HTTP (SPEC §6.1): every enabled device the user owns or is
hotdesked into rings at once, on one node or on several; the first to answer wins."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fixtures_web import assert_error
from test_actions_support import (
    Bridge,
    bridge_fixture,
    originate,
    wait_until,
    xmlstatus_user,
)
from test_actions_support import expected_originate as expected
from test_actions_support import success_data as ok


@pytest.fixture
def bridge(start_bridge, fake_freeswitch_factory, esl_pool_factory) -> Iterator[Bridge]:
    yield from bridge_fixture(start_bridge, fake_freeswitch_factory, esl_pool_factory)


@pytest.fixture
def bridge2(start_bridge, fake_freeswitch_factory, esl_pool_factory) -> Iterator[Bridge]:
    yield from bridge_fixture(start_bridge, fake_freeswitch_factory, esl_pool_factory, nodes=2)


# --- user quickcall -----------------------------------------------------------------------------

def test_user_quickcall_rings_every_enabled_device_owned_or_hotdesked(bridge: Bridge) -> None:
    user = bridge.user(caller_id={"external": {"name": "Uma User", "number": "+15557770000"}})
    someone = bridge.user(first_name="Otto", last_name="Owner")
    ringing = [
        bridge.device("2001", owner_id=user["id"]),
        bridge.device("2002", owner_id=user["id"]),
        bridge.device("2003", owner_id=someone["id"], hotdesk={"users": {user["id"]: {}}}),
    ]
    bridge.device("2004", owner_id=user["id"], enabled=False)
    bridge.device("2005", owner_id=user["id"], do_not_disturb={"enabled": True})
    bridge.device(None, name="no sip", owner_id=user["id"])
    bridge.device("2006", owner_id=someone["id"])
    for username in ("2001", "2002", "2003", "2004", "2005", "2006"):
        bridge.register(bridge.fs1, username)
    bridge.mark()
    response = bridge.api.get(f"users/{user['id']}/quickcall/9196")
    data = ok(response)
    legs = [f"user/{d['sip']['username']}@acme.test" for d in sorted(ringing, key=lambda d: d["id"])]
    assert data["endpoint"] == ",".join(leg.removeprefix("user/") for leg in legs)
    assert data["auto_answer"] is False  # only with exactly one phone
    assert (data["cid_name"], data["cid_number"]) == ("Uma User", "+15557770000")
    assert bridge.sent() == [expected(bridge, response, legs=",".join(legs), auto_answer=False,
                                      user_id=user["id"])]


def test_user_quickcall_with_one_device_auto_answers(bridge: Bridge) -> None:
    user = bridge.user()
    bridge.device("2001", owner_id=user["id"], caller_id={"internal": {"name": "Desk", "number": "2001"}})
    bridge.device("2002", owner_id=user["id"], enabled=False)
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    response = bridge.api.post(f"users/{user['id']}/quickcall/9196")
    data = ok(response)
    assert data["status"] == "answered" and data["auto_answer"] is True
    assert (data["cid_name"], data["cid_number"]) == ("Desk", "2001")
    assert bridge.sent() == [expected(bridge, response, user_id=user["id"])]


def test_user_quickcall_hotdesked_device_only(bridge: Bridge) -> None:
    user = bridge.user()
    owner = bridge.user(first_name="Otto", last_name="Owner")
    device = bridge.device("2003", owner_id=owner["id"])
    assert bridge.api.patch(f"devices/{device['id']}", {"hotdesk": {"users": {user["id"]: {}}}}).status_code == 200
    bridge.mark()
    response = bridge.api.get(f"users/{user['id']}/quickcall/9196")
    assert ok(response)["endpoint"] == "2003@acme.test"
    assert bridge.sent() == [expected(bridge, response, legs="user/2003@acme.test", user_id=user["id"])]


def test_user_quickcall_without_a_device_to_ring_is_400(bridge: Bridge) -> None:
    user = bridge.user()
    bridge.device("2001", owner_id=user["id"], enabled=False)
    response = bridge.api.get(f"users/{user['id']}/quickcall/9196")
    assert_error(response, 400, "invalid request")
    assert bridge.sent() == []


def test_user_quickcall_anonymous(bridge: Bridge) -> None:
    allowed = bridge.user(allow_anonymous_quickcalls=True)
    closed = bridge.user(first_name="Cora", last_name="Closed")
    bridge.device("2001", owner_id=allowed["id"])
    bridge.device("2002", owner_id=closed["id"])
    bridge.mark()
    assert_error(bridge.api.get(f"users/{closed['id']}/quickcall/9196", token=None), 401, "invalid_credentials")
    assert bridge.sent() == []
    response = bridge.api.get(f"users/{allowed['id']}/quickcall/9196", token=None)
    assert ok(response)["endpoint"] == "2001@acme.test"
    assert bridge.sent() == [expected(bridge, response, user_id=allowed["id"])]


# --- two nodes ----------------------------------------------------------------------------------

def test_two_nodes_the_call_runs_where_the_phone_is_registered(bridge2: Bridge) -> None:
    bridge = bridge2
    device = bridge.device("2001")
    bridge.register(bridge.fs2, "2001")
    bridge.mark()
    response = bridge.quickcall(device["id"], "9196", method="POST")
    data = ok(response)
    assert data["node"] == bridge.fs2.name and data["status"] == "answered"
    assert bridge.sent(bridge.fs1) == [xmlstatus_user("2001")]  # asked, never rung
    assert bridge.sent(bridge.fs2) == [xmlstatus_user("2001"),
                                       expected(bridge, response, device_id=device["id"])]


def test_two_nodes_user_quickcall_rings_every_phone_on_its_own_node(bridge2: Bridge) -> None:
    bridge = bridge2
    user = bridge.user()
    devices = [bridge.device(name, owner_id=user["id"]) for name in ("2001", "2002", "2003")]
    bridge.register(bridge.fs1, "2001")
    bridge.register(bridge.fs2, "2002")
    bridge.register(bridge.fs2, "2003")
    bridge.mark()
    response = bridge.api.get(f"users/{user['id']}/quickcall/9196")
    data = ok(response)
    # One originate per node, the node holding most phones first (its ids are the call's).
    assert data["node"] == bridge.fs2.name
    assert [(c["node"], sorted(c["endpoint"].split(","))) for c in data["calls"]] == [
        (bridge.fs2.name, ["2002@acme.test", "2003@acme.test"]), (bridge.fs1.name, ["2001@acme.test"])]
    assert data["calls"][0]["call_id"] == data["call_id"] and data["auto_answer"] is False
    on_fs2 = sorted((d for d in devices if d["sip"]["username"] != "2001"), key=lambda d: d["id"])
    legs = ",".join(f"user/{d['sip']['username']}@acme.test" for d in on_fs2)
    assert [c for c in bridge.sent(bridge.fs2) if c.startswith("bgapi")] == [
        expected(bridge, response, legs=legs, auto_answer=False, user_id=user["id"])]
    other = data["calls"][1]
    # 2001 rings alone on its node but is one of three phones: no auto-answer there either.
    assert [c for c in bridge.sent(bridge.fs1) if c.startswith("bgapi")] == [originate(
        call_id=other["call_id"], job_id=other["job_id"], legs="user/2001@acme.test", number="9196",
        cid_name=data["cid_name"], cid_number=data["cid_number"], account_id=bridge.account_id,
        request_id=response.json()["request_id"], user_id=user["id"], auto_answer=False)]


def user_on_two_nodes(bridge: Bridge, on_fs1: str, on_fs2: str) -> dict[str, Any]:
    """A user with phone 2001 registered on node 1 and 2002 on node 2, each doing as told
    when it rings (answer, busy, hang...)."""
    user = bridge.user()
    for fake, name, behaviour in ((bridge.fs1, "2001", on_fs1), (bridge.fs2, "2002", on_fs2)):
        bridge.device(name, owner_id=user["id"])
        bridge.register(fake, name)
        fake.set_behaviour(name, "acme.test", behaviour)
    bridge.mark()
    return user


def test_two_nodes_the_first_phone_to_answer_wins_and_the_others_stop_ringing(bridge2: Bridge) -> None:
    bridge = bridge2
    user = user_on_two_nodes(bridge, "hang", "answer")  # 2001 would ring on and on
    response = bridge.api.post(f"users/{user['id']}/quickcall/9196")
    data = ok(response)
    assert data["status"] == "answered"
    # the call described is the one that answered, on node 2
    answered = next(c for c in data["calls"] if c["node"] == bridge.fs2.name)
    assert (data["node"], data["call_id"], data["job_id"]) == (
        bridge.fs2.name, answered["call_id"], answered["job_id"])
    ringing_on_fs1 = next(c for c in data["calls"] if c["node"] == bridge.fs1.name)
    assert wait_until(lambda: f"api hupall LOSE_RACE esl_bridge_call_id {ringing_on_fs1['call_id']}"
                      in bridge.sent(bridge.fs1))
    assert wait_until(lambda: not bridge.fs1.channels)  # 2001 no longer rings
    assert not [c for c in bridge.sent(bridge.fs2) if "hupall" in c or "uuid_kill" in c]


def test_two_nodes_no_phone_answers(bridge2: Bridge) -> None:
    bridge = bridge2
    user = user_on_two_nodes(bridge, "busy", "busy")
    response = bridge.api.post(f"users/{user['id']}/quickcall/9196")
    body = assert_error(response, 500, "quickcall initiation failed")
    assert body["data"]["error_message"] == "USER_BUSY"


def test_two_nodes_not_registered_anywhere(bridge2: Bridge) -> None:
    bridge = bridge2
    device = bridge.device("2001")
    response = bridge.quickcall(device["id"], "9196", method="POST")
    body = assert_error(response, 500, "quickcall initiation failed")
    assert body["data"]["error_message"] == "USER_NOT_REGISTERED"
    originates = [c for c in bridge.sent() if c.startswith("bgapi originate")]
    assert len(originates) == 1 and "user/2001@acme.test 9196 XML default" in originates[0]


def test_user_quickcall_rings_every_phone_of_one_node(bridge: Bridge) -> None:
    """Three phones on one node: three legs ring, each with a uuid of its own, all carrying the
    call's esl_bridge_call_id (a shared origination_uuid in {} made every leg after the first
    fail with Duplicate UUID, so only one phone rang; esl3 137-150)."""
    user = bridge.user()
    names = ("2001", "2002", "2003")
    for name in names:
        bridge.device(name, owner_id=user["id"])
        bridge.register(bridge.fs1, name)
        bridge.fs1.set_behaviour(name, "acme.test", "hang")
    data = ok(bridge.api.get(f"users/{user['id']}/quickcall/9196"))
    assert bridge.fs1.wait_for(lambda: len(bridge.fs1.channels) == 3)
    channels = list(bridge.fs1.channels.values())
    assert sorted(channel.user for channel in channels) == list(names)
    assert {dict(channel.variables)["esl_bridge_call_id"] for channel in channels} == {data["call_id"]}
    assert [channel.uuid for channel in channels].count(data["call_id"]) == 1
    assert len({channel.uuid for channel in channels}) == 3


def test_user_quickcall_answered_by_a_later_phone_reports_that_leg(bridge: Bridge) -> None:
    """POST waits for the answer; when a phone other than the first answers, the call that goes
    on is that leg's: its uuid (from the job's +OK) is the call_id reported, and the phones that
    lost were hung up."""
    user = bridge.user()
    devices = [bridge.device(name, owner_id=user["id"]) for name in ("2001", "2002")]
    for name in ("2001", "2002"):
        bridge.register(bridge.fs1, name)
    # the legs are dialled in device id order: the first one rings on, the second answers
    first, second = (d["sip"]["username"] for d in sorted(devices, key=lambda d: d["id"]))
    bridge.fs1.set_behaviour(first, "acme.test", "hang")
    response = bridge.api.post(f"users/{user['id']}/quickcall/9196")
    data = ok(response)
    assert data["status"] == "answered"
    live = list(bridge.fs1.channels.values())
    assert [channel.user for channel in live] == [second]
    assert data["call_id"] == live[0].uuid
    assert data["call_id"] != dict(live[0].variables)["esl_bridge_call_id"]
