"""The pool: per FreeSWITCH node, N command connections and one event connection.

- Command connections never subscribe to events; each carries up to ``pipeline_depth`` commands
  in flight, their replies matched in order (``esl_bridge.command_connection``: any timeout,
  failed write or error closes the connection and fails every command waiting on it). A
  caller gets the live connection with the fewest in flight (waiting for a place counts
  towards its timeout); a connection stalled by a slow command takes no new ones; overflow
  connections open when all are full or stalled (``esl_bridge.node.NodeState``). A node with
  no live connection fails callers at once (``NotConnected``); so do callers already waiting
  when its last connection dies.
- The event connection subscribes to ``commands.EVENT_SUBSCRIPTION``; it resolves ``bgapi`` jobs
  (``jobs.JobRegistry``) and keeps the registration cache current (``esl_bridge.upkeep``). When
  it drops, jobs of that node are released with ``ConnectionLost`` (their result can no longer
  be seen).
- Every connection is owned by a slot greenlet that connects, waits for the connection to die,
  and reconnects, until ``stop()``; while a node does not answer, one slot retries (capped,
  jittered) and the others connect the moment it gets through (``esl_bridge.slots``).
- A housekeeping greenlet expires forgotten jobs and refreshes the registration cache
  (``esl_bridge.upkeep``).

``start()`` returns at once: the pool connects in the background and keeps retrying; commands
raise ``NotConnected`` while no node is up (see the package docstring for an example).
"""
from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import gevent
import gevent.event
import gevent.pool

from . import commands
from .concurrent import concurrently
from .errors import (
    CommandError,
    CommandTimeout,
    ConnectionLost,
    EslError,
    NotConnected,
    ReplyTimeout,
)
from .frames import Event, Frame
from .jobs import Job, JobRegistry
from .metrics import KINDS, kind_of
from .node import PIPELINE_DEPTH, STALL_AFTER, Node, NodeState, service_key
from .registrations import RegistrationCache
from .slots import RECONNECT_BASE, RECONNECT_MAX, Slots
from .upkeep import Upkeep

log = logging.getLogger(__name__)

T = TypeVar("T")


class EslPool:
    """Connections to one or more FreeSWITCH nodes, with reconnect, health and metrics.

    Parameters:
        nodes: ``Node`` objects or ``host:port:password`` strings.
        pool_size: command connections per node (SPEC default 4).
        command_timeout: default bound of every command, seconds (SPEC default 5).
        connect_timeout: bound of TCP connect + auth (default: ``command_timeout``).
        sofia_profiles: profiles asked for registrations (plus any profile seen in events).
        reconnect_base, reconnect_max: while a node does not answer, one attempt at a time,
            ``base * 2**(n-1)`` s apart capped at ``max``, with jitter (``esl_bridge.slots``).
        registration_refresh: seconds between full refreshes of the registration cache.
        job_ttl: seconds after which a job that never reported is dropped (``JobTimeout``).
        pipeline_depth: commands in flight per command connection (1: one at a time).
        stall_after: seconds after which a connection whose oldest command is still in flight
            takes no new command until it drains (a slow ``api`` delays only those queued
            behind it already).
        max_overflow: extra command connections a node may open (default ``pool_size``) when
            a caller finds every connection full or stalled, or has waited ``overflow_after``
            seconds if that is set (default 0: at once, as SQLAlchemy's ``QueuePool`` does);
            each is closed again after ``overflow_idle`` seconds unused. Slow commands
            (``msleep``, a big ``xmlstatus``) hold their connection, so this keeps the others
            moving. Overflow connections are not reconnected: under load new ones are opened.
            0 disables.
    """

    def __init__(
        self,
        nodes: Iterable[Node | str],
        pool_size: int = 4,
        command_timeout: float = 5.0,
        *,
        connect_timeout: float | None = None,
        sofia_profiles: Sequence[str] = ("internal",),
        reconnect_base: float = RECONNECT_BASE,
        reconnect_max: float = RECONNECT_MAX,
        registration_refresh: float = 300.0,
        job_ttl: float = 900.0,
        max_overflow: int | None = None,
        overflow_after: float = 0.0,
        overflow_idle: float = 30.0,
        pipeline_depth: int = PIPELINE_DEPTH,
        stall_after: float = STALL_AFTER,
    ) -> None:
        parsed = [n if isinstance(n, Node) else Node.parse(n) for n in nodes]
        if not parsed:
            raise ValueError("EslPool needs at least one node")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if pipeline_depth < 1:
            raise ValueError("pipeline_depth must be at least 1")
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
        self.pipeline_depth = pipeline_depth
        self.stall_after = stall_after
        self.jobs = JobRegistry()
        self.registrations = RegistrationCache()
        self._stopping = gevent.event.Event()
        # Every greenlet of the pool (slots, housekeeping, helpers), joined at stop.
        self._greenlets = gevent.pool.Group()
        self.upkeep = Upkeep(jobs=self.jobs, registrations=self.registrations,
                             sofia_profiles=self.sofia_profiles,
                             registration_refresh=registration_refresh, job_ttl=job_ttl,
                             connect_timeout=self.connect_timeout, stopping=self._stopping,
                             spawn=self._greenlets.spawn, api=self.api)
        self._states = {
            node.name: NodeState(node, max_overflow=self.max_overflow,
                                 overflow_after=overflow_after, stopping=self._stopping,
                                 open_overflow=self._open_overflow,
                                 pipeline_depth=pipeline_depth, stall_after=stall_after)
            for node in parsed
        }
        if len(self._states) != len(parsed):
            raise ValueError("a FreeSWITCH node is listed twice")
        self._single = next(iter(self._states.values())) if len(parsed) == 1 else None
        self._slots = Slots(
            connect_timeout=self.connect_timeout, command_timeout=self.command_timeout,
            reconnect_base=reconnect_base, reconnect_max=reconnect_max,
            overflow_idle=overflow_idle, stopping=self._stopping, spawn=self._greenlets.spawn,
            jobs=self.jobs, on_event=self.upkeep.on_event, refresh_node=self.upkeep.refresh_node)
        self._started = False
        self._round_robin = itertools.count()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> EslPool:
        """Start connecting every node in the background; returns at once."""
        if self._started:
            return self
        self._started = True
        self._stopping.clear()
        self._slots.forget_reachability()
        for state in self._states.values():
            for index in range(self.pool_size):
                self._greenlets.spawn(self._slots.command_slot, state, index)
            self._greenlets.spawn(self._slots.event_slot, state)
        self._greenlets.spawn(self.upkeep.run, self._states.values())
        log.info("ESL pool started: %s, %d command connections per node",
                 ", ".join(self._states), self.pool_size)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection and join every greenlet of the pool (bounded by ``timeout``)."""
        if not self._started:
            return
        self._stopping.set()
        self._slots.close_connecting("the ESL pool is stopping")
        for state in self._states.values():
            state.stop_waiting("the ESL pool is stopping")
        self._greenlets.join(timeout=timeout)
        if self._greenlets:
            log.warning("ESL pool: %d greenlets did not stop in time; killing them",
                        len(self._greenlets))
            self._greenlets.kill(timeout=timeout)
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
            if all(self._states[name].ready(self.pool_size if full else 0) for name in names):
                return True
            if time.monotonic() >= deadline:
                return False
            gevent.sleep(0.005)

    def _open_overflow(self, state: NodeState) -> None:
        self._greenlets.spawn(self._slots.overflow_slot, state)

    # ------------------------------------------------------------------ events

    def add_event_listener(self, listener: Callable[[str, Event], None]) -> None:
        """Call ``listener(node_name, event)`` for every event (in the reader: must not block)."""
        self.upkeep.add_listener(listener)

    def remove_event_listener(self, listener: Callable[[str, Event], None]) -> None:
        self.upkeep.remove_listener(listener)

    def profiles_for(self, node: str) -> list[str]:
        """Sofia profiles to ask on ``node``: the configured ones, then any seen in events."""
        return self.upkeep.profiles_for(node)

    def refresh_registrations(self) -> None:
        """Refresh the registration cache of every connected node now (blocking)."""
        self.fan_out(lambda name: self.upkeep.refresh_node(self._states[name]),
                     [n for n, s in self._states.items() if s.up()])

    # ------------------------------------------------------------------ commands

    def node_names(self) -> list[str]:
        """Every configured node, in configuration order."""
        return list(self._states)

    def connected_nodes(self) -> list[str]:
        """Nodes with at least one live command connection."""
        return [name for name, state in self._states.items() if state.up()]

    def pick_node(self) -> str:
        """A connected node (round robin); ``NotConnected`` if none is up.

        The error names the node when only one is configured (which one failed is then no
        question), else its ``node`` is None.
        """
        up = self.connected_nodes()
        if not up:
            raise NotConnected(
                f"no FreeSWITCH node is connected (configured: {', '.join(self._states)})",
                self._single.name if self._single is not None else None)
        return up[next(self._round_robin) % len(up)]

    def _state(self, node: str | None) -> NodeState:
        if node is None and self._single is not None:
            return self._single  # one node: no choice to make (it fails in acquire if down)
        name = node if node is not None else self.pick_node()
        state = self._states.get(name)
        if state is None:
            raise KeyError(f"unknown FreeSWITCH node {name!r}")
        return state

    def execute(self, text: str, *, node: str | None = None, timeout: float | None = None,
                kind: str | None = None, verb: str | None = None) -> tuple[str, Frame]:
        """Send one command frame on a command connection; returns ``(node, reply frame)``.

        ``node`` None picks a connected node. Raises ``NotConnected`` at once when the node has
        no live connection, ``CommandTimeout`` when no reply (or no place) came within ``timeout``
        (default ``command_timeout``), ``ConnectionLost`` when the connection died. ``kind`` is
        the metrics kind (default: from the text); ``verb`` names an ``api`` command, whose
        service time the node learns (one known to be slow gets nothing queued behind it).
        """
        state = self._state(node)
        if timeout is None:
            timeout = self.command_timeout
        if kind is None:
            kind = kind_of(text)
        started = time.monotonic()
        try:
            conn = state.acquire(timeout)
            try:
                left = timeout - (time.monotonic() - started)
                if left <= 0:
                    # Handed a connection as the wait ran out: not written, nothing to undo.
                    raise CommandTimeout(f"no connection free within {timeout:g} s",
                                         state.name)
                frame = conn.execute(text, left, verb is not None and state.expects_slow(verb))
            finally:
                conn.last_used = ended = time.monotonic()
                state.release(conn)
        except EslError as exc:
            state.failed(kind, exc)
            raise
        state.counters.observe(kind, ended - started)
        if verb is not None:
            state.learn(verb, frame.service)
        return state.name, frame

    def api(self, command: str, *, node: str | None = None, timeout: float | None = None) -> str:
        """``api <command>`` on ``node`` (or any connected node); returns the body as text.

        The body is returned as is, ``-ERR ...`` included: FreeSWITCH's api commands report
        failure in their text, each in its own way.
        """
        name, frame = self.execute(commands.api(command), node=node, timeout=timeout, kind="api",
                                   verb=service_key(command))
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
        except (ReplyTimeout, ConnectionLost) as exc:
            # Maybe written, unanswered: FreeSWITCH starts a job before it replies, so it may
            # run. Its waiter stays (until the job lifetime) for the caller to follow: exc.job.
            exc.job = job
            raise
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

        return dict(zip(names, concurrently(run, names), strict=True))

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, dict[str, Any]]:
        """Per node: ``connected``, ``connections``, ``event_connection``, ``last_error``,
        ``reconnects`` (plus ``overflow``, ``pool_size``, ``idle``, ``connect_failures``)."""
        return {name: state.health(self.pool_size) for name, state in self._states.items()}

    def metrics(self) -> dict[str, Any]:
        """Counters and latencies (see ``esl_bridge.metrics`` for the layout)."""
        return {
            "nodes": {name: state.counters.snapshot() for name, state in self._states.items()},
            "jobs": self.jobs.counts(),
            "health": self.health(),
        }

    def __repr__(self) -> str:
        return f"<EslPool {', '.join(self._states)} size={self.pool_size}>"


__all__ = ["EslPool", "KINDS", "Node", "PIPELINE_DEPTH", "STALL_AFTER"]
