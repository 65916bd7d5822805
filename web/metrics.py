"""Request counters and latency histograms of the HTTP side in the Prometheus text format
(SPEC §8); the ESL pool renders its own figures (`esl_bridge.render_prometheus`)."""
from __future__ import annotations

import bisect
from collections import defaultdict

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.n += 1


class Metrics:
    """In-process counters of the HTTP side (per endpoint, method and status)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[tuple[str, str], Histogram] = defaultdict(Histogram)

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests[(method, endpoint, status)] += 1
        self.latency[(method, endpoint)].observe(seconds)

    def render(self) -> str:
        out: list[str] = []
        out.append("# HELP esl_bridge_http_requests_total HTTP requests by endpoint, method and status.")
        out.append("# TYPE esl_bridge_http_requests_total counter")
        for (method, endpoint, status), count in sorted(self.requests.items()):
            out.append(f'esl_bridge_http_requests_total{{endpoint="{endpoint}",method="{method}",'
                       f'status="{status}"}} {count}')
        out.append("# HELP esl_bridge_http_request_seconds HTTP request latency by endpoint and method.")
        out.append("# TYPE esl_bridge_http_request_seconds histogram")
        for (method, endpoint), hist in sorted(self.latency.items()):
            labels = f'endpoint="{endpoint}",method="{method}"'
            running = 0
            for bound, count in zip((*BUCKETS, "+Inf"), hist.counts, strict=True):
                running += count
                out.append(f'esl_bridge_http_request_seconds_bucket{{{labels},le="{bound}"}} {running}')
            out.append(f"esl_bridge_http_request_seconds_sum{{{labels}}} {hist.total:.6f}")
            out.append(f"esl_bridge_http_request_seconds_count{{{labels}}} {hist.n}")
        return "\n".join(out) + "\n"
