"""The ESL pool's figures for `/metrics`: a prometheus_client collector that reads
`pool.metrics()` (see `esl_bridge.metrics`) when a scrape asks, so `esl_bridge` knows nothing of
Prometheus or of the web.

With several workers each has its own pool. Every worker writes its pool's figures to a file in
the multiprocess directory every `PUBLISH_SECONDS` (and once more as it stops); a scrape adds up
its own live figures and the other workers' files, so the series are the same with one worker or
several. Counters and histograms of workers that have ended are kept (the master renames their
file), so sums never go back; gauges count live workers only. `node_up` is the lowest of the
workers' (a node is up when every worker reaches it), the other gauges are sums.
"""
from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import gevent
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

log = logging.getLogger(__name__)

#: Where a scrape finds the other workers' figures: (live workers', ended workers').
Siblings = Callable[[], tuple[list[dict[str, Any]], list[dict[str, Any]]]]

PREFIX = "esl_bridge_esl"
PUBLISH_SECONDS = 2.0
_LIVE = "live_esl_pool_{pid}.json"
_ENDED = "ended_esl_pool_{pid}.json"

_PER_KIND = (("commands", "commands", "ESL commands answered, by node and kind"),
             ("command_failures", "failures", "ESL commands that failed"),
             ("command_timeouts", "timeouts", "ESL commands that timed out"))
_PER_NODE = (("reconnects", "reconnects", "connections re-established after a loss"),
             ("connect_failures", "connect_failures", "failed connect or auth attempts"),
             ("events", "events", "events received"),
             ("malformed", "malformed", "malformed frames, lines or bytes received"))
JOB_OUTCOMES = ("completed", "failed", "lost", "expired")


def _add_counts(into: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, dict):
            _add_counts(into.setdefault(key, {}), value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            into[key] = into.get(key, 0) + value


def merge(live: list[dict[str, Any]], ended: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One `pool.metrics()`-shaped dict from several workers' (live ones, then ended ones)."""
    ended = ended or []
    nodes: dict[str, Any] = {}
    jobs: dict[str, Any] = {}
    health: dict[str, Any] = {}
    for index, figures in enumerate([*live, *ended]):
        alive = index < len(live)
        for node, data in figures.get("nodes", {}).items():
            into = nodes.setdefault(node, {"latency_seconds": {"buckets": [], "sum": 0.0, "count": 0}})
            _add_counts(into, {k: v for k, v in data.items() if k != "latency_seconds"})
            hist, more = into["latency_seconds"], data["latency_seconds"]
            if not hist["buckets"]:
                hist["buckets"] = [[bound, 0] for bound, _ in more["buckets"]]
            for row, (_, count) in zip(hist["buckets"], more["buckets"], strict=True):
                row[1] += count
            hist["sum"] += more["sum"]
            hist["count"] += more["count"]
        _add_counts(jobs, {k: v for k, v in figures.get("jobs", {}).items()
                           if alive or k != "pending"})
        if alive:
            for node, data in figures.get("health", {}).items():
                seen = health.get(node)
                health[node] = ({"connected": bool(data["connected"]), "connections": data["connections"]}
                                if seen is None else
                                {"connected": seen["connected"] and bool(data["connected"]),
                                 "connections": seen["connections"] + data["connections"]})
    return {"nodes": nodes, "jobs": jobs, "health": health}


class PoolCollector:
    """Reads the pool's figures at scrape time (plus other workers', from ``siblings``)."""

    def __init__(self, pool: Any, siblings: Siblings | None = None):
        self.pool = pool
        self.siblings = siblings

    def describe(self) -> list[Any]:
        return []  # the families depend on the nodes: nothing to check at registration

    def collect(self) -> Iterator[Any]:
        own = self.pool.metrics()
        if self.siblings is None:
            return families(own)
        live, ended = self.siblings()
        return families(merge([own, *live], ended))


def families(metrics: dict[str, Any]) -> Iterator[Any]:
    """The metric families of a `pool.metrics()`-shaped dict."""
    nodes = metrics.get("nodes", {})
    for name, key, text in _PER_KIND:
        family = CounterMetricFamily(f"{PREFIX}_{name}", text, labels=("node", "kind"))
        for node, data in nodes.items():
            for kind, value in data[key].items():
                family.add_metric((node, kind), value)
        yield family
    for name, key, text in _PER_NODE:
        family = CounterMetricFamily(f"{PREFIX}_{name}", text, labels=("node",))
        for node, data in nodes.items():
            family.add_metric((node,), data[key])
        yield family
    latency = HistogramMetricFamily(f"{PREFIX}_command_latency_seconds",
                                    "round trip of answered ESL commands", labels=("node",))
    for node, data in nodes.items():
        hist = data["latency_seconds"]
        buckets = [(floatToGoString(bound), count) for bound, count in hist["buckets"]]
        latency.add_metric((node,), [*buckets, ("+Inf", hist["count"])], hist["sum"])
    yield latency
    jobs = metrics.get("jobs", {})
    if jobs:
        yield GaugeMetricFamily(f"{PREFIX}_jobs_pending", "bgapi jobs waiting for their result",
                                value=jobs.get("pending", 0))
        finished = CounterMetricFamily(f"{PREFIX}_jobs", "bgapi jobs finished, by outcome",
                                       labels=("outcome",))
        for outcome in JOB_OUTCOMES:
            finished.add_metric((outcome,), jobs.get(outcome, 0))
        yield finished
    health = metrics.get("health", {})
    if health:
        up = GaugeMetricFamily(f"{PREFIX}_node_up", "1 when the node has a live command connection",
                               labels=("node",))
        connections = GaugeMetricFamily(f"{PREFIX}_connections", "live command connections",
                                        labels=("node",))
        for node, data in health.items():
            up.add_metric((node,), int(data["connected"]))
            connections.add_metric((node,), data["connections"])
        yield up
        yield connections


# --- several workers: each publishes its figures, a scrape reads the others' -----------------

def _write(path: str, figures: dict[str, Any]) -> None:
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as out:
        json.dump(figures, out)
    os.replace(partial, path)  # a reader sees the old file or the new one, never half of one


def _read(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as found:
            return json.load(found)
    except (OSError, ValueError):
        return None  # ended and renamed meanwhile, or not written yet


class Publisher:
    """Writes this worker's pool figures for the other workers' scrapes."""

    def __init__(self, pool: Any, directory: str) -> None:
        self.pool = pool
        self.directory = directory
        self.path = os.path.join(directory, _LIVE.format(pid=os.getpid()))
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> Publisher:
        self._greenlet = gevent.spawn(self._run)
        return self

    def _run(self) -> None:
        while True:
            self.publish()
            gevent.sleep(PUBLISH_SECONDS)

    def publish(self) -> None:
        try:
            _write(self.path, self.pool.metrics())
        except OSError as exc:
            log.warning("could not write the ESL figures for other workers: %s", exc)

    def stop(self) -> None:
        """Publish a last time: the master keeps the file's counters once this worker ends."""
        if self._greenlet is not None:
            self._greenlet.kill()
            self._greenlet = None
        self.publish()

    def siblings(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The other live workers' figures, and those of ended workers."""
        live = [found for path in glob.glob(os.path.join(self.directory, _LIVE.format(pid="*")))
                if path != self.path and (found := _read(path)) is not None]
        ended = [found for path in glob.glob(os.path.join(self.directory, _ENDED.format(pid="*")))
                 if (found := _read(path)) is not None]
        return live, ended


def worker_ended(directory: str, pid: int) -> None:
    """In the master, once worker ``pid`` has ended: keep its counters, drop its gauges."""
    path = os.path.join(directory, _LIVE.format(pid=pid))
    if os.path.exists(path):
        os.replace(path, os.path.join(directory, _ENDED.format(pid=pid)))
