"""The pool (esl_bridge.pool.EslPool): reconnects, faults, jobs, health and metrics.

Every fault test checks that no greenlet leaked: the count of live greenlets goes back to the
pool's steady state after recovery, and to the baseline after everything stopped.
"""
from __future__ import annotations

import logging
import time

import gevent
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from esl_bridge import EslPool, Node
from esl_bridge.errors import (
    CommandTimeout,
    ConnectionLost,
    NotConnected,
)
from web.pool_metrics import PoolCollector

# ---------------------------------------------------------------------- nodes


def test_node_parse():
    node = Node.parse("127.0.0.1:8021:ClueCon")
    assert (node.host, node.port, node.password, node.name) == ("127.0.0.1", 8021, "ClueCon",
                                                                "127.0.0.1:8021")
    assert "ClueCon" not in repr(node) and str(node) == "127.0.0.1:8021"
    assert Node.parse("fs.example:8021:pa:ss").password == "pa:ss"
    assert Node.parse("[::1]:8021:x").name == "[::1]:8021"
    assert [n.name for n in Node.parse_many("a:1:x, b:2:y")] == ["a:1", "b:2"]
    for bad in ("", "host", "host:8021", "host:port:pw", "host:0:pw", "host:70000:pw",
                "host:8021:", "host:8021:pass word", ":8021:pw", "[::1:8021:pw"):
        with pytest.raises(ValueError):
            Node.parse(bad)
    with pytest.raises(ValueError):
        Node.parse_many("a:1:x,a:1:y")
    with pytest.raises(ValueError):
        EslPool([])


def prometheus_text(pool: EslPool) -> str:
    """The pool's figures as `/metrics` renders them."""
    registry = CollectorRegistry()
    registry.register(PoolCollector(pool))
    return generate_latest(registry).decode()


# ---------------------------------------------------------------------- basic use


def test_commands_health_and_metrics(esl_pool, fake_freeswitch):
    name = fake_freeswitch.name
    assert esl_pool.api("status").startswith("UP 0 years")
    assert esl_pool.api("nosuchcmd") == "-ERR nosuchcmd Command not found!\n"
    reply = esl_pool.sendevent("sendevent CUSTOM\nEvent-Subclass: x::y")
    assert reply.startswith("+OK ")
    health = esl_pool.health()
    assert health == {name: {"connected": True, "connections": 2, "overflow": 0,
                             "event_connection": True, "last_error": None, "reconnects": 0,
                             "connect_failures": 0, "pool_size": 2, "idle": 2}}
    metrics = esl_pool.metrics()
    node = metrics["nodes"][name]
    assert node["commands"]["api"] >= 2 and node["commands"]["sendevent"] == 1
    assert node["latency_seconds"]["count"] == sum(node["commands"].values())
    assert node["latency_seconds"]["buckets"][-1][1] <= node["latency_seconds"]["count"]
    text = prometheus_text(esl_pool)
    assert f'esl_bridge_esl_commands_total{{kind="api",node="{name}"}}' in text  # labels sorted
    assert f'esl_bridge_esl_node_up{{node="{name}"}} 1' in text
    assert "# TYPE esl_bridge_esl_command_latency_seconds histogram" in text
    assert text.endswith("\n")
    # command connections never subscribe; exactly one event connection does
    assert len(fake_freeswitch.event_connections()) == 1
    assert len(fake_freeswitch.command_connections()) == 2
    assert fake_freeswitch.event_connections()[0].commands[-1].startswith(
        "event plain BACKGROUND_JOB CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE CUSTOM")


def test_stop_closes_everything(fake_freeswitch, esl_pool_factory, greenlet_leak_check):
    pool = esl_pool_factory([fake_freeswitch])
    pool.stop()
    assert fake_freeswitch.wait_for(lambda: not fake_freeswitch.connections)
    with pytest.raises(NotConnected):
        pool.api("status")
    assert fake_freeswitch.received("exit")


@pytest.mark.parametrize("hung", ["auth/request", "subscription"])
def test_stop_closes_connections_still_coming_up(fake_freeswitch, esl_pool_factory,
                                                 greenlet_leak_check, hung):
    """Stopping while FreeSWITCH has not answered a connection yet (no ``auth/request``, or the
    event subscription unanswered) closes it at once: nothing waits for its long timeouts, and
    no connection or greenlet outlives the pool."""
    if hung == "auth/request":
        fake_freeswitch.hang_on_connect = True
    else:
        fake_freeswitch.hang("event")
    pool = esl_pool_factory([fake_freeswitch], wait=False, connect_timeout=30.0,
                            command_timeout=30.0)
    assert fake_freeswitch.wait_for(lambda: len(fake_freeswitch.connections) >= 2)
    if hung == "subscription":
        assert fake_freeswitch.wait_for("event plain")
    started = time.monotonic()
    pool.stop(timeout=20.0)
    assert time.monotonic() - started < 10.0  # not the 20 s join, nor a 30 s timeout
    assert fake_freeswitch.wait_for(lambda: not fake_freeswitch.connections)


# ---------------------------------------------------------------------- faults


def test_hanging_reply_times_out_and_the_connection_is_replaced(
        fake_freeswitch, esl_pool_factory, greenlet_leak_check):
    pool = esl_pool_factory([fake_freeswitch], command_timeout=0.3)
    greenlet_leak_check.mark_steady()
    accepted = fake_freeswitch.accepted
    fake_freeswitch.hang("api status", times=1)
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as info:
        pool.api("status")
    assert time.monotonic() - started < 0.3 + 1.0  # within its timeout, generous slack
    assert info.value.node == fake_freeswitch.name
    assert pool.wait_connected(5.0)
    assert fake_freeswitch.accepted == accepted + 1  # a new connection replaced the hung one
    assert pool.api("status").startswith("UP")
    node = pool.metrics()["nodes"][fake_freeswitch.name]
    assert node["timeouts"]["api"] == 1 and node["failures"]["api"] == 1
    greenlet_leak_check.assert_steady()


def test_malformed_frames_and_non_utf8_bytes(fake_freeswitch, esl_pool_factory,
                                             greenlet_leak_check, caplog):
    caplog.set_level(logging.WARNING, logger="esl_bridge")
    pool = esl_pool_factory([fake_freeswitch])
    greenlet_leak_check.mark_steady()
    name = fake_freeswitch.name
    # survivable: a header line without ': ', a value that is not UTF-8, raw 0xff bytes
    fake_freeswitch.inject(b"Content-Length: 45\nContent-Type: text/event-plain\n\n"
                           b"Event-Name: CUSTOM\ngarbage line\nx: caf%E9\xff\n\n")
    fake_freeswitch.inject(b"Content-Type: log/data\nContent-Length: 2\n\n\xff\xfe")
    fake_freeswitch.api_handlers["latin"] = lambda fake, args: b"caf\xe9"
    assert pool.api("latin") == "caf\ufffd"
    fake_freeswitch.register("2001", "acme.test")
    assert fake_freeswitch.wait_for(lambda: pool.registrations.lookup("2001", "acme.test"))
    assert pool.health()[name]["reconnects"] == 0
    # not survivable for that connection: a Content-Length that is not a number
    fake_freeswitch.inject(b"Content-Type: text/event-plain\nContent-Length: x1\n\n")
    assert fake_freeswitch.wait_for(lambda: pool.health()[name]["reconnects"] == 1)
    assert pool.wait_connected(5.0)
    assert pool.metrics()["nodes"][name]["malformed"] >= 4
    fake_freeswitch.register("2002", "acme.test")
    assert fake_freeswitch.wait_for(lambda: pool.registrations.lookup("2002", "acme.test"))
    assert pool.api("status").startswith("UP")
    greenlet_leak_check.assert_steady()
    # each was logged, naming the node
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for what in ("header line", "UTF-8", "Content-Length"):
        assert any(name in line and what in line for line in logged), (what, logged)


def test_a_node_without_connections_fails_callers_at_once(
        fake_freeswitch_factory, esl_pool_factory, greenlet_leak_check):
    up, down = fake_freeswitch_factory(), fake_freeswitch_factory()
    pool = esl_pool_factory([up, down], command_timeout=5.0)
    down.stop()
    assert up.wait_for(lambda: not pool.health()[down.name]["connected"])
    started = time.monotonic()
    with pytest.raises(NotConnected) as info:
        pool.api("status", node=down.name)
    assert time.monotonic() - started < 1.0  # at once, not after the 5 s timeout
    assert info.value.node == down.name
    for _ in range(4):  # without a node, only the live one is used
        assert pool.api("version").startswith("FreeSWITCH")
    up.stop()
    assert up.wait_for(lambda: not pool.connected_nodes())
    with pytest.raises(NotConnected) as info:
        pool.api("status")
    assert info.value.node is None and "no FreeSWITCH node is connected" in str(info.value)


def test_with_one_node_configured_no_node_connected_names_it(fake_freeswitch, esl_pool_factory):
    pool = esl_pool_factory([fake_freeswitch])
    fake_freeswitch.stop()
    assert fake_freeswitch.wait_for(lambda: not pool.connected_nodes())
    with pytest.raises(NotConnected) as info:
        pool.pick_node()
    assert info.value.node == fake_freeswitch.name  # was None: the web then said "all"
    assert "no FreeSWITCH node is connected" in str(info.value)


def test_waiters_are_released_when_the_last_connection_dies(
        fake_freeswitch, esl_pool_factory, greenlet_leak_check):
    pool = esl_pool_factory([fake_freeswitch], pool_size=1, command_timeout=5.0,
                            max_overflow=0, pipeline_depth=1)
    busy = gevent.spawn(pool.api, "msleep 5000")
    assert fake_freeswitch.wait_for("api msleep")
    waiting = gevent.spawn(pool.api, "status")
    gevent.sleep(0.02)
    assert not waiting.ready()
    fake_freeswitch.refuse_connections()
    fake_freeswitch.kill_connections()
    with pytest.raises(ConnectionLost):
        busy.get(timeout=2.0)
    with pytest.raises(NotConnected):
        waiting.get(timeout=2.0)


def test_waiting_callers_are_served_in_turn(fake_freeswitch, esl_pool_factory):
    pool = esl_pool_factory([fake_freeswitch], pool_size=1, max_overflow=0, command_timeout=0.5,
                            pipeline_depth=1)

    def hog() -> None:  # commands back to back, as a user presence over many devices sends
        for _ in range(30):
            pool.api("msleep 10")

    hogging = gevent.spawn(hog)
    assert fake_freeswitch.wait_for("api msleep")
    waiters = [gevent.spawn(pool.api, "version") for _ in range(3)]
    for waiter in waiters:  # each gets the connection after at most a command or two
        assert waiter.get(timeout=5.0).startswith("FreeSWITCH Version")
    hogging.get(timeout=10.0)
    sent = [c for c in fake_freeswitch.commands if c.startswith("api ")]
    first_version = sent.index("api version")
    assert first_version <= 2, sent[:5]
    assert sent.count("api version") == 3
    assert sent.index("api version") < len(sent) - 10  # served among the hog's, not after


def test_busy_connections_bound_the_wait(fake_freeswitch, esl_pool_factory):
    pool = esl_pool_factory([fake_freeswitch], pool_size=1, command_timeout=0.1,
                            max_overflow=0, pipeline_depth=1)
    busy = gevent.spawn(pool.api, "msleep 400", timeout=5.0)
    assert fake_freeswitch.wait_for("api msleep")
    with pytest.raises(CommandTimeout) as info:
        pool.api("status")
    assert "busy" in str(info.value)
    assert busy.get(timeout=5.0) == "+OK"
    assert pool.health()[fake_freeswitch.name]["reconnects"] == 0  # busy is not broken


def test_a_connection_handed_over_as_the_wait_ends_is_not_used(fake_freeswitch,
                                                                esl_pool_factory, monkeypatch):
    """Its command would be written with no time left, time out for certain and cost a healthy
    connection: it is not written, the caller gets CommandTimeout, the connection stays."""
    pool = esl_pool_factory([fake_freeswitch], pool_size=1, max_overflow=0, pipeline_depth=1)
    state = pool._single
    real_acquire = state.acquire

    def late_acquire(timeout):
        conn = real_acquire(timeout)
        gevent.sleep(timeout + 0.01)  # the caller's whole budget went on the wait
        return conn

    monkeypatch.setattr(state, "acquire", late_acquire)
    before = len(fake_freeswitch.commands)
    with pytest.raises(CommandTimeout) as info:
        pool.api("status", timeout=0.05)
    assert "no connection free" in str(info.value)
    # Nothing was written (the pool's own registration refresh may have been, meanwhile).
    assert "api status" not in fake_freeswitch.commands[before:]
    monkeypatch.setattr(state, "acquire", real_acquire)
    assert pool.api("status").startswith("UP")
    assert pool.health()[fake_freeswitch.name]["reconnects"] == 0


def test_overflow_connections_serve_callers_while_slow_commands_hold_the_pool(
        fake_freeswitch, esl_pool_factory, greenlet_leak_check):
    pool = esl_pool_factory([fake_freeswitch], pool_size=2, max_overflow=2, overflow_idle=0.1,
                            command_timeout=5.0, stall_after=0)
    greenlet_leak_check.mark_steady()
    name = fake_freeswitch.name
    slow = [gevent.spawn(pool.api, "msleep 800") for _ in range(2)]
    assert fake_freeswitch.wait_for(lambda: len(fake_freeswitch.received("api msleep")) == 2)
    # both connections are held: a fast caller gets an overflow connection, not a wait
    assert pool.api("status").startswith("UP")
    assert not any(g.ready() for g in slow)
    assert pool.health()[name]["overflow"] == 1
    more = [gevent.spawn(pool.api, "msleep 300") for _ in range(4)]
    assert fake_freeswitch.wait_for(lambda: pool.health()[name]["overflow"] == 2)
    gevent.joinall(slow + more, raise_error=True)
    assert pool.health()[name]["connections"] <= 4  # never more than pool_size + max_overflow
    # unused overflow connections are closed again; the steady pool stays
    assert fake_freeswitch.wait_for(lambda: pool.health()[name]["overflow"] == 0, timeout=3.0)
    assert pool.health()[name]["connections"] == 2
    assert pool.health()[name]["reconnects"] == 0
    assert pool.api("status").startswith("UP")
    greenlet_leak_check.assert_steady()


def test_overflow_after_a_delay(fake_freeswitch, esl_pool_factory, greenlet_leak_check):
    pool = esl_pool_factory([fake_freeswitch], pool_size=1, max_overflow=1, overflow_after=0.05,
                            overflow_idle=0.1, command_timeout=5.0, stall_after=0)
    name = fake_freeswitch.name
    slow = gevent.spawn(pool.api, "msleep 600")
    assert fake_freeswitch.wait_for("api msleep")
    fast = gevent.spawn(pool.api, "version")
    gevent.sleep(0.01)
    assert pool.health()[name]["overflow"] == 0  # not yet: it waits overflow_after first
    assert fast.get(timeout=5.0).startswith("FreeSWITCH Version")
    assert not slow.ready()  # served by the overflow connection, not after the slow command
    assert slow.get(timeout=5.0) == "+OK"
    assert fake_freeswitch.wait_for(lambda: pool.health()[name]["overflow"] == 0, timeout=3.0)
