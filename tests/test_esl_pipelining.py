"""Several commands in flight on one command connection: every way to break the reply queue.

The invariant under test (``esl_bridge.command_connection``): any timeout, partial write or
error on a connection closes it at once and fails every command still waiting on it; nothing
is ever matched across a reconnect. In every scenario each caller gets its own reply or an
error within its timeout (``get(timeout=...)`` bounds it, with scheduling slack), never another
caller's reply, and no greenlet is left behind (the fixtures check that at teardown).

Most scenarios queue four commands on the pool's one connection behind ``api gate``, which the
test FreeSWITCH answers only once the test opens the gate: FreeSWITCH reads and answers one
connection's commands in order, so the others wait behind it, written and unanswered.
"""
from __future__ import annotations

import gevent
import gevent.event
import pytest

from esl_bridge import commands
from esl_bridge.errors import CommandTimeout, ConnectionLost, ReplyTimeout
from esl_bridge.node import service_key

DEPTH = 4
#: Slack for the scheduling of a loaded machine, on top of a caller's own timeout.
SLACK = 1.0


@pytest.fixture
def gate(fake_freeswitch):
    """``api gate`` answers ``+OK gate`` once the returned event is set; ``api echo X``
    answers ``X`` (so a reply shows whose it is)."""
    opened = gevent.event.Event()
    fake_freeswitch.api_handlers["gate"] = lambda fake, args: (opened.wait(), "+OK gate")[1]
    fake_freeswitch.api_handlers["echo"] = lambda fake, args: args
    yield opened
    opened.set()


def settled(pool, fake):
    """``pool`` once its first registration refresh is done, so that the refresh does not
    queue a command of its own among a test's."""
    assert fake.wait_for(lambda: fake.received("api sofia xmlstatus") and not any(
        conn.in_flight for conn in pool._single.own))
    return pool


@pytest.fixture
def pool(fake_freeswitch, esl_pool_factory, gate):
    """One command connection, four commands in flight, no stall and no overflow."""
    return settled(esl_pool_factory([fake_freeswitch], pool_size=1, max_overflow=0,
                                    pipeline_depth=DEPTH, stall_after=60.0,
                                    command_timeout=5.0), fake_freeswitch)


def connections(pool):
    return pool._single.own


def queue(pool, fake, commands, timeouts=None):
    """One caller per command, in this order; returns once every command is in flight."""
    timeouts = timeouts or [5.0] * len(commands)
    callers = [gevent.spawn(pool.api, command, timeout=timeout)
               for command, timeout in zip(commands, timeouts, strict=True)]
    (conn,) = connections(pool)
    assert fake.wait_for(lambda: conn.in_flight == len(commands))
    return callers


def outcome(caller, timeout):
    """The caller's reply, or the class of its error, within its timeout."""
    try:
        return caller.get(timeout=timeout + SLACK)
    except (ConnectionLost, CommandTimeout) as exc:
        return type(exc)


def recovered(pool, fake):
    """The pool replaced the connection, and a new command gets its own reply."""
    assert pool.wait_connected(5.0)
    assert pool.api("echo after") == "after"
    assert fake.received("api echo after")


def test_the_queue_is_matched_in_order(pool, fake_freeswitch, gate):
    callers = queue(pool, fake_freeswitch, ["gate", "echo 1", "echo 2", "echo 3"])
    gate.set()
    assert [outcome(c, 5.0) for c in callers] == ["+OK gate", "1", "2", "3"]
    (served,) = fake_freeswitch.command_connections()
    assert served.commands[-4:] == ["api gate", "api echo 1", "api echo 2", "api echo 3"]
    assert pool.health()[fake_freeswitch.name]["reconnects"] == 0


def test_a_reply_that_never_comes(pool, fake_freeswitch, greenlet_leak_check):
    """The first command's reply never comes: at its timeout it gets ReplyTimeout, and the
    three behind it, whose own timeouts are later, get ConnectionLost at that moment."""
    fake_freeswitch.hang("api echo first", times=1)
    callers = queue(pool, fake_freeswitch, ["echo first", "echo 1", "echo 2", "echo 3"],
                    [0.3, 5.0, 5.0, 5.0])
    assert outcome(callers[0], 0.3) is ReplyTimeout
    assert [outcome(c, 0.3) for c in callers[1:]] == [ConnectionLost] * 3
    recovered(pool, fake_freeswitch)


def test_a_reply_cut_in_the_middle(pool, fake_freeswitch, gate):
    fake_freeswitch.drop_mid_reply("api echo 1", times=1)
    callers = queue(pool, fake_freeswitch, ["gate", "echo 1", "echo 2", "echo 3"])
    gate.set()
    assert outcome(callers[0], 5.0) == "+OK gate"
    assert [outcome(c, 5.0) for c in callers[1:]] == [ConnectionLost] * 3
    recovered(pool, fake_freeswitch)


@pytest.mark.parametrize("queued", [1, 2, 4])
def test_the_connection_closed_with_commands_queued(pool, fake_freeswitch, gate, queued):
    commands = ["gate", "echo 1", "echo 2", "echo 3"][:queued]
    callers = queue(pool, fake_freeswitch, commands)
    fake_freeswitch.kill_connections()
    assert [outcome(c, 5.0) for c in callers] == [ConnectionLost] * queued
    gate.set()
    recovered(pool, fake_freeswitch)


def test_a_timeout_of_the_second_of_four(pool, fake_freeswitch, gate):
    """The second has the shortest timeout: it gets ReplyTimeout, the first, third and fourth
    ConnectionLost, all at once, well before their own timeouts. The first's reply, which
    FreeSWITCH writes later, is never matched to anything (its connection is closed)."""
    callers = queue(pool, fake_freeswitch, ["gate", "echo 1", "echo 2", "echo 3"],
                    [5.0, 0.2, 5.0, 5.0])
    assert outcome(callers[1], 0.2) is ReplyTimeout
    assert [outcome(callers[i], 0.2) for i in (0, 2, 3)] == [ConnectionLost] * 3
    gate.set()
    recovered(pool, fake_freeswitch)
    assert pool.api("echo once more") == "once more"


def test_each_caller_gets_its_own_error_and_job(pool, fake_freeswitch, gate):
    """Two bgapi queued behind the gate both fail when the connection dies: each gets its own
    ConnectionLost carrying its own job (QuickCall follows that job to cancel the call)."""
    callers = queue(pool, fake_freeswitch, ["gate"])
    jobs = [gevent.spawn(pool.bgapi, "status", timeout=5.0) for _ in range(2)]
    (conn,) = connections(pool)
    assert fake_freeswitch.wait_for(lambda: conn.in_flight == 3)
    fake_freeswitch.kill_connections()
    errors = []
    for job in jobs:
        with pytest.raises(ConnectionLost) as info:
            job.get(timeout=5.0 + SLACK)
        errors.append(info.value)
    assert errors[0] is not errors[1]
    assert errors[0].job is not None and errors[1].job is not None
    assert errors[0].job.job_id != errors[1].job.job_id
    assert outcome(callers[0], 5.0) is ConnectionLost


@pytest.mark.parametrize("killed", range(DEPTH))
def test_a_caller_killed_in_any_position(pool, fake_freeswitch, gate, killed,
                                         greenlet_leak_check):
    """The killed caller's reply is read and dropped in its place; every other caller gets
    its own reply, on the same connection."""
    commands = ["gate", "echo 1", "echo 2", "echo 3"]
    callers = queue(pool, fake_freeswitch, commands)
    callers[killed].kill()
    gate.set()
    expected = ["+OK gate", "1", "2", "3"]
    for position, caller in enumerate(callers):
        if position != killed:
            assert outcome(caller, 5.0) == expected[position]
    (conn,) = connections(pool)
    assert fake_freeswitch.wait_for(lambda: conn.in_flight == 0)
    assert conn.alive and conn.abandoned == 0
    assert pool.api("echo after") == "after"
    assert pool.health()[fake_freeswitch.name]["reconnects"] == 0


def test_the_place_of_a_dropped_reply_goes_to_a_waiting_caller(
        fake_freeswitch, esl_pool_factory, gate):
    """A killed caller's command still holds its place until its reply is read and dropped;
    then the place goes to the caller waiting for one (nobody gives it back otherwise)."""
    pool = settled(esl_pool_factory([fake_freeswitch], pool_size=1, max_overflow=0,
                                    pipeline_depth=1, command_timeout=5.0), fake_freeswitch)
    held = queue(pool, fake_freeswitch, ["gate"])[0]
    waiting = gevent.spawn(pool.api, "echo 2")
    gevent.sleep(0.01)
    assert len(pool._single.waiting) == 1
    held.kill()
    assert len(pool._single.waiting) == 1  # its command is still in flight
    gate.set()
    assert outcome(waiting, 5.0) == "2"


def test_stop_with_commands_queued(pool, fake_freeswitch, gate, greenlet_leak_check):
    callers = queue(pool, fake_freeswitch, ["gate", "echo 1", "echo 2", "echo 3"])
    pool.stop()
    assert [outcome(c, 5.0) for c in callers] == [ConnectionLost] * 4
    gate.set()
    assert fake_freeswitch.wait_for(lambda: not fake_freeswitch.command_connections())


# ---------------------------------------------------------------------- which connection


def test_callers_get_the_connection_with_the_fewest_in_flight(
        fake_freeswitch, esl_pool_factory, gate):
    pool = settled(esl_pool_factory([fake_freeswitch], pool_size=2, max_overflow=0,
                                    pipeline_depth=DEPTH, stall_after=60.0), fake_freeswitch)
    first, second = connections(pool)
    callers = [gevent.spawn(pool.api, "gate") for _ in range(3)]
    assert fake_freeswitch.wait_for(lambda: first.in_flight + second.in_flight == 3)
    assert sorted([first.in_flight, second.in_flight]) == [1, 2]
    callers.append(gevent.spawn(pool.api, "gate"))
    assert fake_freeswitch.wait_for(lambda: (first.in_flight, second.in_flight) == (2, 2))
    gate.set()
    assert [outcome(c, 5.0) for c in callers] == ["+OK gate"] * 4


def test_a_stalled_connection_takes_no_new_command(fake_freeswitch, esl_pool_factory, gate):
    """A command in flight longer than stall_after keeps new commands off its connection: they
    go to the other one, and are answered while the slow one still holds its own."""
    pool = settled(esl_pool_factory([fake_freeswitch], pool_size=2, max_overflow=0,
                                    pipeline_depth=DEPTH, stall_after=0.05), fake_freeswitch)
    slow = gevent.spawn(pool.api, "gate")
    assert fake_freeswitch.wait_for("api gate")
    gevent.sleep(0.2)  # past stall_after
    fast = [gevent.spawn(pool.api, f"echo {i}") for i in range(6)]
    assert [outcome(c, 5.0) for c in fast] == [str(i) for i in range(6)]
    assert not slow.ready()
    held = next(c for c in fake_freeswitch.command_connections() if "api gate" in c.commands)
    assert not [c for c in held.commands if c.startswith("api echo")]
    gate.set()
    assert outcome(slow, 5.0) == "+OK gate"


def test_nothing_is_queued_behind_a_command_known_to_be_slow(fake_freeswitch, esl_pool_factory,
                                                            gate):
    """Once an api command has been seen to take FreeSWITCH longer than stall_after, the next
    one keeps its connection to itself from the moment it is written, not only once it has
    been in flight that long."""
    pool = settled(esl_pool_factory([fake_freeswitch], pool_size=2, max_overflow=0,
                                    pipeline_depth=DEPTH, stall_after=0.02), fake_freeswitch)
    fake_freeswitch.api_handlers["crawl"] = lambda fake, args: (gevent.sleep(0.1), "+OK")[1]
    assert pool.api("crawl") == "+OK"  # learnt: about 0.1 s
    slow = gevent.spawn(pool.api, "crawl")
    gevent.sleep(0)  # written
    fast = [gevent.spawn(pool.api, f"echo {i}") for i in range(6)]
    assert [outcome(c, 5.0) for c in fast] == [str(i) for i in range(6)]
    assert outcome(slow, 5.0) == "+OK"
    (served,) = [c for c in fake_freeswitch.command_connections()
                 if c.commands[-1] == "api crawl"]
    assert not [c for c in served.commands if c.startswith("api echo")], served.commands


def test_a_slow_full_registration_table_does_not_mark_one_users_lookup_slow(fake_freeswitch, esl_pool_factory):
    """Every `sofia` command shares one word: a registration table that takes FreeSWITCH long
    to print must not take the per-user lookups out of the pipeline with it."""
    pool = settled(esl_pool_factory([fake_freeswitch], pool_size=1, max_overflow=0,
                                    pipeline_depth=DEPTH, stall_after=0.02), fake_freeswitch)
    real = fake_freeswitch.api_handlers["sofia"]

    def sofia(fake, args):
        if args.split()[-1] == "reg":  # the whole profile's table
            gevent.sleep(0.1)
        return real(fake, args)

    fake_freeswitch.api_handlers["sofia"] = sofia
    whole, one = commands.xmlstatus_profile("internal"), commands.xmlstatus_user("internal", "1001", "acme.test")
    pool.api(whole)
    pool.api(one)
    state = pool._single
    assert state.expects_slow(service_key(whole))
    assert not state.expects_slow(service_key(one))
    assert service_key(commands.xmlstatus_user("external", "2002", "b.test")) == service_key(one)
    assert service_key(commands.flush_inbound_reg("internal", "1001", "acme.test")) != service_key(whole)


def test_overflow_only_when_every_connection_is_full(fake_freeswitch, esl_pool_factory, gate,
                                                     greenlet_leak_check):
    pool = settled(esl_pool_factory([fake_freeswitch], pool_size=1, max_overflow=1,
                                    pipeline_depth=2, stall_after=60.0, overflow_idle=0.1),
                   fake_freeswitch)
    greenlet_leak_check.mark_steady()
    name = fake_freeswitch.name
    accepted = fake_freeswitch.accepted
    held = [gevent.spawn(pool.api, "gate") for _ in range(2)]
    (conn,) = connections(pool)
    assert fake_freeswitch.wait_for(lambda: conn.in_flight == 2)
    assert fake_freeswitch.accepted == accepted  # room on the connection: no overflow yet
    assert pool.health()[name]["overflow"] == 0
    assert pool.api("echo overflow") == "overflow"  # full: an overflow connection serves it
    assert fake_freeswitch.accepted == accepted + 1
    gate.set()
    assert [outcome(c, 5.0) for c in held] == ["+OK gate"] * 2
    assert fake_freeswitch.wait_for(lambda: pool.health()[name]["overflow"] == 0, timeout=3.0)
    greenlet_leak_check.assert_steady()
