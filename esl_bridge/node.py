"""One FreeSWITCH node: its address (``Node``) and its set of command connections (``NodeState``).

``NodeState`` is what the pool knows about a node and how a caller gets one of its connections:

- Idle connections form a stack (last in, first out): the warmest serves next, and connections
  beyond what the load needs stay idle, so overflow ones can be seen idle and closed.
- Callers waiting for a connection are served in turn: a returned connection goes to the oldest
  of them, never to a newcomer. Each waits on a ``_Turn`` (a bare gevent ``Waiter``).
- One timer per node bounds every wait (``_WaitExpired``, which becomes ``CommandTimeout``) and
  asks for overflow connections once ``overflow_after`` has passed; it is re-armed lazily.
- A node with no live connection fails callers at once (``NotConnected``); so do callers already
  waiting when its last connection dies (``fail_waiters``).

Opening an overflow connection is the pool's job (its slots own every connection): the node
only counts the ones it asked for (``opening``) and calls ``open_overflow``.
"""
from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event
from gevent.hub import Waiter

from .connection import EslConnection
from .errors import CommandTimeout, NotConnected
from .metrics import NodeCounters

_NEVER = float("inf")


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


class _WaitExpired(Exception):
    """A caller's wait for a connection ran out (internal; becomes CommandTimeout)."""


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


class NodeState:
    """What the pool knows about one node, and its connections lent out in turn.

    Mutated only from greenlets of the pool's hub. ``max_overflow``, ``overflow_after`` and
    ``stopping`` are the pool's; ``open_overflow(state)`` starts one overflow connection, which
    the pool hands back with ``release`` (and counts down ``opening`` once it is open or failed).
    """

    def __init__(self, node: Node, *, max_overflow: int, overflow_after: float,
                 stopping: gevent.event.Event,
                 open_overflow: Callable[[NodeState], None]) -> None:
        self.node = node
        self.name = node.name
        self.max_overflow = max_overflow
        self.overflow_after = overflow_after
        self.stopping = stopping
        self._open_overflow = open_overflow
        # Idle connections, last in first out (see the module docstring).
        self.idle: list[EslConnection] = []
        # Callers waiting for a connection, first come first served: a returned connection is
        # handed to the oldest of them, never left for a newcomer to take first.
        self.waiting: collections.deque[_Turn] = collections.deque()
        # One timer for all the waits of this node, armed for the earliest moment a waiter
        # needs (its deadline, or when it asks for an overflow connection), re-armed lazily.
        self.wait_timer: Any = None
        self.wait_timer_at = _NEVER
        self._hub = gevent.get_hub()
        self._loop = self._hub.loop
        self._run_callback = self._loop.run_callback
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

    def health(self, pool_size: int) -> dict[str, Any]:
        """This node's part of ``EslPool.health()``."""
        event_conn = self.event_conn
        return {
            "connected": self.up(),
            "connections": self.alive(),
            "overflow": sum(1 for conn in self.overflow if conn.alive),
            "event_connection": event_conn is not None and event_conn.alive,
            "last_error": self.last_error,
            "reconnects": self.counters.reconnects,
            "connect_failures": self.counters.connect_failures,
            "pool_size": pool_size,
            "idle": sum(1 for conn in self.idle if conn.alive and not conn.retiring),
        }

    # ------------------------------------------------------------------ lending

    def acquire(self, timeout: float) -> EslConnection:
        """An idle live connection, waiting at most ``timeout``, in turn.

        A newcomer takes an idle connection only when nobody is waiting; otherwise it queues,
        and returned connections go to waiters first come, first served. An overflow
        connection is opened in the background (if allowed) when a caller finds every
        connection busy, or once it has waited ``overflow_after`` seconds if that is set;
        whichever connection comes first is taken.
        """
        if not self.live or self.stopping.is_set():
            raise NotConnected("no live connection to FreeSWITCH", self.name)
        if not self.waiting:
            idle = self.idle
            while idle:
                conn = idle.pop()
                if conn.alive and not conn.retiring:
                    conn.in_use = True
                    return conn
                # died (or is retiring) while idle; its slot replaces it if it is a slot's
        overflow_at = _NEVER
        if self._may_overflow():
            if self.overflow_after <= 0:
                self._ask_overflow()
            else:
                overflow_at = time.monotonic() + self.overflow_after
        return self._wait_in_turn(timeout, overflow_at)

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

    def stop_waiting(self, reason: str) -> None:
        """Fail every waiting caller with ``reason`` and disarm the wait timer (pool stop)."""
        self.fail_waiters(reason)
        if self.wait_timer is not None:
            self.wait_timer.close()
            self.wait_timer, self.wait_timer_at = None, _NEVER

    # ------------------------------------------------------------------ waiting in turn

    def _wait_in_turn(self, timeout: float, overflow_at: float) -> EslConnection:
        deadline = time.monotonic() + timeout
        turn = _Turn(self._hub, deadline, overflow_at)
        self.waiting.append(turn)
        while True:
            if self.wait_timer_at > deadline or overflow_at < deadline:
                self._arm_wait_timer(min(deadline, overflow_at))
            try:
                conn = turn.get()
            except BaseException as exc:
                handed = turn.conn
                if handed is not None:
                    # Handed a connection just as we gave up (the switch to us still pending):
                    # pass it on rather than lose it.
                    handed.in_use = False
                    self.release(handed)
                elif not turn.done:
                    turn.done = True
                    try:
                        self.waiting.remove(turn)
                    except ValueError:
                        pass
                if isinstance(exc, _WaitExpired):
                    raise self._busy(timeout) from None
                raise
            if conn.alive and not conn.retiring:
                return conn
            # It died between the hand-off and now: wait for another, first in line.
            conn.in_use = False
            turn = _Turn(self._hub, deadline, _NEVER)
            overflow_at = _NEVER
            self.waiting.appendleft(turn)

    def _arm_wait_timer(self, at: float) -> None:
        """Make sure the wait timer fires no later than ``at`` (monotonic seconds)."""
        if self.wait_timer_at <= at:
            return  # armed for earlier; when it fires it re-arms for what is left
        if self.wait_timer is not None:
            self.wait_timer.close()
        # ref=False: an armed timer with nobody waiting must not keep a program running.
        timer = self._loop.timer(max(at - time.monotonic(), 0.0), ref=False)
        timer.start(self._wait_timer_fired, update=True)
        self.wait_timer, self.wait_timer_at = timer, at

    def _wait_timer_fired(self) -> None:
        # Runs in the hub: expire waits past their deadline, ask for overflow connections for
        # waits past overflow_after, and re-arm for the earliest moment still ahead.
        if self.wait_timer is not None:
            self.wait_timer.close()
        self.wait_timer, self.wait_timer_at = None, _NEVER
        now = time.monotonic()
        earliest = _NEVER
        for turn in list(self.waiting):
            if turn.done:
                continue
            if turn.deadline <= now:
                turn.done = True
                self.waiting.remove(turn)
                self._run_callback(turn.throw, _WaitExpired())
                continue
            if turn.overflow_at <= now:
                turn.overflow_at = _NEVER  # asks once, keeps its turn
                if self._may_overflow():
                    self._ask_overflow()
            earliest = min(earliest, turn.deadline, turn.overflow_at)
        if earliest < _NEVER and not self.stopping.is_set():
            self._arm_wait_timer(earliest)

    def _busy(self, timeout: float) -> CommandTimeout:
        return CommandTimeout(f"all {self.alive()} connections stayed busy for {timeout:g} s",
                              self.name)

    # ------------------------------------------------------------------ overflow

    def _may_overflow(self) -> bool:
        return (len(self.overflow) + self.opening < self.max_overflow
                and not self.stopping.is_set())

    def _ask_overflow(self) -> None:
        self.opening += 1
        self._open_overflow(self)


__all__ = ["Node", "NodeState"]
