"""Limits repeated wrong hotdesk PINs and unknown hotdesk ids (per process).

A key (a user being guessed at, or a phone doing the guessing) is locked while it has too many
failures within a window. Two windows apply at once: a short one that stops a burst
(5 in 5 minutes) and a longer one that stops a patient guesser pacing under it (20 in an hour:
a 4-digit PIN then takes weeks). The longer window stays an hour, not a day, because anyone at
a phone of the account can trip it against a colleague; nothing else clears a lock.
"""
from __future__ import annotations

import time
from collections import defaultdict, deque

#: (failures, seconds): a key with that many failures within that window is locked.
DEFAULT_LIMITS = ((5, 300.0), (20, 3600.0))


class PinLimiter:
    def __init__(self, limits: tuple[tuple[int, float], ...] = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._longest = max(window for _, window in limits)
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and now - failures[0] > self._longest:
            failures.popleft()
        return failures

    def locked(self, key: str, now: float | None = None) -> bool:
        """Whether ``key`` has reached any of the limits."""
        now = time.monotonic() if now is None else now
        failures = self._recent(key, now)
        if not failures:
            self._failures.pop(key, None)
            return False
        return any(sum(1 for at in failures if now - at <= window) >= count
                   for count, window in self.limits)

    def failed(self, key: str, now: float | None = None) -> None:
        """Count one failure of ``key``."""
        now = time.monotonic() if now is None else now
        self._recent(key, now).append(now)

    def succeeded(self, key: str) -> None:
        """Forget ``key``'s failures (the right PIN was given)."""
        self._failures.pop(key, None)
