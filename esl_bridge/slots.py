"""The greenlets that own a pool's connections: connect, watch, reconnect.

Every connection of the pool belongs to one slot greenlet. A command or event slot connects,
lends the connection out (command: ``NodeState.add``; event: ``NodeState.event_conn``),
waits for it to die and makes a new one, with capped exponential backoff and jitter after
failed attempts, until the pool stops. An overflow slot opens one extra command connection on a
node's request, lends it out, and closes it again once it has been unused for ``overflow_idle``
seconds; it is not reconnected (under load new ones are asked for).

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

import gevent
import gevent.event

from . import commands
from .command_connection import CommandConnection
from .connection import EslConnection
from .errors import CommandError, EslError, FreeSwitchUnavailable, NotConnected
from .event_connection import EventConnection
from .frames import Event
from .jobs import JobRegistry
from .node import NodeState

log = logging.getLogger(__name__)


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
        spawn: Callable[..., None],
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

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed connects in a row (capped, jittered)."""
        delay = min(self.reconnect_max, self.reconnect_base * (2 ** max(failures - 1, 0)))
        return delay * random.uniform(0.5, 1.0)

    def _new_connection(self, state: NodeState, event: bool) -> EslConnection:
        def malformed(note: str) -> None:
            state.counters.malformed += 1

        node = state.node
        kind = EventConnection if event else CommandConnection
        return kind(node.host, node.port, node.password, node=state.name,
                    connect_timeout=self.connect_timeout,
                    command_timeout=self.command_timeout, on_malformed=malformed)

    def connect(self, state: NodeState, failures: int, event: bool) -> EslConnection | None:
        """One connect attempt; ``None`` (after logging and counting) when it failed."""
        conn = self._new_connection(state, event)
        if event:
            conn.register_handle("*", lambda ev: self._on_event(state, ev))
        self._connecting.add(conn)
        try:
            if self._stopping.is_set():
                raise NotConnected("the ESL pool is stopping", state.name)
            conn.connect()
            if event:
                reply = conn.execute(commands.EVENT_SUBSCRIPTION)
                if not reply.reply_text.startswith("+OK"):
                    raise CommandError(f"event subscription refused: {reply.reply_text}",
                                       state.name, reply.reply_text)
        except BaseException as exc:
            if not isinstance(exc, EslError):  # killed: never leave the connection behind
                conn.close(NotConnected("connect interrupted", state.name))
                raise
            return self._failed(state, conn, exc, failures, event)
        finally:
            self._connecting.discard(conn)
        return conn

    def close_connecting(self, reason: str) -> None:
        """Close every connection still connecting (the pool is stopping): their slots wake at
        once instead of waiting for FreeSWITCH's answer or their timeout."""
        for conn in list(self._connecting):
            conn.close(NotConnected(reason, conn.node))

    def _failed(self, state: NodeState, conn: EslConnection, exc: EslError, failures: int,
                event: bool) -> None:
        """Close a connection that failed to come up; log and count it (not when it was closed
        because the pool is stopping)."""
        conn.close(exc if isinstance(exc, FreeSwitchUnavailable) else None)
        if self._stopping.is_set():
            log.debug("ESL %s: connect abandoned, the pool is stopping", state.name)
            return
        state.counters.connect_failures += 1
        state.last_error = str(exc)
        level = logging.WARNING if failures == 0 else logging.DEBUG
        log.log(level, "ESL %s: %s connection failed: %s", state.name,
                "event" if event else "command", exc)

    def command_slot(self, state: NodeState, index: int) -> None:
        self._slot_loop(state, event=False)

    def event_slot(self, state: NodeState) -> None:
        self._slot_loop(state, event=True)

    def _slot_loop(self, state: NodeState, event: bool) -> None:
        failures = 0
        connected_before = False
        while not self._stopping.is_set():
            conn = self.connect(state, failures, event)
            if conn is None:
                failures += 1
                if self._stopping.wait(self.backoff(failures)):
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
                self._spawn(self._refresh_node, state)
            else:
                state.add(conn)  # type: ignore[arg-type]
            gevent.wait([conn.closed, self._stopping], count=1)
            if event:
                state.event_conn = None
            else:
                state.remove(conn)  # type: ignore[arg-type]
            if self._stopping.is_set():
                conn.stop(timeout=min(self.command_timeout, 1.0))
                if event:
                    self._jobs.fail_node(state.name, "the ESL pool stopped")
                break
            reason = str(conn.close_reason) if conn.close_reason else "connection lost"
            state.last_error = reason
            log.warning("ESL %s: %s connection lost: %s", state.name,
                        "event" if event else "command", reason)
            if event:
                lost = self._jobs.fail_node(state.name, reason)
                if lost:
                    log.warning("ESL %s: %d jobs released: their results can no longer arrive",
                                state.name, lost)
            # Replace it at once but with jitter, so that the slots of a restarted FreeSWITCH do
            # not all knock in the same millisecond; failures then back off.
            if self._stopping.wait(self.backoff(1) * 0.2):
                break

    def overflow_slot(self, state: NodeState) -> None:
        """Open one overflow connection, lend it out, close it once unused for a while."""
        try:
            conn = self.connect(state, 1, event=False)
        finally:
            state.opening -= 1
        if conn is None:
            return
        if self._stopping.is_set():
            conn.stop(timeout=min(self.command_timeout, 1.0))
            return
        conn.last_used = time.monotonic()
        state.add(conn, overflow=True)  # type: ignore[arg-type]
        log.debug("ESL %s: overflow connection opened (%d)", state.name, len(state.overflow))
        try:
            while not self._stopping.is_set() and conn.alive:
                gevent.wait([conn.closed, self._stopping], count=1,
                            timeout=max(self.overflow_idle / 4, 0.01))
                if (conn.alive and not conn.load + conn.abandoned  # type: ignore[attr-defined]
                        and time.monotonic() - conn.last_used >= self.overflow_idle):
                    # No yield between this check and the flag: a caller cannot take it now.
                    conn.retiring = True
                    break
        finally:
            state.remove(conn)  # type: ignore[arg-type]
            conn.stop(timeout=min(self.command_timeout, 1.0))


__all__ = ["Slots"]
