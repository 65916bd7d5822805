"""Check-sync (SPEC §6.2) over HTTP, end to end, on two test FreeSWITCH nodes: the exact
NOTIFY each node received, and what it did not; alone and as a device update's "sync": true.
Presence (§6.3): tests/test_actions_presence.py."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fixtures_web import assert_error, assert_invalid, client_for, make_account
from test_actions_support import (
    Bridge,
    bridge_fixture,
    notify,
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
    """409: the revision changed between the update's read and its write (as a rival's commit
    does on PostgreSQL; here the change is made inside the update's own transaction, which
    works on both backends, and rolls back with it)."""
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    original = docs.update_document

    def raced(table: Any, current: Any, doc: dict[str, Any], **columns: Any) -> Any:
        DeviceRow.update(rev_n=DeviceRow.rev_n + 1).where(DeviceRow.id == current.id).execute()
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
