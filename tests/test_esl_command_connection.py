"""Command connections (esl_bridge.command_connection.CommandConnection): what the hub notices.

Without a reader greenlet, everything must still be noticed: bytes or EOF on an idle
connection, a frame that is not the reply, a deadline that passes. The pool tests at the end
check that a connection closed that way is never lent out again. What happens to several
commands in flight at once is in ``test_esl_pipelining.py``.
"""
from __future__ import annotations

import time

import gevent
import pytest
from fake_freeswitch import SHUTDOWN, api_response, disconnect_notice, serialize_event
from fixtures_freeswitch import live_greenlets

from esl_bridge.command_connection import CommandConnection
from esl_bridge.errors import CommandTimeout, ConnectionLost, NotConnected


def connection(fake, **kwargs) -> CommandConnection:
    kwargs.setdefault("connect_timeout", 0.5)
    kwargs.setdefault("command_timeout", 0.5)
    return CommandConnection("127.0.0.1", fake.port, "ClueCon", **kwargs)


@pytest.fixture
def notes() -> list[str]:
    return []


@pytest.fixture
def conn(fake_freeswitch, notes):
    c = connection(fake_freeswitch, on_malformed=notes.append)
    c.connect()
    yield c
    c.stop(timeout=0.2)


def served_by(fake, conn_index: int = -1):
    """The fake's side of our (only) command connection."""
    return fake.command_connections()[conn_index]


def test_no_reader_greenlet(fake_freeswitch, greenlet_leak_check):
    before = len(live_greenlets())
    c = connection(fake_freeswitch)
    c.connect()
    assert c._receive_events_greenlet is None
    assert c.api("status").startswith("UP 0 years")
    fake_greenlet = 1  # the fake serves each connection with a greenlet of its own
    assert len(live_greenlets()) <= before + fake_greenlet
    c.stop()


def test_an_idle_connection_that_gets_a_disconnect_notice_is_closed_at_once(
        conn, fake_freeswitch, greenlet_leak_check):
    served_by(fake_freeswitch).deliver(disconnect_notice(SHUTDOWN))
    assert conn.closed.wait(1.0)  # no command needed to notice it
    assert isinstance(conn.close_reason, ConnectionLost)
    assert "shut down" in str(conn.close_reason)
    with pytest.raises(NotConnected):
        conn.api("status")
    assert not fake_freeswitch.received("api status")


def test_an_idle_connection_sees_eof_at_once(conn, fake_freeswitch):
    fake_freeswitch.kill_connections()
    assert conn.closed.wait(1.0)
    assert "closed the connection" in str(conn.close_reason)
    assert not conn.alive


def test_a_stray_reply_on_an_idle_connection_is_never_taken_for_the_next_reply(
        conn, fake_freeswitch, notes):
    served_by(fake_freeswitch).deliver(api_response("not yours"))
    assert conn.closed.wait(1.0)
    assert "unexpected api/response frame" in str(conn.close_reason)
    assert notes  # counted as malformed by the pool
    with pytest.raises(NotConnected):
        conn.api("version")


def test_a_disconnect_notice_before_the_reply_fails_the_command(conn, fake_freeswitch):
    def notice_first(fake, args):
        served_by(fake).write(disconnect_notice(SHUTDOWN))  # ahead of the reply
        return "+OK late"

    fake_freeswitch.api_handlers["early"] = notice_first
    with pytest.raises(ConnectionLost) as info:
        conn.api("early")
    assert "shut down" in str(info.value)
    assert not conn.alive


def test_an_event_before_the_reply_fails_the_command(conn, fake_freeswitch, notes):
    event = serialize_event([("Event-Name", "HEARTBEAT")])

    def event_first(fake, args):
        served_by(fake).write(event)
        return "+OK late"

    fake_freeswitch.api_handlers["early"] = event_first
    with pytest.raises(ConnectionLost) as info:
        conn.api("early")
    assert "unexpected text/event-plain frame" in str(info.value)
    assert not conn.alive and notes


def test_bytes_right_after_a_reply_close_the_connection_once_the_reply_is_returned(
        conn, fake_freeswitch):
    def then_notice(fake, args):
        fake.inject(disconnect_notice(SHUTDOWN), to="all")  # queued behind the reply
        return "+OK mine"

    fake_freeswitch.api_handlers["then"] = then_notice
    assert conn.api("then") == "+OK mine"
    assert conn.closed.wait(1.0)
    assert "shut down" in str(conn.close_reason)


def test_a_short_deadline_after_a_long_one(fake_freeswitch, greenlet_leak_check):
    c = connection(fake_freeswitch, connect_timeout=5.0, command_timeout=5.0)
    c.connect()
    assert c.api("status").startswith("UP")  # the timer is armed about 5 s out
    fake_freeswitch.hang("api version")
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        c.api("version", timeout=0.1)
    assert time.monotonic() - started < 0.1 + 1.0  # its own deadline, not the 5 s one's
    c.stop()


def test_a_long_command_after_a_short_deadline(conn, fake_freeswitch):
    assert conn.api("status", timeout=0.05).startswith("UP")  # the timer is armed 50 ms out
    # the timer fires while this one is in flight: it must re-arm, not close
    assert conn.api("msleep 200", timeout=2.0) == "+OK"
    assert conn.alive
    assert conn.api("version").startswith("FreeSWITCH Version")


def test_stop_while_idle_leaves_nothing_behind(fake_freeswitch, greenlet_leak_check):
    c = connection(fake_freeswitch)
    c.connect()
    c.api("status")
    c.stop()
    assert not c.alive and c._timer is None
    assert fake_freeswitch.received("exit") == ["exit"]
    assert fake_freeswitch.wait_for(lambda: not fake_freeswitch.connections)


# ---------------------------------------------------------------------- in the pool


def test_the_pool_never_lends_out_a_connection_that_got_a_notice_while_idle(
        fake_freeswitch, esl_pool_factory, greenlet_leak_check):
    pool = esl_pool_factory([fake_freeswitch], pool_size=2, max_overflow=0)
    greenlet_leak_check.mark_steady()
    name = fake_freeswitch.name
    notified = fake_freeswitch.command_connections()
    assert len(notified) == 2
    for served in notified:
        served.deliver(disconnect_notice(SHUTDOWN))
    assert fake_freeswitch.wait_for(lambda: pool.health()[name]["reconnects"] == 2)
    assert pool.wait_connected(5.0)
    for _ in range(4):
        assert pool.api("status").startswith("UP")
    for served in notified:  # nothing was sent on them after the notice
        assert not [c for c in served.commands if c.startswith("api status")]
    assert "shut down" in pool.health()[name]["last_error"]
    greenlet_leak_check.assert_steady()


def test_a_stray_reply_to_an_idle_pool_connection_is_not_a_caller_s_reply(
        fake_freeswitch, esl_pool_factory):
    pool = esl_pool_factory([fake_freeswitch], pool_size=1, max_overflow=0)
    name = fake_freeswitch.name
    fake_freeswitch.command_connections()[0].deliver(api_response("not yours"))
    assert fake_freeswitch.wait_for(lambda: pool.health()[name]["reconnects"] == 1)
    assert pool.wait_connected(5.0)
    assert pool.api("version").startswith("FreeSWITCH Version")
    assert pool.metrics()["nodes"][name]["malformed"] >= 1


def test_a_short_wait_behind_a_long_one_expires_in_time(fake_freeswitch, esl_pool_factory):
    pool = esl_pool_factory([fake_freeswitch], pool_size=1, max_overflow=0,
                            command_timeout=5.0, pipeline_depth=1)
    busy = gevent.spawn(pool.api, "msleep 500")
    assert fake_freeswitch.wait_for("api msleep")
    patient = gevent.spawn(pool.api, "version", timeout=3.0)  # arms the node's wait timer
    gevent.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as info:
        pool.api("status", timeout=0.1)
    assert time.monotonic() - started < 0.1 + 1.0  # not the 3 s of the waiter ahead of it
    assert "busy" in str(info.value)
    assert busy.get(timeout=5.0) == "+OK"
    assert patient.get(timeout=5.0).startswith("FreeSWITCH Version")
    assert not pool._states[fake_freeswitch.name].waiting


def test_a_caller_killed_while_waiting_leaves_the_queue(
        fake_freeswitch, esl_pool_factory, greenlet_leak_check):
    pool = esl_pool_factory([fake_freeswitch], pool_size=1, max_overflow=0,
                            command_timeout=5.0, pipeline_depth=1)
    state = pool._states[fake_freeswitch.name]
    busy = gevent.spawn(pool.api, "msleep 200")
    assert fake_freeswitch.wait_for("api msleep")
    first = gevent.spawn(pool.api, "version")
    second = gevent.spawn(pool.api, "status")
    gevent.sleep(0.01)
    assert len(state.waiting) == 2
    first.kill()
    assert len(state.waiting) == 1
    assert busy.get(timeout=5.0) == "+OK"
    assert second.get(timeout=5.0).startswith("UP")  # the connection went on to the next
    assert not state.waiting and pool.health()[fake_freeswitch.name]["idle"] == 1
    assert fake_freeswitch.received("api version") == []
