"""One FreeSWITCH node's state (``NodeState``), and how callers get its command connections.

``NodeState`` is what the pool knows about a node and how a caller gets one of its connections:

- A command connection carries up to ``pipeline_depth`` commands in flight. A caller gets the
  live connection with the fewest (``load``: commands handed out and not given back, plus those
  whose caller gave up while the reply was due), the pool's own connections before overflow
  ones. A connection whose oldest command has been in flight longer than ``stall_after`` (a
  slow ``api``) takes no new command until it drains, so one slow command delays at most the
  few already queued behind it. Better still, the node learns how long each api command takes
  FreeSWITCH (``learn``): a connection carrying one known to be slow (``msleep``, a big
  ``xmlstatus``) takes no new command from the moment it is written.
- When every connection is full or stalled, callers wait in turn: a freed place goes to the
  oldest of them, never to a newcomer. Each waits on a ``_Turn`` (a bare gevent ``Waiter``).
  Then, too, an overflow connection is asked for (or once ``overflow_after`` has passed).
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
from typing import Any

import gevent
import gevent.event
from gevent.hub import Waiter

from .address import Node
from .command_connection import CommandConnection
from .connection import EslConnection
from .errors import (
    CommandTimeout,
    EslError,
    FreeSwitchTimeout,
    FreeSwitchUnavailable,
    NotConnected,
)
from .metrics import NodeCounters

_NEVER = float("inf")
#: Commands in flight per command connection, and how long the oldest may be in flight before
#: the connection takes no new ones: chosen by measurement (docs/benchmarks.md, "ESL pool").
PIPELINE_DEPTH = 4
STALL_AFTER = 0.01
#: Weight of the newest service time in a verb's moving average, and how many verbs are kept.
SERVICE_WEIGHT = 0.25
MAX_VERBS = 256


def service_key(command: str) -> str:
    """The name under which a node learns how long ``api <command>`` takes: its first word, but
    for ``sofia``, which dispatches to work of every size, its words with the arguments named
    instead of given (``sofia xmlstatus profile <profile> user <user>@<realm>``): the full table
    of ``... reg`` is learnt apart from one realm's, one user's and ``flush_inbound_reg``, and
    the names stay few whatever the arguments."""
    words = command.split()
    if not words or words[0] != "sofia":
        return words[0] if words else ""
    named = []
    for before, word in zip(["", *words], words, strict=False):
        if before == "profile":
            word = "<profile>"
        elif "@" in word:
            word = "@<realm>" if word.startswith("@") else "<user>@<realm>"
        named.append(word)
    return " ".join(named)


class _WaitExpired(Exception):
    """A caller's wait for a connection ran out (internal; becomes CommandTimeout)."""


class _Turn(Waiter):
    """One caller's place in a node's queue for a connection.

    The caller parks in ``get()``; it is woken exactly once, from the hub: with a connection
    (a place freed), ``_WaitExpired`` (the node's wait timer) or ``NotConnected``
    (``fail_waiters``). ``done`` is set by whichever comes first, so the others skip it.
    A ``gevent.hub.Waiter`` rather than an ``AsyncResult``: half the cost per hand-off.
    """

    __slots__ = ("deadline", "overflow_at", "conn", "done")

    def __init__(self, hub: Any, deadline: float, overflow_at: float) -> None:
        Waiter.__init__(self, hub)
        self.deadline = deadline
        self.overflow_at = overflow_at  # when to ask for an overflow connection (_NEVER: no)
        self.conn: CommandConnection | None = None
        self.done = False


class NodeState:
    """What the pool knows about one node, and its connections lent out in turn.

    Mutated only from greenlets of the pool's hub. ``max_overflow``, ``overflow_after`` and
    ``stopping`` are the pool's; ``open_overflow(state)`` starts one overflow connection, which
    the pool lends out with ``add`` (and counts down ``opening`` once it is open or failed).
    Every ``acquire`` is matched by one ``release`` of the connection it returned.
    """

    def __init__(self, node: Node, *, max_overflow: int, overflow_after: float,
                 stopping: gevent.event.Event,
                 open_overflow: Callable[[NodeState], None],
                 pipeline_depth: int = PIPELINE_DEPTH, stall_after: float = STALL_AFTER) -> None:
        self.node = node
        self.name = node.name
        self.max_overflow = max_overflow
        self.overflow_after = overflow_after
        self.stopping = stopping
        self.pipeline_depth = pipeline_depth
        self.stall_after = stall_after
        self._open_overflow = open_overflow
        # Connections lent out: the slots' own, then overflow ones (tried in that order).
        self.own: list[CommandConnection] = []
        self.overflow: list[CommandConnection] = []
        # Callers waiting for a place, first come first served: a freed place goes to the
        # oldest of them, never to a newcomer.
        self.waiting: collections.deque[_Turn] = collections.deque()
        # One timer for all the waits of this node, armed for the earliest moment a waiter
        # needs (its deadline, or when it asks for an overflow connection), re-armed lazily.
        self.wait_timer: Any = None
        self.wait_timer_at = _NEVER
        self._hub = gevent.get_hub()
        self._loop = self._hub.loop
        self._run_callback = self._loop.run_callback
        self.opening = 0  # overflow connections being opened
        self.event_conn: EslConnection | None = None
        self.last_error: str | None = None
        self.counters = NodeCounters()
        # Per api command name, how long FreeSWITCH takes (moving average, seconds).
        self.service: dict[str, float] = {}

    @property
    def reconnects(self) -> int:
        return self.counters.reconnects

    @property
    def live(self) -> list[CommandConnection]:
        """Every command connection lent out (a closed one may linger for a moment, until its
        slot notices)."""
        return self.own + self.overflow

    def alive(self) -> int:
        """Live command connections."""
        return sum(1 for conn in self.live if conn.alive)

    def up(self) -> bool:
        """At least one live command connection (stops at the first)."""
        return any(conn.alive for conn in self.own) or any(conn.alive for conn in self.overflow)

    def ready(self, connections: int) -> bool:
        """``connections`` live command connections and the event connection (0: just one live
        command connection)."""
        if not connections:
            return self.up()
        event_conn = self.event_conn
        return (self.alive() >= connections and event_conn is not None and event_conn.alive)

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
            "idle": sum(1 for conn in self.live
                        if conn.alive and not conn.retiring and not conn.load + conn.abandoned),
        }

    def failed(self, kind: str, exc: EslError) -> None:
        """Count a command of ``kind`` that failed with ``exc``."""
        counters = self.counters
        counters.failures[kind] += 1
        if isinstance(exc, FreeSwitchTimeout):
            counters.timeouts[kind] += 1
        if isinstance(exc, FreeSwitchUnavailable) and not isinstance(exc, NotConnected):
            # NotConnected is a consequence; its cause is already the slot's last error.
            self.last_error = str(exc)

    def expects_slow(self, verb: str) -> bool:
        """True when ``api <verb> ...`` has lately taken FreeSWITCH over ``stall_after``."""
        return self.service.get(verb, 0.0) > self.stall_after

    def learn(self, verb: str, seconds: float) -> None:
        """Fold one ``service`` time of ``api <verb>`` into its moving average."""
        service = self.service
        before = service.get(verb)
        if before is None:
            if len(service) >= MAX_VERBS:
                service.clear()  # api commands come from a few builders: this is a safeguard
            service[verb] = seconds
        else:
            service[verb] = before + SERVICE_WEIGHT * (seconds - before)

    # ------------------------------------------------------------------ lending

    def add(self, conn: CommandConnection, overflow: bool = False) -> None:
        """Lend a freshly opened connection out (its places go to waiting callers first)."""
        conn.on_freed = self.freed
        (self.overflow if overflow else self.own).append(conn)
        self.freed(conn)

    def remove(self, conn: CommandConnection) -> None:
        """Stop lending a connection out (it died or retired); fail the waiting callers when no
        live one is left."""
        for group in (self.own, self.overflow):
            if conn in group:
                group.remove(conn)
        if not self.up():
            self.fail_waiters("no live connection to FreeSWITCH")

    def acquire(self, timeout: float) -> CommandConnection:
        """The live connection with the fewest commands in flight, waiting at most ``timeout``.

        A newcomer takes a place only when nobody is waiting; otherwise it queues, and freed
        places go to waiters first come, first served. An overflow connection is opened in the
        background (if allowed) when a caller finds every connection full or stalled, or once
        it has waited ``overflow_after`` seconds if that is set; whichever place frees first is
        taken.
        """
        if not (self.own or self.overflow) or self.stopping.is_set():
            raise NotConnected("no live connection to FreeSWITCH", self.name)
        if not self.waiting:
            conn = self._pick()
            if conn is not None:
                conn.load += 1
                return conn
        overflow_at = _NEVER
        if self._may_overflow():
            if self.overflow_after <= 0:
                self._ask_overflow()
            else:
                overflow_at = time.monotonic() + self.overflow_after
        return self._wait_in_turn(timeout, overflow_at)

    def release(self, conn: CommandConnection) -> None:
        """Give back the place ``acquire`` took; it goes to the oldest waiter if any."""
        conn.load -= 1
        if self.waiting:
            self.freed(conn)

    def freed(self, conn: CommandConnection) -> None:
        """A place may have freed (a reply dropped, a connection added): serve waiters."""
        waiting = self.waiting
        while waiting:
            turn = waiting[0]
            if turn.done:
                waiting.popleft()
                continue
            found = self._pick()
            if found is None:
                return
            waiting.popleft()
            turn.done = True
            turn.conn = found
            found.load += 1  # reserved for that waiter until it wakes
            self._run_callback(turn.switch, found)

    def _pick(self) -> CommandConnection | None:
        """The usable connection with the fewest in flight, own ones first; None if every
        one is full, stalled, dead or retiring."""
        depth = self.pipeline_depth
        now = 0.0
        for group in (self.own, self.overflow):
            best = None
            best_load = depth
            for conn in group:
                load = conn.load + conn.abandoned
                if load >= best_load or not conn.alive or conn.retiring:
                    continue
                if load and conn.in_flight:
                    if conn.slow_in_flight:
                        continue
                    if not now:
                        now = time.monotonic()
                    if conn.stalled(now, self.stall_after):
                        continue
                if not load:
                    return conn
                best, best_load = conn, load
            if best is not None:
                return best
        return None

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

    def _wait_in_turn(self, timeout: float, overflow_at: float) -> CommandConnection:
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
                    # Handed a place just as we gave up (the switch to us still pending):
                    # pass it on rather than lose it.
                    turn.conn = None
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
            conn.load -= 1
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
        return CommandTimeout(f"all {self.alive()} connections stayed busy (full or stalled) "
                              f"for {timeout:g} s", self.name)

    # ------------------------------------------------------------------ overflow

    def _may_overflow(self) -> bool:
        return (len(self.overflow) + self.opening < self.max_overflow
                and not self.stopping.is_set())

    def _ask_overflow(self) -> None:
        self.opening += 1
        self._open_overflow(self)


__all__ = ["PIPELINE_DEPTH", "STALL_AFTER", "Node", "NodeState"]
