"""Check-sync (SPEC §6.2) and presence reset/set (§6.3) over HTTP, end to end, on two test
FreeSWITCH nodes: the exact events each node received, and what it did not."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gevent
import pytest
from fixtures_web import assert_error, assert_invalid, client_for, make_account
from test_actions_support import (
    Bridge,
    bridge_fixture,
    is_uuid,
    notify,
    presence_reset,
    recorded,
    xmlstatus_user,
)

from models import db
from models import device as devices
from models import documents as docs
from models.tables import DeviceRow


@pytest.fixture
def bridge(start_bridge, fake_freeswitch_factory, esl_pool_factory) -> Iterator[Bridge]:
    yield from bridge_fixture(start_bridge, fake_freeswitch_factory, esl_pool_factory, nodes=2)


def sendevents(bridge: Bridge, fake: Any = None) -> list[str]:
    return [c for c in bridge.sent(fake) if c.startswith("sendevent")]


# --- POST /devices/{D}/sync ---------------------------------------------------------------------

def test_sync_with_reboot_false_is_the_recorded_notify(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    response = bridge.api.post(f"devices/{device['id']}/sync?reboot=false")
    assert response.status_code == 200, response.text
    assert response.json()["data"] == "sync request sent"
    assert bridge.sent(bridge.fs1) == [xmlstatus_user("2001"), recorded("123_")]
    assert bridge.sent(bridge.fs2) == [xmlstatus_user("2001")]


@pytest.mark.parametrize("stored, query, event", [
    (None, "", "check-sync"),
    (None, "?reboot=true", "check-sync;reboot=true"),
    (None, "?reboot=false", "check-sync;reboot=false"),
    (None, "?reboot=TRUE", "check-sync;reboot=true"),
    ("resync", "", "resync"),
    ("resync", "?reboot=true", "resync;reboot=true"),
    ("check-sync;reboot=false", "", "check-sync;reboot=false"),
    # the reboot asked for replaces the stored one (a phone reads the first)
    ("check-sync;reboot=false", "?reboot=true", "check-sync;reboot=true"),
    ("resync;Reboot=true;x=1", "?reboot=false", "resync;x=1;reboot=false"),
])
def test_sync_event_string(bridge: Bridge, stored: str | None, query: str, event: str) -> None:
    extra = {"provision": {"check_sync_event": stored}} if stored else {}
    device = bridge.device("2001", **extra)
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    assert bridge.api.post(f"devices/{device['id']}/sync{query}").status_code == 200
    assert sendevents(bridge) == [notify("2001", event)]


def test_sync_goes_only_to_the_node_holding_the_registration(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs2, "2001")
    bridge.mark()
    assert bridge.api.post(f"devices/{device['id']}/sync").status_code == 200
    assert bridge.sent(bridge.fs1) == [xmlstatus_user("2001")]  # asked, no NOTIFY
    assert bridge.sent(bridge.fs2) == [xmlstatus_user("2001"), notify("2001")]
    assert bridge.fs1.sent_events == []
    assert [name for name, _ in bridge.fs2.sent_events] == ["NOTIFY"]


def test_sync_uses_the_profile_of_the_registration(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs2, "2001", profile="external")
    bridge.mark()
    assert bridge.api.post(f"devices/{device['id']}/sync").status_code == 200
    assert sendevents(bridge, bridge.fs2) == [notify("2001", profile="external")]
    assert sendevents(bridge, bridge.fs1) == []


def test_sync_reaches_every_node_holding_a_registration(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    bridge.register(bridge.fs2, "2001")
    bridge.mark()
    assert bridge.api.post(f"devices/{device['id']}/sync").status_code == 200
    assert sendevents(bridge, bridge.fs1) == [notify("2001")]
    assert sendevents(bridge, bridge.fs2) == [notify("2001")]


def test_sync_when_not_registered_answers_the_same_and_sends_nothing(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs2, "2001", realm="other.test")  # someone else's 2001
    bridge.register(bridge.fs1, "2002")
    bridge.mark()
    response = bridge.api.post(f"devices/{device['id']}/sync")
    assert response.status_code == 200 and response.json()["data"] == "sync request sent"
    assert bridge.sent() == [xmlstatus_user("2001"), xmlstatus_user("2001")]
    assert bridge.fs1.sent_events == [] and bridge.fs2.sent_events == []


def test_sync_of_a_device_without_sip_sends_nothing(bridge: Bridge) -> None:
    device = bridge.device(None, device_type="cellphone")
    response = bridge.api.post(f"devices/{device['id']}/sync")
    assert response.status_code == 200 and response.json()["data"] == "sync request sent"
    assert bridge.sent() == []


def test_sync_unknown_device_anonymous_and_other_account(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    assert_error(bridge.api.post(f"devices/{'0' * 32}/sync"), 404, "bad_identifier")
    assert_error(bridge.api.post(f"devices/{device['id']}/sync", token=None), 401, "invalid_credentials")
    other_id, other_key, _ = make_account("other", "other.test")
    other = client_for(bridge.url, other_id, other_key, realm="other.test")
    assert_error(bridge.api.post(f"devices/{device['id']}/sync", token=other.token), 403, "forbidden")
    assert_error(bridge.api.get(f"devices/{device['id']}/sync"), 405, "invalid_method")
    assert bridge.sent() == []
    other.session.close()


# --- "sync": true on a device update --------------------------------------------------------------

def watch_commit(bridge: Bridge, device_id: str) -> list[str]:
    """Record, at each registration lookup a node answers, the stored revision of the device:
    proves that FreeSWITCH hears of a change only after it was committed."""
    seen: list[str] = []
    for fake in bridge.fakes:
        original = fake.api_handlers["sofia"]

        def handler(fake_: Any, args: str, original: Any = original) -> Any:
            if args.startswith("xmlstatus profile") and " user " in args:
                with db.database.connection_context():
                    seen.append(devices.get_device(bridge.account_id, device_id).revision)
            return original(fake_, args)

        fake.api_handlers["sofia"] = handler
    return seen


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_sync_true_sends_after_the_commit_and_is_never_stored(bridge: Bridge, method: str) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs2, "2001")
    seen = watch_commit(bridge, device["id"])
    bridge.mark()
    change: dict[str, Any] = {"name": "renamed", "provision": {"check_sync_event": "resync"}, "sync": True}
    if method == "POST":
        change = {**{k: v for k, v in device.items() if k != "id"}, **change}
    response = bridge.api.request(method, f"devices/{device['id']}", change)
    assert response.status_code == 200, response.text
    revision = response.json()["revision"]
    assert "sync" not in response.json()["data"]
    bridge.settle()
    # The event string of the committed update, on the node holding the registration only.
    assert sendevents(bridge, bridge.fs2) == [notify("2001", "resync")]
    assert sendevents(bridge, bridge.fs1) == []
    assert seen and set(seen) == {revision}
    stored = bridge.api.get(f"devices/{device['id']}").json()["data"]
    assert "sync" not in stored and stored["name"] == "renamed"


@pytest.mark.parametrize("sync", [False, None])
def test_sync_false_or_absent_sends_nothing(bridge: Bridge, sync: bool | None) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    change: dict[str, Any] = {"name": "renamed"}
    if sync is not None:
        change["sync"] = sync
    assert bridge.api.patch(f"devices/{device['id']}", change).status_code == 200
    bridge.settle()
    assert bridge.sent() == []
    assert "sync" not in bridge.api.get(f"devices/{device['id']}").json()["data"]


def test_a_failed_update_with_sync_true_sends_nothing(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.device("2002")
    bridge.register(bridge.fs1, "2001")
    revision = bridge.api.get(f"devices/{device['id']}").json()["revision"]
    assert bridge.api.patch(f"devices/{device['id']}", {"name": "newer"}).status_code == 200
    bridge.mark()
    path = f"devices/{device['id']}"
    # 400: validation (and a database rule), 412: stale If-Match.
    assert_invalid(bridge.api.patch(path, {"sync": True, "name": ""}), "name:minLength")
    assert_invalid(bridge.api.patch(path, {"sync": True, "sip": {"username": "2002"}}), "sip.username:unique")
    assert_invalid(bridge.api.post(path, {"sync": True}), "name:required")
    assert_invalid(bridge.api.patch(path, {"sync": "yes"}), "sync:type")
    stale = bridge.api.patch(path, {"sync": True, "name": "x"}, headers={"If-Match": revision})
    assert_error(stale, 412, "precondition_failed")
    bridge.settle()
    assert bridge.sent() == []
    assert bridge.api.get(path).json()["data"]["name"] == "newer"


def test_a_conflicting_update_with_sync_true_sends_nothing(bridge: Bridge,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """409: a rival writer commits between the update's read and its write."""
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    original = docs.update_document

    def raced(table: Any, current: Any, doc: dict[str, Any], **columns: Any) -> Any:
        def rival() -> None:
            with db.database.connection_context():
                DeviceRow.update(rev_n=DeviceRow.rev_n + 1).where(DeviceRow.id == current.id).execute()

        gevent.spawn(rival).get(timeout=5)  # its own connection, committed
        return original(table, current, doc, **columns)

    monkeypatch.setattr(docs, "update_document", raced)
    path = f"devices/{device['id']}"
    for change in ({"sync": True, "name": "x"}, {"sync": True, "sip": {"password": "new-secret"}}):
        assert_error(bridge.api.patch(path, change), 409, "datastore_conflict")
    monkeypatch.undo()
    bridge.settle()
    assert bridge.sent() == []
    stored = bridge.api.get(path).json()["data"]
    assert stored["name"] == "phone 2001" and stored["sip"]["password"] == "secret-pass"


def test_sync_true_on_create_is_not_stored(bridge: Bridge) -> None:
    created = bridge.device("2001", sync=True)
    assert "sync" not in created
    assert "sync" not in bridge.api.get(f"devices/{created['id']}").json()["data"]


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
