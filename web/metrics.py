"""`/metrics` (SPEC §8) through prometheus_client: counters and histograms of the HTTP side,
and the ESL pool's figures read from `pool.metrics()` at scrape time (`web.pool_metrics`).

With several worker processes (`esl-bridge serve --workers N`) the master points
`PROMETHEUS_MULTIPROC_DIR` at a directory before any worker starts: prometheus_client then keeps
each worker's HTTP figures in a file there and a scrape, whichever worker answers it, adds up
every worker's, those of workers that have ended included (counters never go back).
"""
from __future__ import annotations

import os
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from esl_bridge.metrics import BUCKETS  # one latency scale for HTTP and ESL
from web.pool_metrics import PoolCollector, Siblings

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

# `_created` series say when a label set was first seen: noise for every endpoint and status,
# and absent in multiprocess mode; the figures look the same with one worker or several.
prometheus_client.disable_created_metrics()

#: Methods counted under their own name. A client may send any token as its method: each counted
#: under its own name would add series without end (memory, scrape size) from requests that need
#: no token, so any other is counted as "other".
COUNTED_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def multiprocess_dir() -> str | None:
    """The directory of prometheus_client's multiprocess mode, when this process uses it."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return path if path and os.path.isdir(path) else None


class Metrics:
    """The HTTP figures of this process, and the registry a scrape renders."""

    def __init__(self) -> None:
        shared = multiprocess_dir()
        # In multiprocess mode the figures go to per-process files, read back by the collector:
        # registering the live objects as well would count this worker twice.
        own = None if shared else CollectorRegistry(auto_describe=True)
        self.requests = Counter("esl_bridge_http_requests", "HTTP requests by endpoint, method and status.",
                                ("endpoint", "method", "status"), registry=own)
        self.latency = Histogram("esl_bridge_http_request_seconds",
                                 "HTTP request latency by endpoint and method.",
                                 ("endpoint", "method"), buckets=BUCKETS, registry=own)
        if shared:
            self.registry = CollectorRegistry(auto_describe=True)
            MultiProcessCollector(self.registry, path=shared)
        else:
            self.registry = own  # type: ignore[assignment]
        self._pool_collector: PoolCollector | None = None

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        if method not in COUNTED_METHODS:
            method = "other"
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint, method).observe(seconds)

    def watch_pool(self, pool: Any, siblings: Siblings | None = None) -> None:
        """Add the ESL pool's figures (and other workers' ones, from ``siblings``) to scrapes."""
        if self._pool_collector is None and pool is not None:
            self._pool_collector = PoolCollector(pool, siblings)
            self.registry.register(self._pool_collector)

    def render(self) -> bytes:
        """Every figure in the Prometheus text format."""
        return generate_latest(self.registry)
