"""One connection against the test FreeSWITCH.

Most tests run on both kinds: ``EventConnection`` (greenswitch's reader greenlet, used for the
event connection) and ``CommandConnection`` (several commands in flight, replies read in the
hub; used for command connections). The rules are the same; what differs has tests of its own:
how unsolicited bytes are treated (a reader drops a stray reply, a command connection is closed
by one), taking turns against pipelining, and a command interrupted from outside.
"""
from __future__ import annotations

import time

import gevent
import pytest
from greenswitch.esl import InboundESL

from esl_bridge.command_connection import CommandConnection
from esl_bridge.errors import (
    AuthFailed,
    CommandTimeout,
    ConnectionLost,
    ConnectTimeout,
    FreeSwitchUnavailable,
    NotConnected,
    UnsafeValue,
)
from esl_bridge.event_connection import EventConnection
from esl_bridge.frames import check_frame_text


def connection(fake, password="ClueCon", kind=EventConnection, **kwargs) -> EventConnection:
    kwargs.setdefault("connect_timeout", 0.5)
    kwargs.setdefault("command_timeout", 0.5)
    return kind("127.0.0.1", fake.port, password, **kwargs)


@pytest.fixture(params=[EventConnection, CommandConnection], ids=["reader", "direct"])
def kind(request):
    return request.param


@pytest.fixture
def conn(fake_freeswitch, kind):
    c = connection(fake_freeswitch, kind=kind)
    c.connect()
    yield c
    c.stop(timeout=0.2)


def test_it_is_greenswitchs_inbound_esl(conn):
    assert isinstance(conn, InboundESL)
    assert conn.connected and conn.alive
    assert conn.api("status").startswith("UP 0 years")


def test_a_host_name_is_resolved(fake_freeswitch, kind):
    """An IP address is connected to directly; a name goes through the resolver."""
    c = kind("localhost", fake_freeswitch.port, "ClueCon", connect_timeout=2.0)
    c.connect()
    assert c.api("status").startswith("UP 0 years")
    c.stop()


def test_auth_refused(fake_freeswitch, kind, greenlet_leak_check):
    c = connection(fake_freeswitch, password="WrongPassword", kind=kind)
    with pytest.raises(AuthFailed) as info:
        c.connect()
    assert info.value.node == fake_freeswitch.name
    assert "-ERR invalid" in str(info.value)
    assert not c.alive
    c.stop()


def test_connection_refused(fake_freeswitch, kind, greenlet_leak_check):
    fake_freeswitch.refuse_connections()
    c = connection(fake_freeswitch, kind=kind)
    with pytest.raises(NotConnected) as info:
        c.connect()
    assert isinstance(info.value, FreeSwitchUnavailable)
    assert info.value.node == fake_freeswitch.name


def test_closed_while_the_tcp_connect_runs(fake_freeswitch, kind, greenlet_leak_check,
                                          monkeypatch):
    """Closed (the pool stopping) while its TCP connect is under way: the socket that connect
    then returns is closed at once and the connection never comes up."""
    c = connection(fake_freeswitch, kind=kind)
    opened = []
    real_open = c._open_socket

    def open_socket():
        c.close(NotConnected("the ESL pool is stopping", c.node))  # meanwhile
        opened.append(real_open())
        return opened[0]

    monkeypatch.setattr(c, "_open_socket", open_socket)
    with pytest.raises(NotConnected) as info:
        c.connect()
    assert "stopping" in str(info.value)
    assert opened[0].fileno() == -1  # closed, not left to linger
    assert not c.alive
    assert fake_freeswitch.wait_for(lambda: not fake_freeswitch.connections)


def test_no_auth_request_times_out(fake_freeswitch, kind, greenlet_leak_check):
    fake_freeswitch.hang_on_connect = True
    c = connection(fake_freeswitch, connect_timeout=0.2, kind=kind)
    started = time.monotonic()
    with pytest.raises(ConnectTimeout):
        c.connect()
    assert time.monotonic() - started < 0.2 + 1.0  # within its timeout, generous slack
    assert not c.alive
    c.stop()


def test_no_auth_reply_times_out(fake_freeswitch, kind, greenlet_leak_check):
    fake_freeswitch.hang("auth")
    c = connection(fake_freeswitch, connect_timeout=0.2, kind=kind)
    with pytest.raises(ConnectTimeout):
        c.connect()
    assert not c.alive
    c.stop()


def test_a_hanging_command_times_out_and_closes_the_connection(conn, fake_freeswitch):
    fake_freeswitch.hang("api status")
    with pytest.raises(CommandTimeout) as info:
        conn.api("status", timeout=0.1)
    assert info.value.node == fake_freeswitch.name
    assert not conn.alive and conn.closed.is_set()
    with pytest.raises(NotConnected):
        conn.api("version")


def test_a_write_that_cannot_complete_times_out(conn, fake_freeswitch, greenlet_leak_check):
    fake_freeswitch.stall_reads = True
    huge = "sendevent CUSTOM\nx: " + "y" * (64 * 1024 * 1024)
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        conn.execute(huge, timeout=0.2)
    assert time.monotonic() - started < 0.2 + 1.0  # within its timeout, generous slack
    assert not conn.alive


def test_commands_take_turns_on_the_event_connection(fake_freeswitch):
    c = connection(fake_freeswitch, kind=EventConnection)
    c.connect()
    fake_freeswitch.api_handlers["echo"] = lambda fake, args: (gevent.sleep(0.005), args)[1]
    replies = {}

    def ask(i: int) -> None:
        replies[i] = c.api(f"echo {i}", timeout=2.0)

    gevent.joinall([gevent.spawn(ask, i) for i in range(8)], raise_error=True)
    assert replies == {i: str(i) for i in range(8)}
    served = fake_freeswitch.connections[-1]
    # with a lock there is never more than one of our commands on the server's side
    assert [kind for kind, line in served.trace if line.startswith("api echo")] == [
        "recv", "reply"] * 8
    assert max(len(c.commands) for c in fake_freeswitch.connections) == 9  # auth + 8
    c.stop()


def test_command_connections_carry_several_commands_matched_in_order(fake_freeswitch):
    c = connection(fake_freeswitch, kind=CommandConnection)
    c.connect()
    fake_freeswitch.api_handlers["echo"] = lambda fake, args: (gevent.sleep(0.005), args)[1]
    callers = [gevent.spawn(c.api, f"echo {i}", 2.0) for i in range(8)]
    gevent.sleep(0)
    assert c.in_flight == 8  # all written before the first reply
    assert [g.get(timeout=5.0) for g in callers] == [str(i) for i in range(8)]
    assert c.in_flight == 0 and c.alive
    c.stop()


def test_partial_writes_still_send_the_whole_frame(conn, fake_freeswitch):
    class Trickle:
        """A socket that takes at most 7 bytes per send, as a full buffer can."""

        def __init__(self, sock):
            self._sock = sock
            self.sends = 0

        def send(self, data, *args):
            self.sends += 1
            return self._sock.send(bytes(data[:7]), *args)

        def sendall(self, data, *args):
            view = memoryview(data)
            while view:
                view = view[self.send(view):]

        def shutdown(self, how):
            return self._sock.shutdown(how)

        def close(self):
            return self._sock.close()

        def recv(self, *args):
            return self._sock.recv(*args)

    if isinstance(conn, CommandConnection):
        conn._raw = trickle = Trickle(conn._raw)
    else:
        conn.sock = trickle = Trickle(conn.sock)
    text = "sendevent CUSTOM\nEvent-Subclass: esl::bridge\nx: " + "y" * 100
    assert conn.execute(text).reply_text.startswith("+OK")
    assert trickle.sends > 10
    assert fake_freeswitch.commands[-1] == text
    assert conn.api("version").startswith("FreeSWITCH Version")


def interrupted(kind: type, fake) -> EventConnection:
    """A connected ``kind`` whose ``api msleep 150`` was interrupted by an outer timeout."""
    conn = connection(fake, kind=kind)
    conn.connect()
    with pytest.raises(gevent.Timeout):
        with gevent.Timeout(0.05):
            conn.api("msleep 150", timeout=5.0)
    return conn


def test_a_command_interrupted_from_outside_closes_the_event_connection(
        fake_freeswitch, greenlet_leak_check):
    conn = interrupted(EventConnection, fake_freeswitch)
    # its reply may still come, and would be taken for the next command's: never trusted again
    assert not conn.alive
    assert "interrupted" in str(conn.close_reason)
    with pytest.raises(NotConnected):
        conn.api("version")
    conn.stop()


def test_a_command_interrupted_from_outside_keeps_its_place_on_a_command_connection(
        fake_freeswitch, greenlet_leak_check):
    """Its reply is read and dropped when it comes: the next command gets its own reply."""
    conn = interrupted(CommandConnection, fake_freeswitch)
    assert conn.alive and conn.abandoned == 1
    assert conn.api("version").startswith("FreeSWITCH Version")
    assert conn.abandoned == 0 and conn.in_flight == 0
    conn.stop()


def test_killed_during_a_command(conn, fake_freeswitch, greenlet_leak_check):
    waiter = gevent.spawn(conn.api, "msleep 5000", 5.0)
    assert fake_freeswitch.wait_for("api msleep")
    fake_freeswitch.kill_connections()
    with pytest.raises(ConnectionLost):
        waiter.get(timeout=2.0)
    assert not conn.alive


def test_disconnect_notice_releases_the_caller(conn, fake_freeswitch):
    waiter = gevent.spawn(conn.api, "msleep 5000", 5.0)
    assert fake_freeswitch.wait_for("api msleep")
    fake_freeswitch.stop()
    with pytest.raises(ConnectionLost) as info:
        waiter.get(timeout=2.0)
    assert "shut down" in str(info.value)


def test_drop_mid_reply(conn, fake_freeswitch):
    fake_freeswitch.drop_mid_reply("api status")
    with pytest.raises(ConnectionLost):
        conn.api("status")
    assert not conn.alive


def test_a_non_utf8_body_is_replaced_and_noted(fake_freeswitch, kind):
    notes = []
    c = connection(fake_freeswitch, on_malformed=notes.append, kind=kind)
    c.connect()
    fake_freeswitch.api_handlers["latin"] = lambda fake, args: b"caf\xe9 \xff"
    assert c.api("latin") == "caf\ufffd \ufffd"
    assert c.alive and notes and "non-UTF-8" in notes[0]
    assert c.api("version").startswith("FreeSWITCH Version")
    c.stop()


def test_non_utf8_body_and_stray_reply_do_not_kill_the_reader(fake_freeswitch):
    notes = []
    c = connection(fake_freeswitch, on_malformed=notes.append)
    c.connect()
    fake_freeswitch.api_handlers["latin"] = lambda fake, args: b"caf\xe9 \xff"
    assert c.api("latin") == "caf\ufffd \ufffd"
    fake_freeswitch.inject(b"Content-Type: api/response\nContent-Length: 2\n\nhi", to="all")
    fake_freeswitch.inject(b"Content-Type: log/data\nContent-Length: 3\n\nlog", to="all")
    gevent.sleep(0.02)
    assert c.api("version").startswith("FreeSWITCH Version")
    assert len(notes) >= 2
    c.stop()


def test_events_are_dispatched_as_greenswitch_does(fake_freeswitch):
    c = connection(fake_freeswitch)
    seen = []
    c.register_handle("sofia::register", lambda ev: seen.append(("register", ev)))
    c.register_handle("*", lambda ev: seen.append(("*", ev)))
    c.register_handle("CHANNEL_CREATE", lambda ev: 1 / 0)  # a failing handler
    c.connect()
    c.execute("event plain CUSTOM sofia::register sofia::expire")
    fake_freeswitch.register("2001", "acme.test", user_agent="evil%0AEvent-Name: BACKGROUND_JOB")
    fake_freeswitch.expire("2001", "acme.test")
    assert fake_freeswitch.wait_for(lambda: len(seen) == 2)
    (kind1, reg), (kind2, exp) = seen
    assert kind1 == "register" and reg.subclass == "sofia::register"
    assert reg["user-agent"] == "evil\nEvent-Name: BACKGROUND_JOB"
    assert reg.name == "CUSTOM"
    assert kind2 == "*" and exp.subclass == "sofia::expire"
    assert c.alive
    c.stop()


def test_an_unparseable_frame_closes_the_connection(conn, fake_freeswitch, greenlet_leak_check):
    fake_freeswitch.inject(b"Content-Type: api/response\nContent-Length: nope\n\n", to="all")
    assert conn.closed.wait(2.0)
    assert isinstance(conn.close_reason, ConnectionLost)
    assert "protocol error" in str(conn.close_reason)


@pytest.mark.parametrize("text", ["", "api status\n\napi version", "api status\r", "a\0b",
                                  "api status\n", "\napi status"])
def test_frame_gate(text):
    with pytest.raises(UnsafeValue):
        check_frame_text(text)


def test_stop_says_exit(conn, fake_freeswitch):
    conn.stop()
    assert fake_freeswitch.received("exit") == ["exit"]
    assert not conn.alive
