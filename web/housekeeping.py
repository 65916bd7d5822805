"""Background purges: expired tokens, idempotency keys older than a day, and lockout keys
(refused logins, wrong hotdesk PINs) with no failure within the longest window. Run at start, then every `INTERVAL_SECONDS`, in each
process (the deletes are idempotent, so several processes on one database do no harm)."""
from __future__ import annotations

import logging
import time
from typing import Any

import gevent

from models import idempotency, lockout
from models import token as tokens
from models.db import database
from web import login_throttle

log = logging.getLogger(__name__)

# Failures older than every window of every limit lock nothing.
_LONGEST_WINDOW = max(window for _, window in (*lockout.DEFAULT_LIMITS, *login_throttle.LIMITS))


class Housekeeping:
    """The purges, on a loop timer: nothing waits between runs (no parked greenlet), and each
    run is a short greenlet of its own; a run still going when the next is due is not doubled."""

    INTERVAL_SECONDS = 300.0

    def __init__(self) -> None:
        self._timer: Any = None
        self._running: gevent.Greenlet | None = None

    def run_once(self) -> dict[str, int]:
        """Purge everything expired now; returns how many of each kind went."""
        now = time.time()
        with database.connection_context():
            purged = {"expired tokens": tokens.purge_expired(now),
                      "idempotency keys": idempotency.purge_expired(now),
                      "idle lockout keys": lockout.purge_idle(now - _LONGEST_WINDOW)}
        for what, count in purged.items():
            if count:
                log.info("purged %d %s", count, what)
        return purged

    def _run(self) -> None:
        try:
            self.run_once()
        except Exception as exc:  # the database may be down for a while: next time, then
            log.warning("housekeeping failed: %s", exc)

    def _due(self) -> None:
        if self._running is None or self._running.dead:
            self._running = gevent.spawn(self._run)

    def start(self) -> Housekeeping:
        """Run now, then every `INTERVAL_SECONDS`."""
        if self._timer is None:
            self._timer = gevent.get_hub().loop.timer(0.0, self.INTERVAL_SECONDS)
            self._timer.start(self._due)
        return self

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer.close()
            self._timer = None
        if self._running is not None:
            self._running.kill(block=True, timeout=2)
            self._running = None
