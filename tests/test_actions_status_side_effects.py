"""Registration status (SPEC §6.4) and the side effects of device changes (§6.5), end to end
on two test FreeSWITCH nodes: what each node received, in which order, and what it did not."""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fixtures_web import assert_error, client_for, make_account
from test_actions_support import (
    Bridge,
    bridge_fixture,
    flush_cache,
    flush_inbound_reg,
    notify,
    recorded,
    xmlstatus_user,
)

from models import db
from models import device as devices


@pytest.fixture
def bridge(start_bridge, fake_freeswitch_factory, esl_pool_factory) -> Iterator[Bridge]:
    yield from bridge_fixture(start_bridge, fake_freeswitch_factory, esl_pool_factory, nodes=2)


class Journal(list):
    """A fake's `commands` list that also writes `(node, command)` to one shared journal, so
    that the order across nodes can be checked."""

    def __init__(self, shared: list[tuple[str, str]], node: str, initial: list[str]) -> None:
        super().__init__(initial)
        self.shared = shared
        self.node = node

    def append(self, item: str) -> None:
        super().append(item)
        self.shared.append((self.node, item))


def journal(bridge: Bridge) -> list[tuple[str, str]]:
    shared: list[tuple[str, str]] = []
    for name, fake in zip(("fs1", "fs2"), bridge.fakes, strict=True):
        fake.commands = Journal(shared, name, fake.commands)
    return shared


def status(bridge: Bridge, client: Any = None) -> list[dict[str, Any]]:
    response = (client or bridge.api).get("devices/status")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def registered(*devices_: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(({"device_id": d["id"], "registered": True} for d in devices_),
                  key=lambda row: row["device_id"])


# --- GET /devices/status --------------------------------------------------------------------------

def test_status_from_both_nodes_mapped_to_device_ids(bridge: Bridge) -> None:
    on1, on2, nowhere, both = (bridge.device(u) for u in ("2001", "2002", "2003", "2004"))
    other_id, other_key, _ = make_account("other", "other.test")
    other = client_for(bridge.url, other_id, other_key, realm="other.test")
    theirs = other.create_device(name="theirs", sip={"username": "2003", "password": "secret-pass"})
    bridge.register(bridge.fs1, "2001")
    bridge.register(bridge.fs2, "2002")
    bridge.register(bridge.fs1, "2004")
    bridge.register(bridge.fs2, "2004")
    bridge.register(bridge.fs2, "2003", realm="other.test")  # the other account's 2003
    bridge.register(bridge.fs1, "2999")  # no such device
    bridge.register(bridge.fs1, "2001", realm="elsewhere.test")
    bridge.mark()
    assert sorted(status(bridge), key=lambda r: r["device_id"]) == registered(on1, on2, both)
    assert nowhere["id"] not in {row["device_id"] for row in status(bridge, other)}
    # Exactly the realm's registrations, on every node (the recorded query).
    bridge.mark()
    status(bridge)
    assert bridge.sent(bridge.fs1) == [recorded("105_")]
    assert bridge.sent(bridge.fs2) == [recorded("105_")]
    assert status(bridge, other) == registered(theirs)
    other.session.close()


def test_status_asks_every_profile_the_node_reported(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs2, "2001", profile="external")
    bridge.mark()
    assert status(bridge) == registered(device)
    assert bridge.sent(bridge.fs1) == ["api sofia xmlstatus profile internal user @acme.test"]
    assert bridge.sent(bridge.fs2) == ["api sofia xmlstatus profile internal user @acme.test",
                                       "api sofia xmlstatus profile external user @acme.test"]


def test_status_of_devices_in_another_realm(bridge: Bridge) -> None:
    device = bridge.device("2001", sip={"realm": "pbx.example"})
    bridge.register(bridge.fs1, "2001", realm="pbx.example")
    bridge.register(bridge.fs1, "2001")  # acme.test's 2001 is not this device
    bridge.mark()
    assert status(bridge) == registered(device)
    assert "api sofia xmlstatus profile internal user @pbx.example" in bridge.sent(bridge.fs1)


def test_status_is_current_before_any_register_event(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.fs1.register("2001", "acme.test", event=False)  # FreeSWITCH knows; no event yet
    assert status(bridge) == registered(device)
    bridge.fs1.unregister("2001", "acme.test", event=False)
    assert status(bridge) == []


def test_status_without_sip_devices_asks_nothing(bridge: Bridge) -> None:
    bridge.device(None, device_type="cellphone")
    assert status(bridge) == []
    assert bridge.sent() == []


def test_status_with_one_node_down_answers_what_the_other_knows(bridge: Bridge) -> None:
    on1, on2 = bridge.device("2001"), bridge.device("2002")
    bridge.register(bridge.fs1, "2001")
    bridge.register(bridge.fs2, "2002")
    bridge.fs2.stop()
    assert status(bridge) == registered(on1)
    bridge.fs2.start()
    assert bridge.pool.wait_connected(5)
    assert sorted(status(bridge), key=lambda r: r["device_id"]) == registered(on1, on2)


def test_status_with_every_node_down_is_503(bridge: Bridge) -> None:
    bridge.device("2001")
    for fake in bridge.fakes:
        fake.stop()
    body = assert_error(bridge.api.get("devices/status"), 503, "freeswitch_unavailable")
    assert body["data"]["message"]


# --- side effects of device changes ---------------------------------------------------------------

def watch_revision(bridge: Bridge, device_id: str) -> list[str | None]:
    """At each `xml_flush_cache` a node answers, the device's stored revision (None: deleted)."""
    seen: list[str | None] = []
    for fake in bridge.fakes:
        original = fake.api_handlers["xml_flush_cache"]

        def handler(fake_: Any, args: str, original: Any = original) -> Any:
            with db.database.connection_context():
                try:
                    seen.append(devices.get_device(bridge.account_id, device_id).revision)
                except Exception:
                    seen.append(None)
            return original(fake_, args)

        fake.api_handlers["xml_flush_cache"] = handler
    return seen


RETIRE_ON_FS2 = {
    "fs1": [flush_cache("2001"), xmlstatus_user("2001")],
    "fs2": [flush_cache("2001"), xmlstatus_user("2001"), notify("2001"), flush_inbound_reg("2001")],
}


@pytest.mark.parametrize("change", [
    {"sip": {"password": "new-secret"}},
    {"sip": {"method": "ip", "ip": "192.0.2.10"}},
    {"enabled": False},
])
def test_credentials_or_disabling_flush_everywhere_then_retire_where_registered(
        bridge: Bridge, change: dict[str, Any]) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs2, "2001")
    seen = watch_revision(bridge, device["id"])
    order = journal(bridge)
    bridge.mark()
    response = bridge.api.patch(f"devices/{device['id']}", change)
    assert response.status_code == 200, response.text
    bridge.settle()
    assert bridge.sent(bridge.fs1) == RETIRE_ON_FS2["fs1"]
    assert bridge.sent(bridge.fs2) == RETIRE_ON_FS2["fs2"]
    assert recorded("110_") == flush_cache("2001") and recorded("103_") == flush_inbound_reg("2001")
    # Every node's cache is flushed before the phone is told and forgotten.
    kinds = [c.split(" ")[1] if c.startswith("api ") else c.split("\n")[0] for _, c in order]
    assert kinds.index("sendevent NOTIFY") > max(i for i, k in enumerate(kinds) if k == "xml_flush_cache")
    assert seen == [response.json()["revision"]] * 2  # only after the commit
    assert bridge.fs2.registrations == []  # flushed: FreeSWITCH fired sofia::expire
    assert bridge.fs1.sent_events == []


def test_deletion_flushes_and_retires(bridge: Bridge) -> None:
    device = bridge.device("2001", provision={"check_sync_event": "resync"})
    bridge.register(bridge.fs2, "2001")
    seen = watch_revision(bridge, device["id"])
    bridge.mark()
    assert bridge.api.delete(f"devices/{device['id']}").status_code == 200
    bridge.settle()
    assert bridge.sent(bridge.fs1) == [flush_cache("2001"), xmlstatus_user("2001")]
    assert bridge.sent(bridge.fs2) == [flush_cache("2001"), xmlstatus_user("2001"),
                                       notify("2001", "resync"), flush_inbound_reg("2001")]
    assert seen == [None, None]  # the device was already gone for FreeSWITCH


def test_username_change_flushes_both_names_and_retires_the_old(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    assert bridge.api.patch(f"devices/{device['id']}", {"sip": {"username": "2011"}}).status_code == 200
    bridge.settle()
    assert bridge.sent(bridge.fs1) == [flush_cache("2001"), flush_cache("2011"), xmlstatus_user("2001"),
                                       notify("2001"), flush_inbound_reg("2001")]
    assert bridge.sent(bridge.fs2) == [flush_cache("2001"), flush_cache("2011"), xmlstatus_user("2001")]


def test_credentials_change_when_not_registered_only_flushes(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.mark()
    assert bridge.api.patch(f"devices/{device['id']}", {"sip": {"password": "new-secret"}}).status_code == 200
    bridge.settle()
    for fake in bridge.fakes:
        assert bridge.sent(fake) == [flush_cache("2001"), xmlstatus_user("2001")]
        assert fake.sent_events == []


@pytest.mark.parametrize("before, change", [
    ({}, {"presence_id": "desk"}),
    ({"presence_id": "desk"}, {"presence_id": "front"}),
    ({"presence_id": "desk"}, {"presence_id": None}),
    ({"enabled": False}, {"enabled": True}),
    # the directory dials a call-forwarded device at its number
    ({}, {"call_forward": {"enabled": True, "number": "+15550002222"}}),
    ({"call_forward": {"enabled": True, "number": "+15550002222"}}, {"call_forward": {"number": "5550003333"}}),
])
def test_presence_id_change_or_enabling_only_flushes(bridge: Bridge, before: dict, change: dict) -> None:
    device = bridge.device("2001", **before)
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    assert bridge.api.patch(f"devices/{device['id']}", change).status_code == 200
    bridge.settle()
    assert bridge.sent(bridge.fs1) == [flush_cache("2001")]
    assert bridge.sent(bridge.fs2) == [flush_cache("2001")]
    assert [r.user for r in bridge.fs1.registrations] == ["2001"]  # not flushed


@pytest.mark.parametrize("change", [
    {"name": "renamed"},
    {"caller_id": {"external": {"name": "Main", "number": "+15550001111"}}},
    {"do_not_disturb": {"enabled": True}},
    {"provision": {"check_sync_event": "resync"}},
    {"sip": {"expire_seconds": 600}},
    {"mac_address": "00:04:f2:aa:bb:cc"},
    {"enabled": True},
])
def test_other_changes_send_nothing(bridge: Bridge, change: dict) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    assert bridge.api.patch(f"devices/{device['id']}", change).status_code == 200
    post = {**{k: v for k, v in device.items() if k != "id"}, "name": "replaced"}
    assert bridge.api.post(f"devices/{device['id']}", post).status_code == 200
    bridge.settle()
    assert bridge.sent() == []


def test_failed_updates_and_deletes_send_nothing(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    stale = bridge.api.get(f"devices/{device['id']}").json()["revision"]
    assert bridge.api.patch(f"devices/{device['id']}", {"name": "newer"}).status_code == 200
    bridge.mark()
    path = f"devices/{device['id']}"
    assert bridge.api.patch(path, {"sip": {"password": "x"}}).status_code == 400
    assert bridge.api.patch(path, {"enabled": "no"}).status_code == 400
    assert bridge.api.patch(path, {"enabled": False}, headers={"If-Match": stale}).status_code == 412
    assert bridge.api.delete(path, headers={"If-Match": stale}).status_code == 412
    bridge.settle()
    assert bridge.sent() == []


def test_freeswitch_down_never_fails_the_request(bridge: Bridge) -> None:
    device = bridge.device("2001")
    gone = bridge.device("2002")
    for fake in bridge.fakes:
        fake.stop()
    started = time.monotonic()
    response = bridge.api.patch(f"devices/{device['id']}", {"sip": {"password": "new-secret"}, "sync": True})
    assert response.status_code == 200, response.text
    assert bridge.api.delete(f"devices/{gone['id']}").status_code == 200
    assert time.monotonic() - started < bridge.pool.command_timeout  # not waiting on FreeSWITCH
    bridge.settle()
    assert bridge.api.get(f"devices/{device['id']}").json()["data"]["sip"]["password"] == "new-secret"
    assert_error(bridge.api.get(f"devices/{gone['id']}"), 404, "bad_identifier")


def test_freeswitch_hung_never_delays_the_request(bridge: Bridge) -> None:
    device = bridge.device("2001")
    for fake in bridge.fakes:
        fake.hang("api xml_flush_cache")
    started = time.monotonic()
    response = bridge.api.patch(f"devices/{device['id']}", {"enabled": False})
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < bridge.pool.command_timeout / 2
    bridge.settle(timeout=bridge.pool.command_timeout * 4)  # bounded by the command timeout
