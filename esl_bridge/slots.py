"""The greenlets that own a pool's connections: connect, watch, reconnect.

Every connection of the pool belongs to one slot greenlet. A command or event slot connects,
lends the connection out (command: ``NodeState.add``; event: ``NodeState.event_conn``),
waits for it to die and makes a new one, until the pool stops. An overflow slot opens one extra
command connection on a node's request, lends it out, and closes it again once it has been
unused for ``overflow_idle`` seconds; it is not reconnected (under load new ones are asked for).

Reconnecting, so that a node is served again within a second of coming back however long it
was down, while a node that stays down costs it and the logs little:

- A lost connection is replaced at once, after a random pause of up to ``RECONNECT_SPREAD``
  (the slots of a restarted FreeSWITCH do not all knock in the same millisecond).
- When a connect attempt gets no answer (refused, timed out, auth refused), the node is
  unreachable: from then on one slot of the node (the prober) retries, with capped exponential
  backoff and jitter (``reconnect_base`` doubling up to ``reconnect_max``; up to
  ``AUTH_RETRY_MAX`` after a refused password, which will not fix itself), and the node's other
  slots wait. The moment the prober gets through, the node is reachable again and every slot
  connects at once, the event connection and its registration refresh included.
- One log line per change of the node's state: when its last command connection is lost (or
  it cannot be reached), and when it is back, with how long it was down and how many attempts
  it took. Single connections lost and attempts that fail are logged at debug level.

Command connections never subscribe and carry several commands at once
(``CommandConnection``); the event connection keeps greenswitch's reader greenlet
(``EventConnection``), subscribes to ``commands.EVENT_SUBSCRIPTION`` and hands every event to
the pool. When it drops, the node's pending jobs are released (their result can no longer be
seen).
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import NamedTuple, cast

import gevent
import gevent.event

from . import commands
from .command_connection import CommandConnection
from .connection import EslConnection
from .errors import (
    AuthFailed,
    CommandError,
    ConnectionLost,
    EslError,
    FreeSwitchUnavailable,
    NotConnected,
)
from .event_connection import EventConnection
from .frames import Event
from .jobs import JobRegistry
from .node import NodeState

log = logging.getLogger(__name__)

#: Attempts while a node does not answer: the first after RECONNECT_BASE s, doubling up to
#: RECONNECT_MAX s (each times a random factor in [0.5, 1]); chosen by measurement
#: (docs/benchmarks.md, "Restarts").
RECONNECT_BASE = 0.05
RECONNECT_MAX = 0.25
#: Longest random pause before replacing a lost connection, seconds.
RECONNECT_SPREAD = 0.05
#: Longest wait between attempts after FreeSWITCH refused our password, seconds.
AUTH_RETRY_MAX = 30.0


class Attempt(NamedTuple):
    """The outcome of one connect attempt: the connection, or the error and whether FreeSWITCH
    answered at all (it did when only the event subscription failed)."""

    conn: EslConnection | None
    error: EslError | None = None
    answered: bool = True


class Reachability:
    """What the slots of one node know of whether FreeSWITCH answers there."""

    def __init__(self) -> None:
        self.reachable = gevent.event.Event()
        self.reachable.set()  # not known otherwise until an attempt fails
        self.prober: object | None = None  # the slot retrying while unreachable
        self.down_since: float | None = None  # since when no command connection is live
        self.attempts = 0  # failed attempts since then
        self.checking_events = False  # the event connection is being checked


class Slots:
    """The connection slots of one pool (its settings, and what to call back).

    ``stopping`` is the pool's stop flag; ``spawn(fn, *args)`` starts a helper greenlet the
    pool joins at stop; ``on_event(state, event)`` gets every event of a node's event
    connection; ``refresh_node(state)`` runs (in a helper) each time an event connection comes
    up; ``jobs`` are released per node when its event connection drops.
    """

    def __init__(
        self,
        *,
        connect_timeout: float,
        command_timeout: float,
        reconnect_base: float,
        reconnect_max: float,
        overflow_idle: float,
        stopping: gevent.event.Event,
        spawn: Callable[..., object],
        jobs: JobRegistry,
        on_event: Callable[[NodeState, Event], None],
        refresh_node: Callable[[NodeState], None],
    ) -> None:
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.reconnect_base = reconnect_base
        self.reconnect_max = reconnect_max
        self.overflow_idle = overflow_idle
        self._stopping = stopping
        self._spawn = spawn
        self._jobs = jobs
        self._on_event = on_event
        self._refresh_node = refresh_node
        # Connections still connecting, authenticating or subscribing: see close_connecting.
        self._connecting: set[EslConnection] = set()
        self._reach: dict[str, Reachability] = {}

    def reachability(self, state: NodeState) -> Reachability:
        return self._reach.setdefault(state.name, Reachability())

    def forget_reachability(self) -> None:
        """Forget what the slots of an earlier start learnt (a pool started again after stop):
        a node left unreachable would otherwise wait for a prober that no longer runs."""
        self._reach.clear()

    def backoff(self, failures: int, error: EslError | None = None) -> float:
        """Seconds to wait after ``failures`` failed connects in a row (capped, jittered)."""
        cap = max(self.reconnect_max, AUTH_RETRY_MAX) if isinstance(error, AuthFailed) \
            else self.reconnect_max
        delay = min(cap, self.reconnect_base * (2 ** max(failures - 1, 0)))
        return delay * random.uniform(0.5, 1.0)

    # ------------------------------------------------------------------ connecting

    def _new_connection(self, state: NodeState, event: bool) -> EslConnection:
        def malformed(note: str) -> None:
            state.counters.malformed += 1

        node = state.node
        kind = EventConnection if event else CommandConnection
        return kind(node.host, node.port, node.password, node=state.name,
                    connect_timeout=self.connect_timeout,
                    command_timeout=self.command_timeout, on_malformed=malformed)

    def connect(self, state: NodeState, event: bool) -> Attempt:
        """One connect attempt (an event connection also subscribes)."""
        conn = self._new_connection(state, event)
        if event:
            conn.register_handle("*", lambda ev: self._on_event(state, ev))
        self._connecting.add(conn)
        answered = False
        try:
            if self._stopping.is_set():
                raise NotConnected("the ESL pool is stopping", state.name)
            conn.connect()
            answered = True
            if event:
                reply = conn.execute(commands.EVENT_SUBSCRIPTION)
                if not reply.reply_text.startswith("+OK"):
                    raise CommandError(f"event subscription refused: {reply.reply_text}",
                                       state.name, reply.reply_text)
        except BaseException as exc:
            if not isinstance(exc, EslError):  # killed: never leave the connection behind
                conn.close(NotConnected("connect interrupted", state.name))
                raise
            conn.close(exc if isinstance(exc, FreeSwitchUnavailable) else None)
            if not self._stopping.is_set():
                state.counters.connect_failures += 1
                state.last_error = str(exc)
                log.debug("ESL %s: %s connection failed: %s", state.name,
                          "event" if event else "command", exc)
            return Attempt(None, exc, answered)
        finally:
            self._connecting.discard(conn)
        return Attempt(conn)

    def close_connecting(self, reason: str) -> None:
        """Close every connection still connecting (the pool is stopping): their slots wake at
        once instead of waiting for FreeSWITCH's answer or their timeout."""
        for conn in list(self._connecting):
            conn.close(NotConnected(reason, conn.node))

    # ------------------------------------------------------------------ the node's state

    def _down(self, state: NodeState, reason: str) -> None:
        """The node has no live command connection: say so once."""
        reach = self.reachability(state)
        if reach.down_since is None and not self._stopping.is_set():
            reach.down_since = time.monotonic()
            reach.attempts = 0
            log.warning("ESL %s: FreeSWITCH is unreachable: %s (retrying up to every %g s)",
                        state.name, reason, self.reconnect_max)

    def _up(self, state: NodeState) -> None:
        """A command connection is live again: say so once, with how long it took."""
        reach = self.reachability(state)
        if reach.down_since is not None:
            log.info("ESL %s: FreeSWITCH is back after %.1f s (%d failed attempts)",
                     state.name, time.monotonic() - reach.down_since, reach.attempts)
            reach.down_since = None

    def _turn_to_try(self, state: NodeState, me: object, event: bool) -> bool:
        """Wait while another slot probes an unreachable node; False once the pool stops.

        The event slot probes only when no command slot will (they all hold live connections):
        a command connection that gets through serves callers at once.
        """
        reach = self.reachability(state)
        while not reach.reachable.is_set():
            if reach.prober is me or (reach.prober is None and (not event or state.up())):
                reach.prober = me
                return not self._stopping.is_set()
            gevent.wait([reach.reachable, self._stopping], count=1, timeout=self.reconnect_max)
            if self._stopping.is_set():
                return False
        return not self._stopping.is_set()

    # ------------------------------------------------------------------ slots

    def command_slot(self, state: NodeState, index: int) -> None:
        self._slot_loop(state, event=False)

    def event_slot(self, state: NodeState) -> None:
        self._slot_loop(state, event=True)

    def _slot_loop(self, state: NodeState, event: bool) -> None:
        reach = self.reachability(state)
        me = object()
        kind = "event" if event else "command"
        failures = 0
        connected_before = False
        while self._turn_to_try(state, me, event):
            attempt = self.connect(state, event)
            conn = attempt.conn
            if attempt.answered:  # FreeSWITCH answers: every slot of the node may try
                if reach.prober is me:
                    reach.prober = None
                reach.reachable.set()
            else:
                reach.reachable.clear()
                if reach.prober is None and (not event or state.up()):
                    reach.prober = me
                reach.attempts += 1
                if not state.up():
                    self._down(state, str(attempt.error))
            if conn is None:
                failures += 1
                if self._stopping.wait(self.backoff(failures, attempt.error)):
                    break
                continue
            if self._stopping.is_set():
                conn.stop(timeout=min(self.command_timeout, 1.0))
                break
            if connected_before:
                state.counters.reconnects += 1
                log.debug("ESL %s: %s connection re-established", state.name, kind)
            connected_before = True
            failures = 0
            if event:
                state.event_conn = conn
                self._spawn(self._refresh_node, state)
            else:
                state.add(cast(CommandConnection, conn))
                self._up(state)
            gevent.wait([conn.closed, self._stopping], count=1)
            if event:
                state.event_conn = None
            else:
                state.remove(cast(CommandConnection, conn))
            if self._stopping.is_set():
                conn.stop(timeout=min(self.command_timeout, 1.0))
                if event:
                    self._jobs.fail_node(state.name, "the ESL pool stopped")
                break
            reason = str(conn.close_reason) if conn.close_reason else "connection lost"
            state.last_error = reason
            log.debug("ESL %s: %s connection lost: %s", state.name, kind, reason)
            if event:
                lost = self._jobs.fail_node(state.name, reason)
                if lost:
                    log.warning("ESL %s: %d jobs released: their results can no longer arrive",
                                state.name, lost)
            else:
                self._spawn(self._check_event_connection, state)
                if not state.up():
                    self._down(state, reason)
            if self._stopping.wait(random.uniform(0, RECONNECT_SPREAD)):
                break

    def _check_event_connection(self, state: NodeState) -> None:
        """Check that the node's event connection still answers (a command connection was
        lost): the subscription sent again, bounded by the command timeout.

        A host that went away without a word (power lost, a failover) leaves the connection
        open on our side only, and nothing else is ever written on it that would find out: it
        would look alive forever while no event, and so no job result, arrives. No reply in
        time or a failed write closes it (``EventConnection.execute``), and its slot makes a
        new one; so does a refusal here.
        """
        reach = self.reachability(state)
        conn = state.event_conn
        if conn is None or not conn.alive or reach.checking_events or self._stopping.is_set():
            return
        reach.checking_events = True
        try:
            reply = conn.execute(commands.EVENT_SUBSCRIPTION)
            if not reply.reply_text.startswith("+OK"):
                conn.close(ConnectionLost(f"event subscription refused: {reply.reply_text}",
                                          state.name))
        except EslError as exc:
            log.debug("ESL %s: event connection check failed: %s", state.name, exc)
        finally:
            reach.checking_events = False

    def overflow_slot(self, state: NodeState) -> None:
        """Open one overflow connection, lend it out, close it once unused for a while."""
        try:
            opened = self.connect(state, event=False).conn
        finally:
            state.opening -= 1
        if opened is None:
            return
        if self._stopping.is_set():
            opened.stop(timeout=min(self.command_timeout, 1.0))
            return
        conn = cast(CommandConnection, opened)
        conn.last_used = time.monotonic()
        state.add(conn, overflow=True)
        log.debug("ESL %s: overflow connection opened (%d)", state.name, len(state.overflow))
        try:
            while not self._stopping.is_set() and conn.alive:
                gevent.wait([conn.closed, self._stopping], count=1,
                            timeout=max(self.overflow_idle / 4, 0.01))
                if (conn.alive and not conn.load + conn.abandoned
                        and time.monotonic() - conn.last_used >= self.overflow_idle):
                    # No yield between this check and the flag: a caller cannot take it now.
                    conn.retiring = True
                    break
        finally:
            state.remove(conn)
            conn.stop(timeout=min(self.command_timeout, 1.0))


__all__ = ["AUTH_RETRY_MAX", "RECONNECT_BASE", "RECONNECT_MAX", "RECONNECT_SPREAD", "Attempt", "Reachability", "Slots"]
