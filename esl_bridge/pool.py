"""The pool: per FreeSWITCH node, N command connections and one event connection.

- Command connections never subscribe to events; each carries one command at a time. A caller
  takes an idle connection (waiting for one counts towards its timeout), uses it, and gives it
  back unless it died. Waiting callers are served in turn: a returned connection goes to the
  oldest of them, never to a newcomer. A node with no live connection fails callers at once
  (``NotConnected``); so do callers already waiting when its last connection dies.
- The event connection subscribes to ``commands.EVENT_SUBSCRIPTION``; it resolves ``bgapi`` jobs
  (``jobs.JobRegistry``) and keeps the registration cache current. When it drops, jobs of that
  node are released with ``ConnectionLost`` (their result can no longer be seen).
- Every connection is owned by a slot greenlet that connects, waits for the connection to die,
  and reconnects with capped exponential backoff and jitter, until ``stop()``.
- A housekeeping greenlet expires forgotten jobs and refreshes the registration cache.

Usage::

    pool = EslPool([Node.parse("127.0.0.1:8021:ClueCon")], pool_size=4, command_timeout=5.0)
    pool.start()                 # returns at once; connects in the background, keeps retrying
    body = pool.api("status")    # raises NotConnected while no node is up
    pool.stop()
"""
from __future__ import annotations

import collections
import itertools
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import gevent
import gevent.event
from gevent.hub import Waiter

from . import commands
from .connection import CommandConnection, EslConnection
from .errors import (
    CommandError,
    CommandTimeout,
    EslError,
    FreeSwitchTimeout,
    FreeSwitchUnavailable,
    NotConnected,
)
from .frames import Event, Frame
from .jobs import Job, JobRegistry
from .metrics import KINDS, NodeCounters, kind_of
from .registrations import RegistrationCache, parse_xmlstatus

log = logging.getLogger(__name__)


class _WaitExpired(Exception):
    """A caller's wait for a connection ran out (internal; becomes CommandTimeout)."""


_NEVER = float("inf")


class _Turn(Waiter):
    """One caller's place in a node's queue for a connection.

    The caller parks in ``get()``; it is woken exactly once, from the hub: with a connection
    (``release``), ``_WaitExpired`` (the node's wait timer) or ``NotConnected``
    (``fail_waiters``). ``done`` is set by whichever comes first, so the others skip it.
    A ``gevent.hub.Waiter`` rather than an ``AsyncResult``: half the cost per hand-off, and
    every command takes this path when callers outnumber connections.
    """

    __slots__ = ("deadline", "overflow_at", "conn", "done")

    def __init__(self, hub: Any, deadline: float, overflow_at: float) -> None:
        Waiter.__init__(self, hub)
        self.deadline = deadline
        self.overflow_at = overflow_at  # when to ask for an overflow connection (_NEVER: no)
        self.conn: EslConnection | None = None
        self.done = False


T = TypeVar("T")


@dataclass(frozen=True)
class Node:
    """One FreeSWITCH event socket: ``host:port:password``. ``name`` is ``host:port``."""

    host: str
    port: int
    password: str = field(repr=False)

    @property
    def name(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def parse(cls, spec: str) -> Node:
        """Parse ``host:port:password`` (IPv6 hosts in brackets: ``[::1]:8021:ClueCon``).

        The password is everything after the second colon, so it may itself contain colons; it
        may not contain whitespace (it goes on the ``auth`` line).
        """
        text = spec.strip()
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]:")
            if not sep:
                raise ValueError(f"bad FreeSWITCH node {spec!r}: expected [host]:port:password")
        else:
            host, sep, rest = text.partition(":")
            if not sep:
                raise ValueError(f"bad FreeSWITCH node {spec!r}: expected host:port:password")
        port_text, sep, password = rest.partition(":")
        if not host or not sep or not password:
            raise ValueError(f"bad FreeSWITCH node {spec!r}: expected host:port:password")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"bad FreeSWITCH node {spec!r}: port must be 1..65535")
        if any(c.isspace() for c in password) or not password.isprintable():
            raise ValueError(f"bad FreeSWITCH node {spec!r}: the password may not contain spaces")
        return cls(host, int(port_text), password)

    @classmethod
    def parse_many(cls, specs: str) -> list[Node]:
        """Parse a comma-separated list of nodes (``ESL_BRIDGE_FREESWITCH``)."""
        nodes = [cls.parse(part) for part in specs.split(",") if part.strip()]
        if not nodes:
            raise ValueError("no FreeSWITCH node given")
        names = [node.name for node in nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"a FreeSWITCH node is listed twice: {specs!r}")
        return nodes

    def __str__(self) -> str:
        return self.name


class _NodeState:
    """What the pool knows about one node (mutated only from greenlets of the pool's hub)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.name = node.name
        # Idle connections, last in first out: the warmest serves next, and connections beyond
        # what the load needs stay idle, so overflow ones can be seen idle and closed.
        self.idle: list[EslConnection] = []
        # Callers waiting for a connection, first come first served: a returned connection is
        # handed to the oldest of them, never left for a newcomer to take first.
        self.waiting: collections.deque[_Turn] = collections.deque()
        # One timer for all the waits of this node, armed for the earliest moment a waiter
        # needs (its deadline, or when it asks for an overflow connection), re-armed lazily.
        self.wait_timer: Any = None
        self.wait_timer_at = _NEVER
        self._run_callback = gevent.get_hub().loop.run_callback
        self.live: set[EslConnection] = set()
        self.overflow: set[EslConnection] = set()
        self.opening = 0  # overflow connections being opened
        self.event_conn: EslConnection | None = None
        self.last_error: str | None = None
        self.counters = NodeCounters()

    @property
    def reconnects(self) -> int:
        return self.counters.reconnects

    def alive(self) -> int:
        """Live command connections (a closed one may linger in ``live`` for a moment, until
        its slot notices)."""
        return sum(1 for conn in self.live if conn.alive)

    def up(self) -> bool:
        """At least one live command connection (stops at the first)."""
        return any(conn.alive for conn in self.live)

    def release(self, conn: EslConnection) -> None:
        """Give a connection back: to the oldest waiter if any, else to the idle stack."""
        if not conn.alive or conn.retiring:
            return
        waiting = self.waiting
        while waiting:
            turn = waiting.popleft()
            if not turn.done:
                turn.done = True
                turn.conn = conn
                conn.in_use = True  # reserved for that waiter until it wakes
                self._run_callback(turn.switch, conn)
                return
        self.idle.append(conn)

    def fail_waiters(self, reason: str) -> None:
        """Release every waiting caller with ``NotConnected`` (no live connection is left)."""
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done:
                turn.done = True
                self._run_callback(turn.throw, NotConnected(reason, self.name))


class EslPool:
    """Connections to one or more FreeSWITCH nodes, with reconnect, health and metrics.

    Parameters:
        nodes: ``Node`` objects or ``host:port:password`` strings.
        pool_size: command connections per node (SPEC default 4).
        command_timeout: default bound of every command, seconds (SPEC default 5).
        connect_timeout: bound of TCP connect + auth (default: ``command_timeout``).
        sofia_profiles: profiles asked for registrations (plus any profile seen in events).
        reconnect_base, reconnect_max: backoff after failed connects: ``base * 2**(n-1)`` capped
            at ``max``, times a random factor in [0.5, 1] (jitter).
        registration_refresh: seconds between full refreshes of the registration cache.
        job_ttl: seconds after which a job that never reported is dropped (``JobTimeout``).
        max_overflow: extra command connections a node may open (default ``pool_size``) when
            a caller finds every connection busy, or has waited ``overflow_after`` seconds if
            that is set (default 0: at once, as SQLAlchemy's ``QueuePool`` does); each is closed
            again after ``overflow_idle`` seconds unused. Slow commands (``msleep``, a big
            ``xmlstatus``) hold their connection, so this keeps the others moving. Overflow
            connections are not reconnected: under load new ones are opened. 0 disables.
    """

    def __init__(
        self,
        nodes: Iterable[Node | str],
        pool_size: int = 4,
        command_timeout: float = 5.0,
        *,
        connect_timeout: float | None = None,
        sofia_profiles: Sequence[str] = ("internal",),
        reconnect_base: float = 0.25,
        reconnect_max: float = 30.0,
        registration_refresh: float = 300.0,
        job_ttl: float = 900.0,
        max_overflow: int | None = None,
        overflow_after: float = 0.0,
        overflow_idle: float = 30.0,
    ) -> None:
        parsed = [n if isinstance(n, Node) else Node.parse(n) for n in nodes]
        if not parsed:
            raise ValueError("EslPool needs at least one node")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if command_timeout <= 0:
            raise ValueError("command_timeout must be positive")
        for profile in sofia_profiles:
            commands.safe(profile, "profile", "sofia_profiles")
        self.nodes: list[Node] = parsed
        self.pool_size = pool_size
        self.command_timeout = float(command_timeout)
        self.connect_timeout = float(connect_timeout or command_timeout)
        self.sofia_profiles = tuple(sofia_profiles)
        self.reconnect_base = reconnect_base
        self.reconnect_max = reconnect_max
        self.registration_refresh = registration_refresh
        self.job_ttl = job_ttl
        self.max_overflow = pool_size if max_overflow is None else max(0, max_overflow)
        self.overflow_after = overflow_after
        self.overflow_idle = overflow_idle
        self.jobs = JobRegistry()
        self.registrations = RegistrationCache()
        self._states = {node.name: _NodeState(node) for node in parsed}
        if len(self._states) != len(parsed):
            raise ValueError("a FreeSWITCH node is listed twice")
        self._single = next(iter(self._states.values())) if len(parsed) == 1 else None
        self._listeners: list[Callable[[str, Event], None]] = []
        self._greenlets: list[gevent.Greenlet] = []
        self._helpers: set[gevent.Greenlet] = set()
        self._stopping = gevent.event.Event()
        self._started = False
        self._round_robin = itertools.count()
        self._hub = gevent.get_hub()
        self._loop = self._hub.loop

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> EslPool:
        """Start connecting every node in the background; returns at once."""
        if self._started:
            return self
        self._started = True
        self._stopping.clear()
        for state in self._states.values():
            for index in range(self.pool_size):
                self._greenlets.append(gevent.spawn(self._command_slot, state, index))
            self._greenlets.append(gevent.spawn(self._event_slot, state))
        self._greenlets.append(gevent.spawn(self._housekeeping))
        log.info("ESL pool started: %s, %d command connections per node",
                 ", ".join(self._states), self.pool_size)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection and join every greenlet of the pool (bounded by ``timeout``)."""
        if not self._started:
            return
        self._stopping.set()
        for state in self._states.values():
            state.fail_waiters("the ESL pool is stopping")
            if state.wait_timer is not None:
                state.wait_timer.close()
                state.wait_timer, state.wait_timer_at = None, _NEVER
        gevent.joinall(self._greenlets + list(self._helpers), timeout=timeout)
        leftover = [g for g in self._greenlets + list(self._helpers) if not g.dead]
        if leftover:
            log.warning("ESL pool: %d greenlets did not stop in time; killing them", len(leftover))
            gevent.killall(leftover, timeout=timeout)
        self._greenlets.clear()
        self._helpers.clear()
        self.jobs.fail_all("the ESL pool stopped")
        self._started = False
        log.info("ESL pool stopped")

    def __enter__(self) -> EslPool:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait_connected(self, timeout: float, *, nodes: Iterable[str] | None = None,
                       full: bool = True) -> bool:
        """Wait until the nodes (default all) are up; True if they are within ``timeout``.

        ``full`` waits for every command connection and the event connection; otherwise one
        command connection is enough.
        """
        names = list(nodes) if nodes is not None else list(self._states)
        deadline = time.monotonic() + timeout
        while True:
            ready = True
            for name in names:
                state = self._states[name]
                if full:
                    ready &= (state.alive() >= self.pool_size and state.event_conn is not None
                              and state.event_conn.alive)
                else:
                    ready &= state.up()
            if ready:
                return True
            if time.monotonic() >= deadline:
                return False
            gevent.sleep(0.005)

    # ------------------------------------------------------------------ slots

    def _backoff(self, failures: int) -> float:
        delay = min(self.reconnect_max, self.reconnect_base * (2 ** max(failures - 1, 0)))
        return delay * random.uniform(0.5, 1.0)

    def _new_connection(self, state: _NodeState, event: bool) -> EslConnection:
        def malformed(note: str) -> None:
            state.counters.malformed += 1

        node = state.node
        # Command connections never subscribe, so their callers read their own replies
        # (CommandConnection); the event connection keeps greenswitch's reader greenlet.
        kind = EslConnection if event else CommandConnection
        return kind(node.host, node.port, node.password, node=state.name,
                    connect_timeout=self.connect_timeout,
                    command_timeout=self.command_timeout, on_malformed=malformed)

    def _connect(self, state: _NodeState, failures: int, event: bool) -> EslConnection | None:
        """One connect attempt; ``None`` (after logging and counting) when it failed."""
        conn = self._new_connection(state, event)
        if event:
            conn.register_handle("*", lambda ev: self._on_event(state, ev))
        try:
            conn.connect()
            if event:
                reply = conn.execute(commands.EVENT_SUBSCRIPTION)
                if not reply.reply_text.startswith("+OK"):
                    raise CommandError(f"event subscription refused: {reply.reply_text}",
                                       state.name, reply.reply_text)
        except EslError as exc:
            conn.close(exc if isinstance(exc, FreeSwitchUnavailable) else None)
            state.counters.connect_failures += 1
            state.last_error = str(exc)
            level = logging.WARNING if failures == 0 else logging.DEBUG
            log.log(level, "ESL %s: %s connection failed: %s", state.name,
                    "event" if event else "command", exc)
            return None
        return conn

    def _slot_loop(self, state: _NodeState, event: bool) -> None:
        failures = 0
        connected_before = False
        while not self._stopping.is_set():
            conn = self._connect(state, failures, event)
            if conn is None:
                failures += 1
                if self._stopping.wait(self._backoff(failures)):
                    break
                continue
            if self._stopping.is_set():
                conn.stop(timeout=min(self.command_timeout, 1.0))
                break
            if connected_before:
                state.counters.reconnects += 1
                log.info("ESL %s: %s connection re-established", state.name,
                         "event" if event else "command")
            connected_before = True
            failures = 0
            if event:
                state.event_conn = conn
                self._spawn_helper(self._refresh_node, state)
            else:
                state.live.add(conn)
                state.release(conn)
            gevent.wait([conn.closed, self._stopping], count=1)
            if event:
                state.event_conn = None
            else:
                state.live.discard(conn)
                if not state.live:
                    state.fail_waiters("no live connection to FreeSWITCH")
            if self._stopping.is_set():
                conn.stop(timeout=min(self.command_timeout, 1.0))
                if event:
                    self.jobs.fail_node(state.name, "the ESL pool stopped")
                break
            reason = str(conn.close_reason) if conn.close_reason else "connection lost"
            state.last_error = reason
            log.warning("ESL %s: %s connection lost: %s", state.name,
                        "event" if event else "command", reason)
            if event:
                lost = self.jobs.fail_node(state.name, reason)
                if lost:
                    log.warning("ESL %s: %d jobs released: their results can no longer arrive",
                                state.name, lost)
            # Replace it at once but with jitter, so that the slots of a restarted FreeSWITCH do
            # not all knock in the same millisecond; failures then back off.
            if self._stopping.wait(self._backoff(1) * 0.2):
                break

    def _command_slot(self, state: _NodeState, index: int) -> None:
        self._slot_loop(state, event=False)

    def _event_slot(self, state: _NodeState) -> None:
        self._slot_loop(state, event=True)

    def _spawn_helper(self, fn: Callable[..., Any], *args: Any) -> None:
        helper = gevent.spawn(fn, *args)
        self._helpers.add(helper)
        helper.link(self._helpers.discard)

    # ------------------------------------------------------------------ events

    def _on_event(self, state: _NodeState, event: Event) -> None:
        state.counters.events += 1
        name = event.name
        if name == "BACKGROUND_JOB":
            self.jobs.resolve(state.name, event)
        elif name == "CUSTOM" and event.subclass.startswith("sofia::"):
            self.registrations.apply_event(state.name, event)
        for listener in list(self._listeners):
            try:
                listener(state.name, event)
            except Exception:
                log.exception("ESL %s: event listener %r failed", state.name, listener)

    def add_event_listener(self, listener: Callable[[str, Event], None]) -> None:
        """Call ``listener(node_name, event)`` for every event (in the reader: must not block)."""
        self._listeners.append(listener)

    def remove_event_listener(self, listener: Callable[[str, Event], None]) -> None:
        self._listeners.remove(listener)

    # ------------------------------------------------------------------ housekeeping

    def _housekeeping(self) -> None:
        next_refresh = time.monotonic() + self.registration_refresh
        tick = max(0.05, min(1.0, self.registration_refresh, self.job_ttl / 4))
        while not self._stopping.wait(tick):
            try:
                expired = self.jobs.expire(self.job_ttl)
                if expired:
                    log.warning("ESL pool: %d jobs expired without a result", expired)
                if time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + self.registration_refresh
                    for state in self._states.values():
                        if state.up() and state.event_conn is not None:
                            self._spawn_helper(self._refresh_node, state)
            except Exception:
                log.exception("ESL pool: housekeeping failed")

    def profiles_for(self, node: str) -> list[str]:
        """Sofia profiles to ask on ``node``: the configured ones, then any seen in events."""
        seen = sorted(self.registrations.profiles(node) - set(self.sofia_profiles))
        return list(self.sofia_profiles) + seen

    def _refresh_node(self, state: _NodeState) -> None:
        """Full refresh of the registration cache for one node, profile by profile."""
        # The event connection may come up before the command connections do.
        deadline = time.monotonic() + self.connect_timeout
        while not state.up() and time.monotonic() < deadline:
            if self._stopping.wait(0.005):
                return
        for profile in self.profiles_for(state.name):
            if self._stopping.is_set():
                return
            started = time.monotonic()
            try:
                text = self.api(commands.xmlstatus_profile(profile), node=state.name)
                found = parse_xmlstatus(text, state.name, profile)
            except CommandError as exc:
                log.debug("ESL %s: profile %s not refreshed: %s", state.name, profile, exc)
                continue
            except EslError as exc:
                log.info("ESL %s: registration refresh failed: %s", state.name, exc)
                return
            self.registrations.replace(state.name, profile, found, started)

    def refresh_registrations(self) -> None:
        """Refresh the registration cache of every connected node now (blocking)."""
        self.fan_out(lambda name: self._refresh_node(self._states[name]),
                     [n for n, s in self._states.items() if s.up()])

    # ------------------------------------------------------------------ commands

    def node_names(self) -> list[str]:
        """Every configured node, in configuration order."""
        return list(self._states)

    def connected_nodes(self) -> list[str]:
        """Nodes with at least one live command connection."""
        return [name for name, state in self._states.items() if state.up()]

    def pick_node(self) -> str:
        """A connected node (round robin); ``NotConnected`` if none is up."""
        up = self.connected_nodes()
        if not up:
            raise NotConnected(
                f"no FreeSWITCH node is connected (configured: {', '.join(self._states)})")
        return up[next(self._round_robin) % len(up)]

    def _state(self, node: str | None) -> _NodeState:
        if node is None and self._single is not None:
            return self._single  # one node: no choice to make (it fails in _acquire if down)
        name = node if node is not None else self.pick_node()
        state = self._states.get(name)
        if state is None:
            raise KeyError(f"unknown FreeSWITCH node {name!r}")
        return state

    def _acquire(self, state: _NodeState, timeout: float) -> EslConnection:
        """An idle live connection of ``state``, waiting at most ``timeout``, in turn.

        A newcomer takes an idle connection only when nobody is waiting; otherwise it queues,
        and returned connections go to waiters first come, first served. An overflow
        connection is opened in the background (if allowed) when a caller finds every
        connection busy, or once it has waited ``overflow_after`` seconds if that is set;
        whichever connection comes first is taken.
        """
        if not state.live or self._stopping.is_set():
            raise NotConnected("no live connection to FreeSWITCH", state.name)
        if not state.waiting:
            idle = state.idle
            while idle:
                conn = idle.pop()
                if conn.alive and not conn.retiring:
                    conn.in_use = True
                    return conn
                # died (or is retiring) while idle; its slot replaces it if it is a slot's
        overflow_at = _NEVER
        if self._may_overflow(state):
            if self.overflow_after <= 0:
                state.opening += 1
                self._spawn_helper(self._overflow_slot, state)
            else:
                overflow_at = time.monotonic() + self.overflow_after
        return self._wait_in_turn(state, timeout, overflow_at)

    def _wait_in_turn(self, state: _NodeState, timeout: float, overflow_at: float
                      ) -> EslConnection:
        deadline = time.monotonic() + timeout
        turn = _Turn(self._hub, deadline, overflow_at)
        state.waiting.append(turn)
        while True:
            if state.wait_timer_at > deadline or overflow_at < deadline:
                self._arm_wait_timer(state, min(deadline, overflow_at))
            try:
                conn = turn.get()
            except BaseException as exc:
                handed = turn.conn
                if handed is not None:
                    # Handed a connection just as we gave up (the switch to us still pending):
                    # pass it on rather than lose it.
                    handed.in_use = False
                    state.release(handed)
                elif not turn.done:
                    turn.done = True
                    try:
                        state.waiting.remove(turn)
                    except ValueError:
                        pass
                if isinstance(exc, _WaitExpired):
                    raise self._busy(state, timeout) from None
                raise
            if conn.alive and not conn.retiring:
                return conn
            # It died between the hand-off and now: wait for another, first in line.
            conn.in_use = False
            turn = _Turn(self._hub, deadline, _NEVER)
            overflow_at = _NEVER
            state.waiting.appendleft(turn)

    def _arm_wait_timer(self, state: _NodeState, at: float) -> None:
        """Make sure the node's wait timer fires no later than ``at`` (monotonic seconds)."""
        if state.wait_timer_at <= at:
            return  # armed for earlier; when it fires it re-arms for what is left
        if state.wait_timer is not None:
            state.wait_timer.close()
        # ref=False: an armed timer with nobody waiting must not keep a program running.
        timer = self._loop.timer(max(at - time.monotonic(), 0.0), ref=False)
        timer.start(self._wait_timer_fired, state, update=True)
        state.wait_timer, state.wait_timer_at = timer, at

    def _wait_timer_fired(self, state: _NodeState) -> None:
        # Runs in the hub: expire waits past their deadline, ask for overflow connections for
        # waits past overflow_after, and re-arm for the earliest moment still ahead.
        if state.wait_timer is not None:
            state.wait_timer.close()
        state.wait_timer, state.wait_timer_at = None, _NEVER
        now = time.monotonic()
        earliest = _NEVER
        for turn in list(state.waiting):
            if turn.done:
                continue
            if turn.deadline <= now:
                turn.done = True
                state.waiting.remove(turn)
                state._run_callback(turn.throw, _WaitExpired())
                continue
            if turn.overflow_at <= now:
                turn.overflow_at = _NEVER  # asks once, keeps its turn
                if self._may_overflow(state):
                    state.opening += 1
                    self._spawn_helper(self._overflow_slot, state)
            earliest = min(earliest, turn.deadline, turn.overflow_at)
        if earliest < _NEVER and not self._stopping.is_set():
            self._arm_wait_timer(state, earliest)

    def _busy(self, state: _NodeState, timeout: float) -> CommandTimeout:
        return CommandTimeout(f"all {state.alive()} connections stayed busy for {timeout:g} s",
                              state.name)

    def _may_overflow(self, state: _NodeState) -> bool:
        return (len(state.overflow) + state.opening < self.max_overflow
                and not self._stopping.is_set())

    def _overflow_slot(self, state: _NodeState) -> None:
        """Open one overflow connection, lend it out, close it once unused for a while."""
        try:
            conn = self._connect(state, 1, event=False)
        finally:
            state.opening -= 1
        if conn is None:
            return
        if self._stopping.is_set():
            conn.stop(timeout=min(self.command_timeout, 1.0))
            return
        conn.last_used = time.monotonic()
        state.overflow.add(conn)
        state.live.add(conn)
        state.release(conn)
        log.debug("ESL %s: overflow connection opened (%d)", state.name, len(state.overflow))
        try:
            while not self._stopping.is_set() and conn.alive:
                gevent.wait([conn.closed, self._stopping], count=1,
                            timeout=max(self.overflow_idle / 4, 0.01))
                if (conn.alive and not conn.in_use
                        and time.monotonic() - conn.last_used >= self.overflow_idle):
                    # No yield between this check and the flag: a caller cannot take it now.
                    conn.retiring = True
                    break
        finally:
            state.overflow.discard(conn)
            state.live.discard(conn)
            if not state.live:
                state.fail_waiters("no live connection to FreeSWITCH")
            conn.stop(timeout=min(self.command_timeout, 1.0))

    def execute(self, text: str, *, node: str | None = None, timeout: float | None = None,
                kind: str | None = None) -> tuple[str, Frame]:
        """Send one command frame on a command connection; returns ``(node, reply frame)``.

        ``node`` None picks a connected node. Raises ``NotConnected`` at once when the node has
        no live connection, ``CommandTimeout`` when no reply (or no idle connection) came within
        ``timeout`` (default ``command_timeout``), ``ConnectionLost`` when the connection died.
        ``kind`` is the metrics kind when the caller knows it (default: from the text).
        """
        state = self._state(node)
        if timeout is None:
            timeout = self.command_timeout
        if kind is None:
            kind = kind_of(text)
        started = time.monotonic()
        try:
            conn = self._acquire(state, timeout)
            try:
                frame = conn.execute(text, max(timeout - (time.monotonic() - started), 0.001))
            finally:
                conn.in_use = False
                conn.last_used = ended = time.monotonic()
                state.release(conn)
        except EslError as exc:
            counters = state.counters
            counters.failures[kind] += 1
            if isinstance(exc, FreeSwitchTimeout):
                counters.timeouts[kind] += 1
            if isinstance(exc, FreeSwitchUnavailable) and not isinstance(exc, NotConnected):
                # NotConnected is a consequence; its cause is already the slot's last error.
                state.last_error = str(exc)
            raise
        state.counters.observe(kind, ended - started)
        return state.name, frame

    def api(self, command: str, *, node: str | None = None, timeout: float | None = None) -> str:
        """``api <command>`` on ``node`` (or any connected node); returns the body as text.

        The body is returned as is, ``-ERR ...`` included: FreeSWITCH's api commands report
        failure in their text, each in its own way.
        """
        name, frame = self.execute(commands.api(command), node=node, timeout=timeout, kind="api")
        text = frame.text()
        for note in frame.notes:
            # e.g. a user agent that is not UTF-8 in an xmlstatus answer: keep the text (with
            # replacement characters), say so once.
            log.warning("ESL %s: %s", name, note)
            self._states[name].counters.malformed += 1
        return text

    def sendevent(self, text: str, *, node: str | None = None, timeout: float | None = None
                  ) -> str:
        """Send a ``sendevent`` frame; returns the reply (``+OK <event uuid>``).

        Raises ``CommandError`` when FreeSWITCH answers ``-ERR``.
        """
        name, frame = self.execute(text, node=node, timeout=timeout)
        reply = frame.reply_text
        if not reply.startswith("+OK"):
            raise CommandError(f"sendevent refused: {reply}", name, reply)
        return reply

    def bgapi(self, command: str, *, node: str | None = None, timeout: float | None = None,
              job_uuid: str | None = None) -> Job:
        """Start ``bgapi <command>`` with our own Job-UUID; returns the ``Job`` at once.

        The waiter is registered before the command is written, since ``BACKGROUND_JOB`` may
        arrive before the reply. Needs the node's event connection (else ``NotConnected``: the
        result could never be seen). ``CommandError`` if FreeSWITCH refuses the job.
        """
        state = self._state(node)
        if state.event_conn is None or not state.event_conn.alive:
            raise NotConnected("the event connection is down: a job's result could not be seen",
                               state.name)
        job_id = job_uuid or str(uuid.uuid4())
        text = commands.bgapi(command, job_id)
        job = self.jobs.register(job_id, state.name, command.split(" ", 1)[0])
        try:
            name, frame = self.execute(text, node=state.name, timeout=timeout)
        except BaseException:
            self.jobs.discard(job_id)
            raise
        reply = frame.reply_text
        if not reply.startswith("+OK"):
            self.jobs.discard(job_id)
            raise CommandError(f"bgapi refused: {reply}", name, reply)
        return job

    def fan_out(self, fn: Callable[[str], T], nodes: Iterable[str] | None = None
                ) -> dict[str, T | Exception]:
        """Run ``fn(node_name)`` for each node (default: all) concurrently.

        Returns ``{node: result or the EslError it raised}``; other exceptions propagate. Each
        call is bounded by the commands it makes, so this is bounded too.
        """
        names = list(nodes) if nodes is not None else list(self._states)

        def run(name: str) -> T | Exception:
            try:
                return fn(name)
            except EslError as exc:
                return exc

        if len(names) <= 1:
            return {name: run(name) for name in names}
        greenlets = {name: gevent.spawn(run, name) for name in names}
        gevent.joinall(list(greenlets.values()), raise_error=True)
        return {name: g.value for name, g in greenlets.items()}

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, dict[str, Any]]:
        """Per node: ``connected``, ``connections``, ``event_connection``, ``last_error``,
        ``reconnects`` (plus ``pool_size``, ``idle``, ``connect_failures``)."""
        report = {}
        for name, state in self._states.items():
            event_conn = state.event_conn
            report[name] = {
                "connected": state.up(),
                "connections": state.alive(),
                "overflow": sum(1 for conn in state.overflow if conn.alive),
                "event_connection": event_conn is not None and event_conn.alive,
                "last_error": state.last_error,
                "reconnects": state.counters.reconnects,
                "connect_failures": state.counters.connect_failures,
                "pool_size": self.pool_size,
                "idle": sum(1 for conn in state.idle if conn.alive and not conn.retiring),
            }
        return report

    def metrics(self) -> dict[str, Any]:
        """Counters and latencies (see ``esl_bridge.metrics`` for the layout)."""
        return {
            "nodes": {name: state.counters.snapshot() for name, state in self._states.items()},
            "jobs": {
                "pending": len(self.jobs),
                "completed": self.jobs.completed,
                "failed": self.jobs.failed,
                "lost": self.jobs.lost,
                "expired": self.jobs.expired,
            },
            "health": self.health(),
        }

    def __repr__(self) -> str:
        return f"<EslPool {', '.join(self._states)} size={self.pool_size}>"


__all__ = ["EslPool", "KINDS", "Node"]
