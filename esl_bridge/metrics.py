"""Counters of the pool, as plain dicts, and their Prometheus text rendering.

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

``render_prometheus(pool.metrics())`` turns it into Prometheus text exposition lines, for the
web layer's ``/metrics``.
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


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_prometheus(metrics: dict[str, Any], prefix: str = "esl_bridge_esl") -> str:
    """Prometheus text exposition (version 0.0.4) of ``EslPool.metrics()``, ending in a newline."""
    lines: list[str] = []
    nodes = metrics.get("nodes", {})

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {prefix}_{name} {help_text}")
        lines.append(f"# TYPE {prefix}_{name} {kind}")

    for name, help_text in (("commands_total", "ESL commands answered, by node and kind"),
                            ("command_failures_total", "ESL commands that failed"),
                            ("command_timeouts_total", "ESL commands that timed out")):
        family(name, "counter", help_text)
        key = {"commands_total": "commands", "command_failures_total": "failures",
               "command_timeouts_total": "timeouts"}[name]
        for node, data in nodes.items():
            for kind, value in data[key].items():
                lines.append(f'{prefix}_{name}{{node="{_label(node)}",kind="{kind}"}} {value}')
    for name, key, help_text in (
            ("reconnects_total", "reconnects", "connections re-established after a loss"),
            ("connect_failures_total", "connect_failures", "failed connect or auth attempts"),
            ("events_total", "events", "events received"),
            ("malformed_total", "malformed", "malformed frames, lines or bytes received")):
        family(name, "counter", help_text)
        for node, data in nodes.items():
            lines.append(f'{prefix}_{name}{{node="{_label(node)}"}} {data[key]}')
    family("command_latency_seconds", "histogram", "round trip of answered ESL commands")
    for node, data in nodes.items():
        hist = data["latency_seconds"]
        label = _label(node)
        for bound, count in hist["buckets"]:
            lines.append(f'{prefix}_command_latency_seconds_bucket{{node="{label}",le="{bound:g}"}}'
                         f" {count}")
        lines.append(f'{prefix}_command_latency_seconds_bucket{{node="{label}",le="+Inf"}}'
                     f' {hist["count"]}')
        lines.append(f'{prefix}_command_latency_seconds_sum{{node="{label}"}} {hist["sum"]:.6f}')
        lines.append(f'{prefix}_command_latency_seconds_count{{node="{label}"}} {hist["count"]}')
    jobs = metrics.get("jobs", {})
    if jobs:
        family("jobs_pending", "gauge", "bgapi jobs waiting for their result")
        lines.append(f"{prefix}_jobs_pending {jobs.get('pending', 0)}")
        family("jobs_total", "counter", "bgapi jobs finished, by outcome")
        for outcome in ("completed", "failed", "lost", "expired"):
            lines.append(f'{prefix}_jobs_total{{outcome="{outcome}"}} {jobs.get(outcome, 0)}')
    health = metrics.get("health", {})
    if health:
        family("node_up", "gauge", "1 when the node has a live command connection")
        for node, data in health.items():
            lines.append(f'{prefix}_node_up{{node="{_label(node)}"}} {int(data["connected"])}')
        family("connections", "gauge", "live command connections")
        for node, data in health.items():
            lines.append(f'{prefix}_connections{{node="{_label(node)}"}} {data["connections"]}')
    return "\n".join(lines) + "\n"


__all__ = ["BUCKETS", "KINDS", "NodeCounters", "kind_of", "render_prometheus"]
