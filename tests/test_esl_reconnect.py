"""Reconnecting: a node that goes away, stays away, comes back; what it costs and what is logged.

Every test checks that no greenlet leaked (the fixtures do at teardown; several also compare
with the pool's steady state after recovery).
"""
from __future__ import annotations

import logging
import time

import gevent
import pytest

from esl_bridge import EslPool
from esl_bridge.errors import (
    AuthFailed,
    ConnectionLost,
    FreeSwitchUnavailable,
    NotConnected,
)
from esl_bridge.slots import AUTH_RETRY_MAX


def test_backoff_is_capped_exponential_with_jitter():
    pool = EslPool(["127.0.0.1:1:x"], reconnect_base=0.1, reconnect_max=1.0)
    for failures, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (30, 1.0)]:
        delays = {pool._slots.backoff(failures) for _ in range(50)}
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays), (failures, delays)
        assert len(delays) > 1  # jittered
    # a refused password will not fix itself: its attempts back off much further
    refused = AuthFailed("authentication refused: -ERR invalid", "x:1")
    delays = {pool._slots.backoff(30, refused) for _ in range(50)}
    assert all(AUTH_RETRY_MAX * 0.5 <= d <= AUTH_RETRY_MAX for d in delays)


def test_down_at_start_then_up(fake_freeswitch_factory, esl_pool_factory, greenlet_leak_check):
    fake = fake_freeswitch_factory()
    fake.stop()
    pool = esl_pool_factory([fake], wait=False)
    with pytest.raises(NotConnected) as info:
        pool.api("status")
    assert isinstance(info.value, FreeSwitchUnavailable)
    assert fake.name in str(info.value) or info.value.node is None
    gevent.sleep(0.1)
    health = pool.health()[fake.name]
    assert health["connected"] is False and health["connect_failures"] >= 2
    assert "refused" in health["last_error"].lower()
    fake.start()
    assert pool.wait_connected(5.0)
    assert pool.api("status").startswith("UP")
    greenlet_leak_check.mark_steady()


def test_killed_during_a_command(fake_freeswitch, esl_pool_factory, greenlet_leak_check):
    pool = esl_pool_factory([fake_freeswitch], command_timeout=2.0)
    steady = greenlet_leak_check.mark_steady()
    slow = gevent.spawn(pool.api, "msleep 5000")
    assert fake_freeswitch.wait_for("api msleep")
    fake_freeswitch.kill_connections()
    with pytest.raises(ConnectionLost):  # an error at once, not a timeout
        slow.get(timeout=2.0)
    assert pool.wait_connected(5.0)
    assert pool.api("status").startswith("UP")
    health = pool.health()[fake_freeswitch.name]
    assert health["reconnects"] >= 3 and health["last_error"]
    assert pool.metrics()["nodes"][fake_freeswitch.name]["reconnects"] == health["reconnects"]
    assert steady
    greenlet_leak_check.assert_steady()


@pytest.mark.parametrize("notice", [True, False], ids=["shutdown", "killed"])
def test_restart_under_concurrent_load(fake_freeswitch, esl_pool_factory, greenlet_leak_check,
                                       notice):
    timeout = 0.5
    pool = esl_pool_factory([fake_freeswitch], command_timeout=timeout, pool_size=4,
                            overflow_idle=0.1)
    greenlet_leak_check.mark_steady()
    outcomes: list[tuple[str, float]] = []
    stop = gevent.event.Event()

    def caller() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                pool.api("msleep 2")
                outcomes.append(("ok", time.monotonic() - started))
            except FreeSwitchUnavailable as exc:
                outcomes.append((type(exc).__name__, time.monotonic() - started))
                gevent.sleep(0.005)

    callers = [gevent.spawn(caller) for _ in range(16)]
    gevent.sleep(0.1)
    fake_freeswitch.restart(down_for=0.2, notice=notice)
    restarted = len(outcomes)
    gevent.sleep(0.4)
    stop.set()
    gevent.joinall(callers, raise_error=True)
    failures = [kind for kind, _ in outcomes if kind != "ok"]
    assert failures, "the restart was not felt"
    assert set(failures) <= {"NotConnected", "ConnectionLost", "CommandTimeout"}
    assert any(kind == "ok" for kind, _ in outcomes[restarted:]), "no recovery"
    # no caller waited past its timeout (slack for a loaded machine's scheduling only)
    assert max(elapsed for _, elapsed in outcomes) < timeout + 0.25
    assert pool.wait_connected(5.0)
    greenlet_leak_check.assert_steady()


def test_one_attempt_at_a_time_while_a_node_does_not_answer(fake_freeswitch, esl_pool_factory,
                                                           greenlet_leak_check):
    """FreeSWITCH takes the TCP connection but never says auth/request: after the first round
    of attempts, one slot of the node retries and the others wait; the moment FreeSWITCH
    answers, every connection comes up."""
    fake_freeswitch.hang_on_connect = True
    pool = esl_pool_factory([fake_freeswitch], wait=False, connect_timeout=0.1,
                            reconnect_base=0.01, reconnect_max=0.02)
    slots = pool.pool_size + 1  # command connections and the event connection
    assert fake_freeswitch.wait_for(lambda: fake_freeswitch.accepted >= slots)
    assert fake_freeswitch.wait_for(lambda: len(fake_freeswitch.connections) <= 1)
    accepted = fake_freeswitch.accepted
    most = 0
    while fake_freeswitch.accepted < accepted + 5:  # five more attempts
        most = max(most, len(fake_freeswitch.connections))
        gevent.sleep(0.002)
    assert most == 1
    assert not pool.health()[fake_freeswitch.name]["connected"]
    fake_freeswitch.hang_on_connect = False
    assert pool.wait_connected(5.0)
    assert pool.api("status").startswith("UP")


def test_one_log_line_per_change_of_the_node_s_state(fake_freeswitch, esl_pool_factory,
                                                     greenlet_leak_check, caplog):
    """Down for many attempts, then back: one line when it goes, one when it is back (with how
    long and how many attempts), nothing per attempt or per connection."""
    pool = esl_pool_factory([fake_freeswitch], reconnect_base=0.005, reconnect_max=0.01)
    name = fake_freeswitch.name
    caplog.set_level(logging.DEBUG, logger="esl_bridge")
    fake_freeswitch.stop()
    assert fake_freeswitch.wait_for(
        lambda: pool.health()[name]["connect_failures"] >= 10, timeout=5.0)
    fake_freeswitch.start()
    assert pool.wait_connected(5.0)
    told = [r for r in caplog.records
            if r.levelno >= logging.INFO and r.name.startswith("esl_bridge")]
    assert len(told) == 2, [r.getMessage() for r in told]
    down, back = (r.getMessage() for r in told)
    assert name in down and "unreachable" in down and "shut down" in down
    assert name in back and "back after" in back and "failed attempts" in back
    assert [r for r in caplog.records if "connection failed" in r.getMessage()]  # debug


def test_a_refused_password_makes_the_node_unreachable(fake_freeswitch, esl_pool_factory,
                                                       greenlet_leak_check):
    """Its attempts are then those of one slot, backing off up to AUTH_RETRY_MAX (see the
    backoff test), not one per connection every reconnect_max."""
    pool = esl_pool_factory([f"127.0.0.1:{fake_freeswitch.port}:WrongPassword"], wait=False,
                            reconnect_base=0.01, reconnect_max=0.02)
    name = fake_freeswitch.name
    assert fake_freeswitch.wait_for(
        lambda: pool.health()[name]["connect_failures"] >= pool.pool_size + 1)
    assert "authentication refused" in pool.health()[name]["last_error"]
    reach = pool._slots.reachability(pool._single)
    assert not reach.reachable.is_set() and reach.prober is not None


def test_actions_while_a_node_is_down_add_nothing_to_the_log(fake_freeswitch, esl_pool_factory,
                                                             greenlet_leak_check, caplog):
    """Every action fails at once with 503's error, and the log holds the one line saying the
    node went down, not a line per action."""
    from esl_bridge import actions

    pool = esl_pool_factory([fake_freeswitch])
    caplog.set_level(logging.INFO, logger="esl_bridge")
    fake_freeswitch.stop()
    assert fake_freeswitch.wait_for(lambda: not pool.connected_nodes())
    for _ in range(10):
        with pytest.raises(FreeSwitchUnavailable):
            actions.presence_reset(pool, "2001@acme.test")
        with pytest.raises(FreeSwitchUnavailable):
            actions.registrations(pool, "acme.test")
    told = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(told) == 1 and "unreachable" in told[0], told


def test_actions_in_flight_when_freeswitch_goes_add_nothing_to_the_log(
        fake_freeswitch, esl_pool_factory, greenlet_leak_check, caplog):
    """Actions whose commands were on the wire when FreeSWITCH went (a restart) fail with
    503's error; the log says the node went down, not a line per action."""
    from esl_bridge import actions

    pool = esl_pool_factory([fake_freeswitch])
    caplog.set_level(logging.INFO, logger="esl_bridge")
    fake_freeswitch.hang("sendevent PRESENCE_IN")
    def reset(presence_id: str) -> Exception | None:
        try:
            actions.presence_reset(pool, presence_id)
        except FreeSwitchUnavailable as exc:
            return exc
        return None

    calls = [gevent.spawn(reset, f"20{n:02d}@acme.test") for n in range(8)]
    assert fake_freeswitch.wait_for(lambda: len(fake_freeswitch.received("sendevent")) >= 2)
    fake_freeswitch.stop(notice=False)
    gevent.joinall(calls, timeout=5)
    assert all(isinstance(call.value, FreeSwitchUnavailable) for call in calls)
    told = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(told) == 1 and "unreachable" in told[0], told


def test_a_pool_stopped_while_a_node_was_down_reconnects_when_started_again(
        fake_freeswitch, esl_pool_factory, greenlet_leak_check):
    """What the stopped pool knew of the node (unreachable, which slot was retrying) does not
    outlive it: started again, the pool connects as soon as FreeSWITCH answers."""
    pool = esl_pool_factory([fake_freeswitch])
    name = fake_freeswitch.name
    fake_freeswitch.stop()
    assert fake_freeswitch.wait_for(lambda: pool.health()[name]["connect_failures"] >= 2)
    pool.stop()
    fake_freeswitch.start()
    pool.start()
    assert pool.wait_connected(5.0), pool.health()
    assert pool.api("status").startswith("UP")


def test_an_event_connection_a_vanished_host_left_open_is_replaced(
        fake_freeswitch, esl_pool_factory, greenlet_leak_check):
    """The host went away without a word and is back (power lost, a failover): nothing told
    the pool, and nothing is ever written on the event connection that would find out. Once a
    command connection has found out (no reply), the event connection is checked too, found
    dead and replaced: job results arrive again, instead of never."""
    pool = esl_pool_factory([fake_freeswitch], command_timeout=0.3)
    fake_freeswitch.vanish()

    def status() -> str:
        try:
            return pool.api("status")
        except FreeSwitchUnavailable:
            return ""

    assert fake_freeswitch.wait_for(lambda: status().startswith("UP"), timeout=5.0)
    assert fake_freeswitch.wait_for(fake_freeswitch.event_connections, timeout=5.0)
    assert pool.wait_connected(5.0)
    assert pool.bgapi("status").wait(5.0).ok
