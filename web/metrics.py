"""Request counters and latency histograms, rendered with the ESL pool's figures in the
Prometheus text format (SPEC §8)."""
from __future__ import annotations

import bisect
import re
from collections import defaultdict
from typing import Any

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

    def render(self, esl: dict[str, Any] | None = None) -> str:
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
        if esl:
            out.extend(render_esl(esl))
        return "\n".join(out) + "\n"


_NAME_RE = re.compile(r"[^a-zA-Z0-9_]")


def _label_value(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_esl(metrics: dict[str, Any]) -> list[str]:
    """The pool's metrics: numbers become samples, nested dicts become labelled samples."""
    out: list[str] = []
    for key, value in sorted(metrics.items()):
        name = "esl_bridge_esl_" + _NAME_RE.sub("_", key)
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int | float):
            out.append(f"{name} {value}")
        elif isinstance(value, dict):
            for label_value, sample in sorted(value.items(), key=lambda kv: str(kv[0])):
                if isinstance(sample, int | float):
                    out.append(f'{name}{{key="{_label_value(label_value)}"}} {sample}')
                elif isinstance(sample, dict):
                    for sub, number in sorted(sample.items()):
                        if isinstance(number, int | float) and not isinstance(number, bool):
                            out.append(f'{name}_{_NAME_RE.sub("_", str(sub))}'
                                       f'{{key="{_label_value(label_value)}"}} {number}')
    return out
