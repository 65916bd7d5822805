"""The load generator: raw keep-alive HTTP/1.1 over gevent sockets (no patching needed here),
the requests it sends (`Target`) and what it counts (`Tally`)."""
from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
from gevent import socket


def http_request(method: str, path: str, headers: dict[str, str] | None = None,
                 body: bytes = b"") -> bytes:
    """The bytes of one HTTP/1.1 request (keep-alive is HTTP/1.1's default)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    """One keep-alive connection: send a request, read its whole response."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            self._fill()
        return self._take(end + 2)[:-2]

    def request(self, raw: bytes) -> tuple[int, bytes]:
        self.sock.sendall(raw)
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        head = self._take(end + 4)
        lines = head[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"connection", b"").lower() == b"close":
            raise ConnectionError("the server does not keep the connection alive")
        if b"content-length" in headers:
            return status, self._take(int(headers[b"content-length"]))
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            body = b""
            while size := int(self._line().split(b";")[0], 16):
                body += self._take(size)
                self._take(2)
            self._line()
            return status, body
        raise ConnectionError("a response without length on a keep-alive connection")


def call(port: int, raw: bytes) -> tuple[int, bytes]:
    conn = Connection(port)
    try:
        return conn.request(raw)
    finally:
        conn.close()


def auth_token(port: int, api_key: str) -> str:
    """A token for an account, asked for over HTTP (`PUT /v2/api_auth`) like any client does."""
    body = json.dumps({"data": {"api_key": api_key}}).encode()
    status, answer = call(port, http_request("PUT", "/v2/api_auth",
                                             {"Content-Type": "application/json"}, body))
    if status != 201:
        raise RuntimeError(f"api_auth answered {status}: {answer[:200]!r}")
    return json.loads(answer)["auth_token"]


Check = Callable[[int, bytes], bool]


@dataclass
class Target:
    """One thing to measure: a pool of prepared requests sent in random order."""

    name: str
    label: str
    requests: list[bytes]
    check: Check
    baseline: bool = False  # shown for comparison, not held to the targets


@dataclass
class Tally:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    cpu_seconds: float | None = 0.0  # of the server, None where it cannot be read
    latencies: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else 0.0

    def summary(self) -> dict[str, Any]:
        return {"rps": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
                "p50_ms": round(self.percentile(0.50) * 1000, 3),
                "p99_ms": round(self.percentile(0.99) * 1000, 3),
                "cpu_us_per_request": (round(self.cpu_seconds / self.requests * 1e6, 1)
                                       if self.cpu_seconds is not None and self.requests else None),
                "requests": self.requests, "errors": self.errors}


def run_load(port: int, target: Target, seconds: float, concurrency: int,
             tally: Tally | None = None) -> Tally:
    """`concurrency` connections sending `target`'s requests back to back for `seconds`."""
    tally = tally if tally is not None else Tally()
    conns = [Connection(port) for _ in range(concurrency)]
    pool, check = target.requests, target.check
    failures: list[str] = []

    def worker(conn: Connection, seed: int, deadline: float) -> None:
        rng = random.Random(seed)
        n = len(pool)
        while time.perf_counter() < deadline:
            raw = pool[rng.randrange(n)]
            t0 = time.perf_counter()
            status, body = conn.request(raw)
            tally.latencies.append(time.perf_counter() - t0)
            tally.requests += 1
            if not check(status, body):
                tally.errors += 1
                if len(failures) < 3:
                    failures.append(f"{status} {body[:200]!r}")

    started = time.perf_counter()
    greenlets = [gevent.spawn(worker, conn, k, started + seconds) for k, conn in enumerate(conns)]
    gevent.joinall(greenlets, raise_error=True)
    tally.seconds += time.perf_counter() - started
    for conn in conns:
        conn.close()
    if failures:
        raise RuntimeError(f"{target.name}: unexpected answers, e.g. {failures}")
    return tally


