"""Keeping the pool's view of FreeSWITCH current: events, registrations, forgotten jobs.

- Every event of a node's event connection comes here (``on_event``): ``BACKGROUND_JOB``
  resolves its job, ``sofia::*`` updates the registration cache, listeners get every event.
- Each time a node's event connection comes up, and every ``registration_refresh`` seconds, the
  node's registrations are refreshed in full (``refresh_node``) once it can take commands.
- Jobs that never reported are expired after ``job_ttl`` seconds (``run``, the pool's
  housekeeping greenlet).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence

import gevent.event

from .frames import Event
from .jobs import JobRegistry
from .node import NodeState
from .registrations import RegistrationCache

log = logging.getLogger(__name__)


class Upkeep:
    """Events, registration refreshes and job expiry for one pool.

    ``api(command, node=...)`` asks a node (the pool's ``api``); ``spawn(fn, *args)`` starts a
    helper greenlet the pool joins at stop; ``stopping`` is the pool's stop flag.
    """

    def __init__(self, *, jobs: JobRegistry, registrations: RegistrationCache,
                 sofia_profiles: Sequence[str], registration_refresh: float, job_ttl: float,
                 connect_timeout: float, stopping: gevent.event.Event,
                 spawn: Callable[..., None], api: Callable[..., str]) -> None:
        self.jobs = jobs
        self.registrations = registrations
        self.sofia_profiles = tuple(sofia_profiles)
        self.registration_refresh = registration_refresh
        self.job_ttl = job_ttl
        self.connect_timeout = connect_timeout
        self._stopping = stopping
        self._spawn = spawn
        self._api = api
        self._listeners: list[Callable[[str, Event], None]] = []

    # ------------------------------------------------------------------ events

    def on_event(self, state: NodeState, event: Event) -> None:
        """One event of ``state``'s event connection (runs in its reader: must not block)."""
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

    def add_listener(self, listener: Callable[[str, Event], None]) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[str, Event], None]) -> None:
        self._listeners.remove(listener)

    # ------------------------------------------------------------------ registrations

    def profiles_for(self, node: str) -> list[str]:
        """Sofia profiles to ask on ``node``: the configured ones, then any seen in events."""
        seen = sorted(self.registrations.profiles(node) - set(self.sofia_profiles))
        return list(self.sofia_profiles) + seen

    def refresh_node(self, state: NodeState) -> None:
        """Full refresh of the registration cache for one node, once it can take commands."""
        # The event connection may come up before the command connections do.
        deadline = time.monotonic() + self.connect_timeout
        while not state.up() and time.monotonic() < deadline:
            if self._stopping.wait(0.005):
                return
        self.registrations.refresh(state.name, self.profiles_for(state.name), self._api,
                                   self._stopping)

    # ------------------------------------------------------------------ housekeeping

    def run(self, states: Iterable[NodeState]) -> None:
        """Expire forgotten jobs and refresh registrations periodically, until the pool stops."""
        states = list(states)
        next_refresh = time.monotonic() + self.registration_refresh
        tick = max(0.05, min(1.0, self.registration_refresh, self.job_ttl / 4))
        while not self._stopping.wait(tick):
            try:
                expired = self.jobs.expire(self.job_ttl)
                if expired:
                    log.warning("ESL pool: %d jobs expired without a result", expired)
                if time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + self.registration_refresh
                    for state in states:
                        if state.up() and state.event_conn is not None:
                            self._spawn(self.refresh_node, state)
            except Exception:
                log.exception("ESL pool: housekeeping failed")


__all__ = ["Upkeep"]

