"""BLF presence over HTTP (SPEC §6.3), end to end: the exact PRESENCE_IN events each node
received for a device's or a user's reset or set, and nothing for a refused request."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fixtures_web import assert_error, assert_invalid
from test_actions_support import (
    Bridge,
    bridge_fixture,
    is_uuid,
    presence_reset,
    recorded,
)


@pytest.fixture
def bridge(start_bridge, fake_freeswitch_factory, esl_pool_factory) -> Iterator[Bridge]:
    yield from bridge_fixture(start_bridge, fake_freeswitch_factory, esl_pool_factory, nodes=2)

# --- presence (SPEC §6.3) -----------------------------------------------------------------------

@pytest.mark.parametrize("body", [None, {"reset": True}, {"action": "reset"}])
def test_presence_reset_bodies_reach_both_nodes(bridge: Bridge, body: Any) -> None:
    device = bridge.device("2001", presence_id="alice-static")
    response = bridge.api.post(f"devices/{device['id']}/presence", body)
    assert response.status_code == 200, response.text
    assert response.json()["data"] == "reset commands sent"
    want = recorded("112_")  # the reset verified on a real FreeSWITCH, for alice-static@acme.test
    assert bridge.sent(bridge.fs1) == [want]
    assert bridge.sent(bridge.fs2) == [want]


def test_presence_reset_with_an_empty_body_and_the_token_in_it(bridge: Bridge) -> None:
    device = bridge.device("2001")
    response = bridge.api.post(f"devices/{device['id']}/presence", token=None,
                               raw=f'{{"auth_token": "{bridge.api.token}"}}')
    # A body carrying only the token is as no body: a reset.
    assert response.status_code == 200, response.text
    assert bridge.sent() == [presence_reset("2001@acme.test")] * 2
    bridge.mark()
    response = bridge.api.post(f"devices/{device['id']}/presence", token=None,
                               raw=f'{{"data": {{"reset": true}}, "auth_token": "{bridge.api.token}"}}')
    assert response.status_code == 200, response.text
    assert bridge.sent() == [presence_reset("2001@acme.test")] * 2


@pytest.mark.parametrize("doc, presence_id", [
    ({"presence_id": "alice-static"}, "alice-static@acme.test"),
    # with a realm it must be the account's own (any case): kept as written
    ({"presence_id": "alice@ACME.test"}, "alice@ACME.test"),
    ({"presence_id": "*97+1#x_y.z-w"}, "*97+1#x_y.z-w@acme.test"),
    ({}, "2001@acme.test"),
    ({"sip": {"realm": "pbx.example"}}, "2001@acme.test"),
])
def test_presence_id_rule(bridge: Bridge, doc: dict, presence_id: str) -> None:
    device = bridge.device("2001", **doc)
    assert bridge.api.post(f"devices/{device['id']}/presence").status_code == 200
    assert bridge.sent() == [presence_reset(presence_id)] * 2


def test_presence_needs_no_registration_and_ignores_where_the_phone_is(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs2, "2001")
    bridge.mark()
    assert bridge.api.post(f"devices/{device['id']}/presence").status_code == 200
    assert bridge.sent(bridge.fs1) == [presence_reset("2001@acme.test")]
    assert bridge.sent(bridge.fs2) == [presence_reset("2001@acme.test")]


def presence_set_text(presence_id: str, state: str, unique_id: str) -> str:
    status, channel_state = {"early": ("Ring", "CS_ROUTING"), "confirmed": ("Talk", "CS_EXCHANGE_MEDIA"),
                             "terminated": ("Idle", "CS_HANGUP")}[state]
    return ("sendevent PRESENCE_IN\nproto: sip\n"
            f"from: {presence_id}\nlogin: {presence_id}\nrpid: unknown\nstatus: {status}\n"
            "event_type: presence\nalt_event_type: dialog\nevent_count: 1\n"
            f"unique-id: {unique_id}\nchannel-state: {channel_state}\nanswer-state: {state}\n"
            "presence-call-direction: outbound")


def test_presence_set_sends_the_state_with_a_stable_unique_id(bridge: Bridge) -> None:
    device = bridge.device("2001", presence_id="alice-static")
    other = bridge.device("2002")
    ids = []
    for state in ("early", "confirmed", "terminated", "early"):
        bridge.mark()
        response = bridge.api.post(f"devices/{device['id']}/presence", {"action": "set", "state": state})
        assert response.status_code == 200, response.text
        sent = bridge.sent()
        assert len(sent) == 2 and sent[0] == sent[1]  # both nodes, the same event
        unique_id = dict(line.split(": ", 1) for line in sent[0].split("\n")[1:])["unique-id"]
        assert is_uuid(unique_id)
        assert sent[0] == presence_set_text("alice-static@acme.test", state, unique_id)
        ids.append(unique_id)
    assert len(set(ids)) == 1  # stable: every state talks about the same dialog
    bridge.mark()
    bridge.api.post(f"devices/{other['id']}/presence", {"action": "set", "state": "early"})
    other_id = dict(line.split(": ", 1) for line in bridge.sent()[0].split("\n")[1:])["unique-id"]
    assert other_id != ids[0]  # unique per presence id


@pytest.mark.parametrize("body", [
    {"reset": False}, {"reset": "true"}, {"reset": 1}, {"reset": True, "extra": 1},
    {"action": "set"}, {"action": "set", "state": "ringing"}, {"action": "set", "state": None},
    {"action": "set", "state": "early", "x": 1}, {"action": "reboot"}, {"action": "RESET"},
    {"state": "early"}, "reset", [], ["reset"], True, 1,
])
def test_other_presence_bodies_are_400_and_send_nothing(bridge: Bridge, body: Any) -> None:
    device = bridge.device("2001")
    response = bridge.api.post(f"devices/{device['id']}/presence", body)
    assert_error(response, 400, "invalid request")
    assert bridge.sent() == []


@pytest.mark.parametrize("raw", ['{"action": "set", "state": "confirmed"}', '{"reset": true}', '{"x": 1}',
                                 '{"auth_token": "t", "state": "early"}'])
def test_a_body_without_data_is_400_unless_it_only_carries_the_token(bridge: Bridge, raw: str) -> None:
    device = bridge.device("2001")
    response = bridge.api.post(f"devices/{device['id']}/presence", raw=raw)
    assert_error(response, 400, "invalid request")
    assert bridge.sent() == []


def test_presence_unknown_device_anonymous_and_no_presence_id(bridge: Bridge) -> None:
    device = bridge.device(None, device_type="cellphone")
    assert_error(bridge.api.post(f"devices/{'0' * 32}/presence"), 404, "bad_identifier")
    assert_error(bridge.api.post(f"devices/{device['id']}/presence", token=None), 401, "invalid_credentials")
    assert_invalid(bridge.api.post(f"devices/{device['id']}/presence"), "presence_id:required")
    assert bridge.sent() == []


# --- users ----------------------------------------------------------------------------------------

def test_user_presence_uses_the_users_presence_id(bridge: Bridge) -> None:
    user = bridge.user(presence_id="uma")
    bridge.device("2001", owner_id=user["id"], presence_id="desk")
    response = bridge.api.post(f"users/{user['id']}/presence")
    assert response.status_code == 200, response.text
    assert bridge.sent(bridge.fs1) == [presence_reset("uma@acme.test")]
    assert bridge.sent(bridge.fs2) == [presence_reset("uma@acme.test")]


def test_user_presence_without_one_resets_each_device(bridge: Bridge) -> None:
    user = bridge.user()
    owner = bridge.user(first_name="Otto", last_name="Owner")
    made = [
        bridge.device("2001", owner_id=user["id"], presence_id="desk"),
        bridge.device("2002", owner_id=user["id"]),
        bridge.device("2003", owner_id=owner["id"], hotdesk={"users": {user["id"]: {}}}),
        bridge.device("2004", owner_id=user["id"], presence_id="desk"),  # the same id: once
    ]
    bridge.device("2005", owner_id=owner["id"])  # not the user's
    bridge.mark()
    response = bridge.api.post(f"users/{user['id']}/presence", {"action": "set", "state": "terminated"})
    assert response.status_code == 200, response.text
    want = []
    for device in sorted(made, key=lambda d: d["id"]):
        pid = f"{device['presence_id'] if 'presence_id' in device else device['sip']['username']}@acme.test"
        if pid not in want:
            want.append(pid)
    for fake in bridge.fakes:
        sent = bridge.sent(fake)
        assert [c.split("\n")[2] for c in sent] == [f"from: {pid}" for pid in want]
        assert all("answer-state: terminated" in c for c in sent)


def test_user_presence_without_any_id_is_400(bridge: Bridge) -> None:
    user = bridge.user()
    assert_invalid(bridge.api.post(f"users/{user['id']}/presence"), "presence_id:required")
    assert_error(bridge.api.post(f"users/{'0' * 32}/presence"), 404, "bad_identifier")
    assert bridge.sent() == []


# --- nodes down ---------------------------------------------------------------------------------

def test_presence_with_one_node_down_reaches_the_other(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.fs2.stop()
    assert bridge.pool.wait_connected(2, nodes=[bridge.fs1.name])
    response = bridge.api.post(f"devices/{device['id']}/presence")
    assert response.status_code == 200, response.text
    assert bridge.sent(bridge.fs1) == [presence_reset("2001@acme.test")]
    assert bridge.sent(bridge.fs2) == []


def test_presence_and_sync_with_every_node_down_are_503(bridge: Bridge) -> None:
    device = bridge.device("2001")
    for fake in bridge.fakes:
        fake.stop()
    for path in ("presence", "sync"):
        response = bridge.api.post(f"devices/{device['id']}/{path}")
        body = assert_error(response, 503, "freeswitch_unavailable")
        assert body["data"]["message"] and body["data"]["node"]
