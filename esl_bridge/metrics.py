"""Counters of the pool, as plain dicts.

``EslPool.metrics()`` returns::

    {
      "nodes": {
        "<host:port>": {
          "commands":  {"api": n, "bgapi": n, "sendevent": n, "other": n},  # answered
          "failures":  {"api": n, ...},   # raised an EslError (timeouts included)
          "timeouts":  {"api": n, ...},   # CommandTimeout / waited too long for a connection
          "reconnects": n,                # connections re-established after one was lost
          "connect_failures": n,          # connect or auth attempts that failed
          "events": n,                    # events received on the event connection
          "malformed": n,                 # malformed lines, non-UTF-8 bytes, stray replies
          "latency_seconds": {"buckets": [[le, cumulative count], ...], "sum": s, "count": n},
        },
      },
      "jobs": {"pending": n, "completed": n, "failed": n, "lost": n, "expired": n},
      "health": EslPool.health(),     # rendered as node_up and connections gauges
    }

The web layer's ``/metrics`` reads it at scrape time (``web.pool_metrics``): this package knows
nothing of Prometheus.
"""
from __future__ import annotations

import bisect
from typing import Any

KINDS = ("api", "bgapi", "sendevent", "other")
#: Upper bounds (seconds) of the latency histogram buckets.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def kind_of(text: str) -> str:
    """The metrics kind of a command text: its first word if known, else ``other``."""
    verb = text.split(" ", 1)[0].split("\n", 1)[0]
    return verb if verb in KINDS else "other"


class NodeCounters:
    """The counters of one node (plain ints; gevent runs one greenlet at a time)."""

    def __init__(self) -> None:
        self.commands = dict.fromkeys(KINDS, 0)
        self.failures = dict.fromkeys(KINDS, 0)
        self.timeouts = dict.fromkeys(KINDS, 0)
        self.reconnects = 0
        self.connect_failures = 0
        self.events = 0
        self.malformed = 0
        self._buckets = [0] * (len(BUCKETS) + 1)
        self._sum = 0.0
        self._count = 0

    def observe(self, kind: str, seconds: float) -> None:
        self.commands[kind] += 1
        self._buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self._sum += seconds
        self._count += 1

    def snapshot(self) -> dict[str, Any]:
        cumulative = []
        running = 0
        for bound, count in zip(BUCKETS, self._buckets, strict=False):
            running += count
            cumulative.append([bound, running])
        return {
            "commands": dict(self.commands),
            "failures": dict(self.failures),
            "timeouts": dict(self.timeouts),
            "reconnects": self.reconnects,
            "connect_failures": self.connect_failures,
            "events": self.events,
            "malformed": self.malformed,
            "latency_seconds": {"buckets": cumulative, "sum": self._sum, "count": self._count},
        }


__all__ = ["BUCKETS", "KINDS", "NodeCounters", "kind_of"]
