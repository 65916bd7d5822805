"""Limits on repeated wrong hotdesk PINs and unknown hotdesk ids, kept in the database.

A key (a user being guessed at, or a phone doing the guessing) is locked while it has too many
failures within a window. Two windows apply at once: a short one that stops a burst
(5 in 5 minutes) and a longer one that stops a patient guesser pacing under it (20 in an hour:
a 4-digit PIN then takes weeks). The longer window stays an hour, not a day, because anyone at
a phone of the account can trip it against a colleague; nothing else clears a lock.

The failures live in the database so that every process and host serving the callouts counts
the same guesses: N workers must not give a guesser N times the tries. A check and the failure
it records happen in one transaction holding the keys' rows, so guesses made at the same moment
through different processes are counted one after the other.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

from models.db import database
from models.tables import LockoutRow

#: (failures, seconds): a key with that many failures within that window is locked.
DEFAULT_LIMITS = ((5, 300.0), (20, 3600.0))


def is_locked(failures: list[float], now: float,
              limits: tuple[tuple[int, float], ...] = DEFAULT_LIMITS) -> bool:
    """Whether failures at these times reach any of the limits at ``now``."""
    return any(sum(1 for at in failures if now - at <= window) >= count for count, window in limits)


class Guard:
    """The failures of some keys, read and locked for one transaction (see ``guard``)."""

    def __init__(self, failures: dict[str, list[float]], now: float,
                 limits: tuple[tuple[int, float], ...]) -> None:
        self._failures = failures
        self._changed: set[str] = set()
        self.now = now
        self.limits = limits

    def locked(self, key: str) -> bool:
        """Whether ``key`` has reached any of the limits."""
        return is_locked(self._failures[key], self.now, self.limits)

    def unlocks_in(self, key: str) -> float:
        """Seconds until ``key`` is under every limit again (0 when it is already)."""
        wait = 0.0
        for count, window in self.limits:
            recent = sorted(at for at in self._failures[key] if self.now - at <= window)
            if len(recent) >= count:
                # Unlocked once the count-th most recent failure leaves the window.
                wait = max(wait, recent[len(recent) - count] + window - self.now)
        return wait

    def failed(self, *keys: str) -> None:
        """Count one failure of each key."""
        for key in keys:
            self._failures[key].append(self.now)
            self._changed.add(key)

    def succeeded(self, key: str) -> None:
        """Forget ``key``'s failures (the right PIN was given)."""
        if self._failures[key]:
            self._failures[key] = []
            self._changed.add(key)

    def _save(self) -> None:
        longest = max(window for _, window in self.limits)
        for key in self._changed:
            kept = [at for at in self._failures[key] if self.now - at <= longest]
            LockoutRow.update(failures=json.dumps(kept), last_failure=max(kept, default=0.0)) \
                .where(LockoutRow.key == key).execute()
        if self._changed:
            # Keys nobody has failed on for a whole window lock nothing: keep the table small.
            LockoutRow.delete().where(LockoutRow.last_failure < self.now - longest,
                                      LockoutRow.key.not_in(list(self._failures))).execute()


@contextmanager
def guard(*keys: str, now: float | None = None,
          limits: tuple[tuple[int, float], ...] = DEFAULT_LIMITS) -> Iterator[Guard]:
    """The failures of ``keys`` in a transaction that holds their rows until it ends.

    The rows are written first (an upsert), which takes the row locks on PostgreSQL and the
    write lock on SQLite before anything is read: a rival check waits for this one to commit
    and then sees its failures. Give keys in the same order everywhere (phone, then user).
    """
    now = time.time() if now is None else now
    with database.atomic():
        LockoutRow.insert_many([{"key": key, "failures": "[]", "last_failure": 0.0} for key in keys]) \
            .on_conflict_ignore().execute()
        query = LockoutRow.select(LockoutRow.key, LockoutRow.failures).where(LockoutRow.key.in_(keys))
        if getattr(database.obj, "for_update", False):
            query = query.for_update()
        failures = {key: json.loads(text) for key, text in query.tuples()}
        held = Guard(failures, now, limits)
        yield held
        held._save()


def purge_idle(before: float) -> int:
    """Forget keys with no failure since ``before`` (give the longest window in use); returns
    how many. A check writes its keys' rows first, so untouched keys would stay otherwise."""
    return LockoutRow.delete().where(LockoutRow.last_failure < before).execute()
