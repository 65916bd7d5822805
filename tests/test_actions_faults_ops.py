"""FreeSWITCH faults seen over HTTP (SPEC §6 "nothing hangs", §8): absent at start, hung or
stopped mid-request, restarted, one node of two down, a busy pool; bounded answers, recovery
without restarting esl-bridge, and no greenlet left behind. `/health` and `/metrics`:
tests/test_ops_health_metrics.py."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import gevent
import pytest
import requests
from fixtures_web import client_for, make_account
from test_actions_support import (
    Bridge,
    assert_503,
    bridge_fixture,
    delta,
    device_id,
    parse_metrics,
    registered_bridge,
    timed,
    wait_until,
)

from web.server import BridgeServer

SLACK = 2.0  # generous: these bounds say "in time", not "fast"


@pytest.fixture
def bridge(greenlet_leak_check, start_bridge, fake_freeswitch_factory, esl_pool_factory) -> Iterator[Bridge]:
    yield from registered_bridge(greenlet_leak_check, start_bridge, fake_freeswitch_factory,
                                 esl_pool_factory)


@pytest.fixture
def bridge2(greenlet_leak_check, start_bridge, fake_freeswitch_factory, esl_pool_factory) -> Iterator[Bridge]:
    yield from bridge_fixture(start_bridge, fake_freeswitch_factory, esl_pool_factory, nodes=2)


# --- FreeSWITCH absent when esl-bridge starts -----------------------------------------------------

def test_freeswitch_absent_at_start_then_started(greenlet_leak_check, start_bridge: Callable[..., BridgeServer],
                                                 fake_freeswitch_factory) -> None:
    fake = fake_freeswitch_factory()
    fake.stop(notice=False)  # its port is free: nothing listens there yet
    server = start_bridge(freeswitch=(fake.node,), command_timeout=0.5, pool_size=2)
    account_id, key, admin_id = make_account()
    api = client_for(server.url, account_id, key, admin_id)  # type: ignore[attr-defined]
    # Documents are served.
    device = api.create_device(name="phone", sip={"username": "2001", "password": "secret-pass"})
    assert api.get(f"devices/{device['id']}").status_code == 200
    assert api.get("devices").json()["data"][0]["id"] == device["id"]
    # Actions answer 503 within their timeout.
    for method, path in [("GET", f"devices/{device['id']}/quickcall/9196"),
                         ("POST", f"devices/{device['id']}/quickcall/9196"),
                         ("POST", f"devices/{device['id']}/sync"),
                         ("POST", f"devices/{device['id']}/presence"),
                         ("GET", "devices/status")]:
        response, elapsed = timed(lambda m=method, p=path: api.request(m, p))
        assert_503(response, fake.name)
        assert elapsed < 0.5 + SLACK, (path, elapsed)
    health = api.session.get(f"{server.url}/health").json()["data"]  # type: ignore[attr-defined]
    assert health["database"]["ok"] is True and health["freeswitch_connected"] is False
    assert health["freeswitch"][fake.name]["connected"] is False
    assert health["freeswitch"][fake.name]["last_error"]
    assert fake.commands == []
    # FreeSWITCH comes up: the pool started at boot connects by itself.
    fake.start()
    assert server.pool.wait_connected(10), server.pool.health()
    fake.register("2001", "acme.test")
    response = api.post(f"devices/{device['id']}/quickcall/9196")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "answered"
    assert len(fake.received("bgapi originate")) == 1
    api.session.close()


def test_no_pool_configured_is_503(start_bridge: Callable[..., BridgeServer]) -> None:
    server = start_bridge()
    account_id, key, admin_id = make_account()
    api = client_for(server.url, account_id, key, admin_id)  # type: ignore[attr-defined]
    device = api.create_device(name="phone", sip={"username": "2001", "password": "secret-pass"})
    assert_503(api.get(f"devices/{device['id']}/quickcall/9196"))
    assert_503(api.post(f"devices/{device['id']}/presence"))
    assert api.patch(f"devices/{device['id']}", {"enabled": False}).status_code == 200
    api.session.close()


# --- hung or stopped mid-request ------------------------------------------------------------------

@pytest.mark.parametrize("method, path, prefix", [
    ("GET", "quickcall/9196", "bgapi originate"),
    ("POST", "quickcall/9196", "bgapi originate"),
    ("POST", "sync", "sendevent NOTIFY"),
    ("POST", "sync", "api sofia xmlstatus profile internal user"),
    ("POST", "presence", "sendevent PRESENCE_IN"),
    ("GET", "/status", "api sofia xmlstatus profile internal user @"),
])
def test_hung_freeswitch_is_503_within_the_command_timeout(greenlet_leak_check, bridge: Bridge, method: str,
                                                           path: str, prefix: str) -> None:
    bridge.fs1.hang(prefix)
    url = "devices/status" if path == "/status" else f"devices/{device_id(bridge)}/{path}"
    response, elapsed = timed(lambda: bridge.api.request(method, url))
    assert_503(response, bridge.fs1.name)
    timeout = bridge.pool.command_timeout
    assert timeout * 0.9 <= elapsed < timeout + SLACK, elapsed
    assert bridge.fs1.received(prefix)
    # The hung connection is replaced; the next request works once FreeSWITCH answers again.
    bridge.fs1.clear_faults()
    assert bridge.pool.wait_connected(5)
    assert bridge.api.request(method, url).status_code == 200
    greenlet_leak_check.assert_steady()


@pytest.mark.parametrize("how", ["stop", "stop_silently", "kill_connections"])
def test_freeswitch_stopped_while_a_post_quickcall_waits(greenlet_leak_check, bridge: Bridge, how: str) -> None:
    bridge.fs1.set_behaviour("2001", "acme.test", "hang")  # rings until FreeSWITCH goes away
    fake = bridge.fs1

    def stop_when_ringing() -> None:
        assert fake.wait_for(lambda: fake.channels, timeout=5)
        if how == "stop":
            fake.stop()
        elif how == "stop_silently":
            fake.stop(notice=False)
        else:
            fake.kill_connections()

    stopper = gevent.spawn(stop_when_ringing)
    response, elapsed = timed(lambda: bridge.quickcall(device_id(bridge), "9196", method="POST"))
    stopper.get(timeout=5)
    assert_503(response, fake.name)
    assert elapsed < bridge.pool.command_timeout + SLACK, elapsed  # not the 30 s ring timeout
    assert len(fake.received("bgapi originate")) == 1


def test_event_connection_lost_while_a_post_quickcall_rings(greenlet_leak_check, bridge: Bridge) -> None:
    """FreeSWITCH stays up but the event connection drops while the phone rings: the job's
    result can no longer arrive, so the POST answers 503, and the call it said failed is hung
    up rather than left ringing (answered, it would go on to dial the number)."""
    fake = bridge.fs1
    fake.set_behaviour("2001", "acme.test", "hang")  # rings until it is hung up

    def drop_the_event_connection_when_ringing() -> None:
        assert fake.wait_for(lambda: fake.channels, timeout=5)
        for conn in fake.event_connections():
            conn.close()

    dropper = gevent.spawn(drop_the_event_connection_when_ringing)
    response = bridge.quickcall(device_id(bridge), "9196", method="POST")
    dropper.get(timeout=5)
    assert_503(response, fake.name)
    [call_id] = [text.split("origination_uuid=")[1].split(",")[0]
                 for text in fake.received("bgapi originate")]
    assert fake.received(f"api hupall ORIGINATOR_CANCEL esl_bridge_call_id {call_id}")
    assert not fake.channels
    assert bridge.pool.wait_connected(5)
    greenlet_leak_check.assert_steady()


def test_freeswitch_stopped_while_a_command_hangs(greenlet_leak_check, bridge: Bridge) -> None:
    fake = bridge.fs1
    fake.hang("sendevent")
    stopper = gevent.spawn(lambda: (fake.wait_for("sendevent", timeout=5), fake.stop()))
    response, elapsed = timed(lambda: bridge.api.post(f"devices/{device_id(bridge)}/presence"))
    stopper.get(timeout=5)
    assert_503(response, fake.name)
    assert elapsed < bridge.pool.command_timeout + SLACK


def test_restart_recovers_without_restarting_esl_bridge(greenlet_leak_check, bridge: Bridge) -> None:
    fake = bridge.fs1
    ident = device_id(bridge)
    before = parse_metrics(bridge.metrics())
    fake.restart(down_for=0.2)
    assert bridge.pool.wait_connected(5), bridge.pool.health()
    response = bridge.quickcall(ident, "9196", method="POST")
    assert response.status_code == 200, response.text
    assert bridge.api.post(f"devices/{ident}/sync").status_code == 200
    assert len(fake.received("bgapi originate")) == 1 and len(fake.received("sendevent NOTIFY")) == 1
    health = bridge.health()["freeswitch"][fake.name]
    assert health["connected"] is True and health["connections"] == bridge.pool.pool_size
    assert health["reconnects"] >= bridge.pool.pool_size + 1  # every connection came back
    after = parse_metrics(bridge.metrics())
    assert delta(before, after, f'esl_bridge_esl_reconnects_total{{node="{fake.name}"}}') >= bridge.pool.pool_size + 1
    greenlet_leak_check.assert_steady()


def test_restart_while_down_actions_are_503_then_work(greenlet_leak_check, bridge: Bridge) -> None:
    fake = bridge.fs1
    ident = device_id(bridge)
    fake.stop()
    assert wait_until(lambda: not bridge.pool.connected_nodes())
    response, elapsed = timed(lambda: bridge.quickcall(ident, "9196"))
    assert_503(response, fake.name)
    assert elapsed < SLACK  # no live connection: at once
    fake.start()
    assert bridge.pool.wait_connected(5)
    assert bridge.quickcall(ident, "9196").status_code == 200
    greenlet_leak_check.assert_steady()


# --- one node of two down ---------------------------------------------------------------------------

def test_quickcall_with_one_node_down_runs_on_the_other(bridge2: Bridge) -> None:
    bridge = bridge2
    device = bridge.device("2001")
    bridge.register(bridge.fs2, "2001")
    bridge.fs1.stop()
    assert wait_until(lambda: bridge.fs1.name not in bridge.pool.connected_nodes())
    bridge.mark()
    response = bridge.quickcall(device["id"], "9196", method="POST")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["node"] == bridge.fs2.name
    assert [c.split(" ", 2)[:2] for c in bridge.sent(bridge.fs2)] == [["api", "sofia"], ["bgapi", "originate"]]


def test_side_effects_with_one_node_down_still_reach_the_other(bridge2: Bridge) -> None:
    bridge = bridge2
    device = bridge.device("2001")
    bridge.register(bridge.fs2, "2001")
    bridge.fs1.stop()
    assert wait_until(lambda: bridge.fs1.name not in bridge.pool.connected_nodes())
    bridge.mark()
    assert bridge.api.patch(f"devices/{device['id']}", {"enabled": False}).status_code == 200
    bridge.settle()
    assert [c.split("\n")[0] for c in bridge.sent(bridge.fs2)] == [
        "api xml_flush_cache id 2001 acme.test",
        "api sofia xmlstatus profile internal user 2001@acme.test",
        "sendevent NOTIFY",
        "api sofia profile internal flush_inbound_reg 2001@acme.test",
    ]
    assert bridge.sent(bridge.fs1) == []


def test_get_quickcall_jobs_do_not_pile_up(bridge: Bridge) -> None:
    ident = device_id(bridge)
    for _ in range(5):
        assert bridge.quickcall(ident, "9196").status_code == 200
    assert wait_until(lambda: parse_metrics(bridge.metrics())["esl_bridge_esl_jobs_pending"] == 0)
    assert len(bridge.fs1.received("bgapi originate")) == 5


# --- a busy pool --------------------------------------------------------------------------------------

def test_a_busy_pool_serves_waiting_requests_in_turn(start_bridge, fake_freeswitch_factory,
                                                     esl_pool_factory) -> None:
    bridge = next(bridge_fixture(start_bridge, fake_freeswitch_factory, esl_pool_factory,
                                 pool_size=1, max_overflow=0, command_timeout=0.2))
    user = bridge.user()
    for i in range(30):
        bridge.device(f"30{i:02d}", owner_id=user["id"])
    other = bridge.device("2001")
    bridge.fs1.slow("sendevent", 0.01)  # a loaded FreeSWITCH: 10 ms per event
    bridge.mark()
    many = gevent.spawn(bridge.api.post, f"users/{user['id']}/presence")  # 30 events in a row
    assert bridge.fs1.wait_for("sendevent")
    response, elapsed = timed(lambda: requests.post(
        bridge.api.url(f"devices/{other['id']}/presence"),
        headers={"X-Auth-Token": bridge.api.token or ""}, timeout=10))
    assert many.get(timeout=10).status_code == 200
    bridge.api.session.close()
    # In turn, it waits for the event in flight (10 ms), then sends its own.
    assert response.status_code == 200, response.text
    assert elapsed < 0.15, elapsed
