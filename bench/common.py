"""What the benchmarks share: seeding a database, the server process, the load generator and
the report (a table for people, then one JSON line for machines, SPEC §9).

Each size gets its own server (`bench/server.py`: esl-bridge's `BridgeServer` with a bare
baseline route added) in its own process, pinned to one CPU; the load generator runs here, pinned
to another, over keep-alive HTTP/1.1 connections with a fixed concurrency. After a warm-up that is
not counted, every endpoint is measured in several short rounds, interleaved with the bare route
and with the other sizes, so that a slow spell of the machine falls on all of them alike.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import peewee
from gevent import socket

from models import account as accounts
from models import device as devices
from models import documents as docs
from models import schema
from models import user as users
from models.tables import DeviceRow, DocumentTable, HotdeskRow, UserRow

BENCH_DIR = Path(__file__).resolve().parent
REALM = "acme.test"
FREESWITCH_SECRET = "bench-secret-3c9a"
BARE_PATH = "/bench/bare"
# Every user owns two devices (the first with the next user hotdesked into it), and two more
# devices have no owner: `GET /users/{U}/devices` answers 3 rows at every size.
DEVICES_PER_USER = 4
MIN_RATIO_TO_BARE = 0.5
MAX_SCALING = 1.3


# ---------------------------------------------------------------------------------------------
# Seeding

@dataclass
class Seeded:
    """A seeded database and what the load needs to know about it."""

    url: str
    account_id: str
    api_key: str
    device_ids: list[str]
    sip_usernames: list[str]
    user_ids: list[str]
    seconds: float = 0.0


def _user_input(i: int) -> dict[str, Any]:
    return {"first_name": f"User{i}", "last_name": "Bench", "username": f"user{i}@{REALM}",
            "password": f"pass-{i:06d}", "email": f"user{i}@{REALM}",
            "hotdesk": {"enabled": True, "id": str(100000 + i)}}


def _device_input(d: int, owner: str | None, member: str | None) -> dict[str, Any]:
    mac = f"0004f2{d:06x}"
    doc: dict[str, Any] = {
        "name": f"Desk {d}",
        "mac_address": ":".join(mac[k:k + 2] for k in range(0, 12, 2)),
        "sip": {"username": f"{200000 + d}", "password": f"secret{d:06d}"},
        "caller_id": {"internal": {"name": f"Desk {d}", "number": f"{200000 + d}"}},
    }
    if owner is not None:
        doc["owner_id"] = owner
        doc["presence_id"] = f"{200000 + d}"
    if member is not None:
        doc["hotdesk"] = {"users": {member: {}}}
    return doc


def _row(table: type[DocumentTable], doc: dict[str, Any], now: float,
         **columns: Any) -> dict[str, Any]:
    ident = docs.new_id()
    _, rev_hash = docs.new_revision(doc, 1)
    return {"id": ident, **docs.document_columns(table, ident, doc), "rev_n": 1,
            "rev_hash": rev_hash, "created": now, "modified": now, **columns}


def _user_row(account_id: str, data: dict[str, Any], now: float) -> dict[str, Any]:
    """The row `models.user.create_user` would insert, without its checks (ours are unique by
    construction)."""
    doc, password = users._prepare(data)
    doc = users.with_defaults("user", doc)
    creds = users._credential_columns(doc, password, {}, None)
    doc.pop("password", None)
    return _row(UserRow, doc, now, account_id=account_id, **users._columns(doc), **creds)


def _device_row(account: docs.Document, data: dict[str, Any], now: float) -> dict[str, Any]:
    """The row `models.device.create_device` would insert, without its checks."""
    doc = devices._prepare(account, data, None, merge=False)
    devices._normalise(doc, {})
    return _row(DeviceRow, doc, now, account_id=account.id, **devices._columns(account, doc))


def _same_as_store(made: docs.Document, row: dict[str, Any], table: type[peewee.Model]) -> None:
    """The bulk path builds exactly the row the store built for the same input."""
    stored = table.get_by_id(made.id)
    for name in table._meta.fields:
        if name in ("id", "rev_hash", "created", "modified"):
            continue
        if name == "doc":
            ours, theirs = docs.decode(row["doc"]), made.doc
        elif name == "listing":  # the row's own id inside: compare the rest
            ours = {**docs.decode(row["listing"]), "id": made.id}
            theirs = docs.decode(stored.listing)
        else:
            ours, theirs = row[name], getattr(stored, name)
        if ours != theirs:
            raise RuntimeError(f"seeding builds {table.__name__}.{name} = {ours!r}, "
                               f"the store {theirs!r}")


def _insert(table: type[peewee.Model], rows: list[dict[str, Any]]) -> None:
    per_chunk = max(1, 30000 // (len(rows[0]) if rows else 1))
    for chunk in peewee.chunked(rows, per_chunk):
        table.insert_many(chunk).execute()


def seed(path: Path, n_devices: int, url: str | None = None) -> Seeded:
    """An SQLite database at `path` (or the empty database at `url`) with one account,
    `n_devices` devices and a user per four devices.

    The first user and device of each shape go through the store's own functions; the rest are
    built by the same preparation code and bulk-inserted, and checked to match the store's rows.
    """
    started = time.perf_counter()
    url = url or f"sqlite:///{path}"
    database = schema.connect(url)
    n_users = max(2, n_devices // DEVICES_PER_USER)
    now = time.time()
    try:
        with database.connection_context(), database.atomic():
            account = accounts.create_account({"name": "bench", "realm": REALM})
            made_users = [users.create_user(account.id, _user_input(i)) for i in (0, 1)]
            _same_as_store(made_users[1], _user_row(account.id, _user_input(1), now), UserRow)
            user_rows = [_user_row(account.id, _user_input(i), now) for i in range(2, n_users)]
            _insert(UserRow, user_rows)
            user_ids = [u.id for u in made_users] + [r["id"] for r in user_rows]

            device_ids: list[str] = []
            device_rows: list[dict[str, Any]] = []
            hotdesk_rows: list[dict[str, Any]] = []
            for d in range(n_devices):
                i, shape = divmod(d, DEVICES_PER_USER)
                owner = user_ids[i % n_users] if shape in (0, 1) else None
                member = user_ids[(i + 1) % n_users] if shape == 0 else None
                data = _device_input(d, owner, member)
                if d < 3:  # one of each shape (owned and hotdesked, owned, no owner) by the store
                    made = devices.create_device(account, data)
                    _same_as_store(made, _device_row(account, data, now), DeviceRow)
                    device_ids.append(made.id)
                    continue
                row = _device_row(account, data, now)
                device_rows.append(row)
                device_ids.append(row["id"])
                if member is not None:
                    hotdesk_rows.append({"device_id": row["id"], "user_id": member,
                                         "account_id": account.id})
            _insert(DeviceRow, device_rows)
            _insert(HotdeskRow, hotdesk_rows)
            api_key = accounts.api_key(account)
    finally:
        database.close_all()
    return Seeded(url=url, account_id=account.id, api_key=api_key, device_ids=device_ids,
                  sip_usernames=[f"{200000 + d}" for d in range(n_devices)],
                  user_ids=user_ids,
                  seconds=time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------
# The server process

def _pin(pid: int, cpu: int) -> bool:
    """Keep `pid` on one CPU (when there are two or more), so server and load do not share."""
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return False
    os.sched_setaffinity(pid, {cpu})
    return True


pin = _pin


# ---------------------------------------------------------------------------------------------
# Roles: a benchmark script run again as a child process, spoken to by lines of JSON


def reply(payload: Any) -> None:
    """Answer the driver (in a role): one line of JSON on stdout."""
    sys.stdout.write(json.dumps(payload, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def orders() -> Iterator[list[str]]:
    """The driver's orders (in a role): lines of stdin as words, read without blocking the
    other greenlets of the process."""
    from gevent.fileobject import FileObjectThread

    stream = FileObjectThread(sys.stdin.buffer, "rb")
    for raw in stream:
        yield raw.decode().split()


class Child:
    """``script`` run again in its own process (a role), spoken to by lines of JSON."""

    def __init__(self, script: str | Path, *args: str, cpu: int | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, str(script), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        if cpu is not None:
            _pin(self.proc.pid, cpu)
        self.hello = self.read()

    def read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.proc.args[2:3]} ended (exit {self.proc.wait()})")
        return json.loads(line)

    def ask(self, *words: object) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(str(w) for w in words) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            self.proc.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


@dataclass
class Server:
    port: int
    pid: int

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server process has used, where /proc tells."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server_process(url: str) -> Iterator[Server]:
    """Run `bench/server.py` over the database at `url`."""
    proc = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "server.py"), "--database-url", url,
         "--freeswitch-secret", FREESWITCH_SECRET],
        stdout=subprocess.PIPE, text=True)
    try:
        _pin(proc.pid, 0)
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            raise RuntimeError(f"the server process ended before listening (exit {proc.wait()})")
        yield Server(json.loads(line)["port"], proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------
# The load generator: raw keep-alive HTTP/1.1 over gevent sockets (no patching needed here)

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


# ---------------------------------------------------------------------------------------------
# The run and the report

@dataclass
class Options:
    sizes: list[int]
    concurrency: int
    duration: float
    rounds: int
    warmup: float


def options(description: str) -> Options:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sizes", default="1000,100000",
                        help="device counts to seed, comma-separated (default 1000,100000)")
    parser.add_argument("--concurrency", type=int, default=8, help="keep-alive connections (8)")
    parser.add_argument("--duration", type=float, default=2.0,
                        help="seconds per endpoint per round (2)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds, interleaving endpoints and sizes (5)")
    parser.add_argument("--warmup", type=float, default=1.5,
                        help="seconds of uncounted load per endpoint first (1.5)")
    args = parser.parse_args()
    return Options(sizes=[int(s) for s in args.sizes.split(",")], concurrency=args.concurrency,
                   duration=args.duration, rounds=args.rounds, warmup=args.warmup)


def bare_target() -> Target:
    return Target("bare", "bare Flask route", [http_request("GET", BARE_PATH)],
                  lambda status, body: status == 200 and b'"ok":true' in body, baseline=True)


def measure(runs: dict[str, tuple[Server, list[Target]]],
            opts: Options) -> dict[str, dict[str, dict[str, Any]]]:
    """Warm every target of every size up, then measure them round-robin, the sizes
    interleaved too (so a slow spell of the machine falls on all of them); the figures of each
    size with ratios to its bare route."""
    for server, targets in runs.values():
        for target in targets:
            run_load(server.port, target, opts.warmup, opts.concurrency)
    tallies = {size: {t.name: Tally() for t in targets} for size, (_, targets) in runs.items()}
    for _ in range(opts.rounds):
        for size, (server, targets) in runs.items():
            for target in targets:
                tally = tallies[size][target.name]
                cpu_before = server.cpu_seconds()
                run_load(server.port, target, opts.duration, opts.concurrency, tally)
                cpu_after = server.cpu_seconds()
                if cpu_before is None or cpu_after is None or tally.cpu_seconds is None:
                    tally.cpu_seconds = None
                else:
                    tally.cpu_seconds += cpu_after - cpu_before
    results = {}
    for size, by_target in tallies.items():
        figures = {name: tally.summary() for name, tally in by_target.items()}
        bare_rps = figures["bare"]["rps"]
        for item in figures.values():
            item["ratio_to_bare"] = round(item["rps"] / bare_rps, 3) if bare_rps else 0.0
        results[size] = figures
    return results


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "pinned": (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")}


def run(name: str, opts: Options,
        make_targets: Callable[[int, Seeded, random.Random], list[Target]]) -> None:
    """Seed each size, start a server on each, measure the targets against bare, report."""
    labels: dict[str, str] = {}
    baselines: set[str] = set()
    seeding: dict[str, float] = {}
    workdir = Path(tempfile.mkdtemp(prefix=f"esl-bridge-bench-{name}-"))
    own_cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        seeded = {}
        for size in opts.sizes:
            seeded[size] = seed(workdir / f"{size}.db", size)
            seeding[str(size)] = round(seeded[size].seconds, 1)
            print(f"# seeded {size} devices and {len(seeded[size].user_ids)} users in "
                  f"{seeded[size].seconds:.1f} s", file=sys.stderr, flush=True)
        with ExitStack() as stack:
            runs = {}
            for size in opts.sizes:
                server = stack.enter_context(server_process(seeded[size].url))
                targets = [bare_target(),
                           *make_targets(server.port, seeded[size], random.Random(size))]
                labels.update({t.name: t.label for t in targets})
                baselines.update(t.name for t in targets if t.baseline)
                runs[str(size)] = (server, targets)
            _pin(0, 1)
            results = measure(runs, opts)
    finally:
        if own_cpus is not None:
            os.sched_setaffinity(0, own_cpus)
        shutil.rmtree(workdir, ignore_errors=True)
    report(name, opts, results, labels, seeding, baselines)


def _scaling(results: dict[str, dict[str, dict[str, Any]]], sizes: list[int]) -> dict[str, Any]:
    if len(sizes) < 2:
        return {}
    small, large = str(min(sizes)), str(max(sizes))
    out = {}
    for target, figures in results[small].items():
        big = results[large][target]
        out[target] = {
            "rps_small_over_large": round(figures["rps"] / big["rps"], 3) if big["rps"] else None,
            "p99_large_over_small": round(big["p99_ms"] / figures["p99_ms"], 3) if figures["p99_ms"] else None,
        }
    return out


def _misses(results: dict[str, dict[str, dict[str, Any]]], scaling: dict[str, Any],
            baselines: set[str]) -> list[str]:
    misses = []
    for size, figures in results.items():
        for target, item in figures.items():
            if target not in baselines and item["ratio_to_bare"] < MIN_RATIO_TO_BARE:
                misses.append(f"{target} at {size}: {item['ratio_to_bare']}x bare < {MIN_RATIO_TO_BARE}")
    for target, item in scaling.items():
        if target in baselines:
            continue
        for key in ("rps_small_over_large", "p99_large_over_small"):
            if item[key] is not None and item[key] > MAX_SCALING:
                misses.append(f"{target} {key} {item[key]} > {MAX_SCALING}")
    return misses


def report(name: str, opts: Options, results: dict[str, dict[str, dict[str, Any]]],
           labels: dict[str, str], seeding: dict[str, float], baselines: set[str]) -> None:
    info = machine()
    scaling = _scaling(results, opts.sizes)
    misses = _misses(results, scaling, baselines)
    print(f"esl-bridge {name} benchmark: {info['cpus']} CPUs ({info['cpu_model'] or 'unknown'}), "
          f"Python {info['python']}, concurrency {opts.concurrency}, {opts.rounds} rounds x "
          f"{opts.duration:g} s per endpoint after {opts.warmup:g} s warm-up")
    print()
    print(f"{'devices':>8}  {'endpoint':<44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x bare':>7}"
          f" {'CPU us/req':>11}")
    for size, figures in results.items():
        for target, item in figures.items():
            cpu = item["cpu_us_per_request"]
            print(f"{int(size):>8}  {labels[target]:<44} {item['rps']:>9.1f} {item['p50_ms']:>8.2f} "
                  f"{item['p99_ms']:>8.2f} {item['ratio_to_bare']:>7.2f} "
                  f"{'-' if cpu is None else format(cpu, '.0f'):>11}")
    print(f"{'':>8}  (CPU us/req: the server process's CPU time per request)")
    if scaling:
        small, large = min(opts.sizes), max(opts.sizes)
        print()
        print(f"{'':>8}  {'scaling ' + format(small, ',') + ' -> ' + format(large, ',') + ' devices':<44} "
              f"{'req/s small/large':>18} {'p99 large/small':>17}")
        for target, item in scaling.items():
            print(f"{'':>8}  {labels[target]:<44} {item['rps_small_over_large']:>18.2f} "
                  f"{item['p99_large_over_small']:>17.2f}")
    print()
    scope = (f", {max(opts.sizes):,} within {MAX_SCALING}x of {min(opts.sizes):,}"
             if len(opts.sizes) > 1 else "")
    print(f"targets (each >= {MIN_RATIO_TO_BARE}x bare{scope}): "
          f"{'met' if not misses else 'MISSED: ' + '; '.join(misses)}")
    print(json.dumps({
        "benchmark": name,
        "machine": info,
        "settings": {"concurrency": opts.concurrency, "rounds": opts.rounds,
                     "duration_s": opts.duration, "warmup_s": opts.warmup},
        "seeding_s": seeding,
        "results": results,
        "scaling": scaling,
        "targets": {"min_ratio_to_bare": MIN_RATIO_TO_BARE, "max_scaling": MAX_SCALING,
                    "baselines": sorted(baselines), "met": not misses, "misses": misses},
    }, separators=(",", ":")))
