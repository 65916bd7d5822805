"""/health and /metrics with test FreeSWITCH nodes: the database and each node reported, and
requests, latencies, ESL commands, failures and timeouts counted in Prometheus text."""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import peewee
import pytest
import requests
from test_actions_support import (
    Bridge,
    bridge_fixture,
    delta,
    device_id,
    parse_metrics,
    registered_bridge,
    wait_until,
)

from models import db

#: The QuickCall route as /metrics labels it.
QUICKCALL = "/v2/accounts/<account_id>/devices/<device_id>/quickcall/<number>"


@pytest.fixture
def bridge(greenlet_leak_check, start_bridge, fake_freeswitch_factory, esl_pool_factory) -> Iterator[Bridge]:
    yield from registered_bridge(greenlet_leak_check, start_bridge, fake_freeswitch_factory,
                                 esl_pool_factory)


@pytest.fixture
def bridge2(greenlet_leak_check, start_bridge, fake_freeswitch_factory, esl_pool_factory) -> Iterator[Bridge]:
    yield from bridge_fixture(start_bridge, fake_freeswitch_factory, esl_pool_factory, nodes=2)


# --- /health ----------------------------------------------------------------------------------------

def test_health_reports_the_database_and_each_node(bridge2: Bridge) -> None:
    bridge = bridge2
    data = bridge.health()
    assert data["database"] == {"ok": True}
    assert data["freeswitch_connected"] is True
    assert set(data["freeswitch"]) == {bridge.fs1.name, bridge.fs2.name}
    for node in data["freeswitch"].values():
        assert node["connected"] is True
        assert node["connections"] == bridge.pool.pool_size
        assert node["last_error"] is None
    bridge.fs2.stop()
    assert wait_until(lambda: bridge.fs2.name not in bridge.pool.connected_nodes())
    data = bridge.health()
    assert data["freeswitch_connected"] is True
    down = data["freeswitch"][bridge.fs2.name]
    assert down["connected"] is False and down["connections"] == 0 and down["last_error"]
    assert data["freeswitch"][bridge.fs1.name]["connected"] is True
    bridge.fs1.stop()
    assert wait_until(lambda: not bridge.pool.connected_nodes())
    response = bridge.api.session.get(f"{bridge.url}/health")
    assert response.status_code == 200  # documents are still served
    assert response.json()["data"]["freeswitch_connected"] is False
    bridge.fs2.start()
    assert bridge.pool.wait_connected(5, nodes=[bridge.fs2.name])
    assert bridge.health()["freeswitch"][bridge.fs2.name]["connected"] is True


def test_health_needs_no_token_and_sends_nothing(bridge: Bridge) -> None:
    response = requests.get(f"{bridge.url}/health", timeout=10)
    assert response.status_code == 200 and response.json()["status"] == "success"
    assert bridge.sent() == []


# --- /metrics ---------------------------------------------------------------------------------------

def test_metrics_count_requests_latencies_and_esl_commands(bridge: Bridge) -> None:
    node = bridge.fs1.name
    ident = device_id(bridge)
    before = parse_metrics(bridge.metrics())
    assert bridge.quickcall(ident, "9196").status_code == 200
    assert bridge.quickcall(ident, "9196", "timeout=999").status_code == 400
    assert bridge.api.post(f"devices/{ident}/presence").status_code == 200
    after = parse_metrics(bridge.metrics())
    requests_total = 'esl_bridge_http_requests_total{{endpoint="{}",method="{}",status="{}"}}'
    assert delta(before, after, requests_total.format(QUICKCALL, "GET", 200)) == 1
    assert delta(before, after, requests_total.format(QUICKCALL, "GET", 400)) == 1
    presence = "/v2/accounts/<account_id>/devices/<device_id>/presence"
    assert delta(before, after, requests_total.format(presence, "POST", 200)) == 1
    labels = f'endpoint="{QUICKCALL}",method="GET"'
    assert delta(before, after, f"esl_bridge_http_request_seconds_count{{{labels}}}") == 2
    assert delta(before, after, f"esl_bridge_http_request_seconds_sum{{{labels}}}") > 0
    assert delta(before, after, f'esl_bridge_http_request_seconds_bucket{{{labels},le="+Inf"}}') == 2
    assert delta(before, after, f'esl_bridge_esl_commands_total{{node="{node}",kind="bgapi"}}') == 1
    assert delta(before, after, f'esl_bridge_esl_commands_total{{node="{node}",kind="sendevent"}}') == 1
    assert delta(before, after, f'esl_bridge_esl_command_failures_total{{node="{node}",kind="bgapi"}}') == 0
    assert delta(before, after, f'esl_bridge_esl_command_latency_seconds_count{{node="{node}"}}') >= 2
    assert after[f'esl_bridge_esl_node_up{{node="{node}"}}'] == 1


def test_metrics_count_failures_and_timeouts(bridge: Bridge) -> None:
    node = bridge.fs1.name
    ident = device_id(bridge)
    before = parse_metrics(bridge.metrics())
    bridge.fs1.hang("bgapi")
    assert bridge.quickcall(ident, "9196").status_code == 503
    bridge.fs1.clear_faults()
    after = parse_metrics(bridge.metrics())
    assert delta(before, after, f'esl_bridge_esl_command_failures_total{{node="{node}",kind="bgapi"}}') == 1
    assert delta(before, after, f'esl_bridge_esl_command_timeouts_total{{node="{node}",kind="bgapi"}}') == 1
    assert delta(before, after, f'esl_bridge_esl_commands_total{{node="{node}",kind="bgapi"}}') == 0
    status_503 = f'esl_bridge_http_requests_total{{endpoint="{QUICKCALL}",method="GET",status="503"}}'
    assert delta(before, after, status_503) == 1
    bridge.fs1.stop()
    assert wait_until(lambda: not bridge.pool.connected_nodes())
    down = parse_metrics(bridge.metrics())
    assert down[f'esl_bridge_esl_node_up{{node="{node}"}}'] == 0
    assert down[f'esl_bridge_esl_connections{{node="{node}"}}'] == 0


def test_metrics_are_prometheus_text(bridge: Bridge) -> None:
    text = bridge.metrics()
    sample = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*",?)*\})? (-?[0-9.e+-]+|[+-]Inf|NaN)')
    for line in text.splitlines():
        if line.startswith("# "):
            assert re.fullmatch(r"# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+", line), line
        else:
            assert sample.fullmatch(line), line
    families = set(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert ("esl_bridge_http_requests_total", "counter") in families
    assert ("esl_bridge_http_request_seconds", "histogram") in families
    assert ("esl_bridge_esl_reconnects_total", "counter") in families
    assert bridge.sent() == []


def test_health_reports_a_database_failure(bridge: Bridge, monkeypatch: pytest.MonkeyPatch) -> None:
    real = db.database.obj.execute_sql

    def failing(sql: str, params: Any = None) -> Any:
        if sql == "SELECT 1":
            raise peewee.OperationalError("disk I/O error")
        return real(sql, params)

    monkeypatch.setattr(db.database.obj, "execute_sql", failing)
    response = requests.get(f"{bridge.url}/health", timeout=10)
    assert response.status_code == 503, response.text
    assert response.json()["status"] == "error"
    data = response.json()["data"]
    assert data["database"]["ok"] is False and "disk I/O error" in data["database"]["error"]
    assert data["freeswitch"][bridge.fs1.name]["connected"] is True
    monkeypatch.undo()
    assert requests.get(f"{bridge.url}/health", timeout=10).status_code == 200
