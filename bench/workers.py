"""Worker processes benchmark: `GET /devices/{id}` served by `esl-bridge serve --workers 1` and
`--workers 2` in the same run, over SQLite and over PostgreSQL; the target is 2 workers at least
1.6x the requests per second of 1 on a 2-core machine.

    .venv/bin/python bench/workers.py [--devices 1000] [--concurrency 16] [--duration 3]
        [--rounds 8] [--postgresql postgresql://user@host:port/db]

The servers are the real command (a master and its workers, no CPU pinning: the workers need
every core); the load comes from here, on keep-alive connections: from wrk when it is installed
(`apt-get install wrk`; `--load python` forces ours), since our generator in Python costs about a
quarter of what a request costs the server, on the same two cores, and hides what the second
worker gains. A warm-up through ours checks every answer's body first. PostgreSQL is measured
when `--postgresql` (or ESL_BRIDGE_BENCH_POSTGRESQL) names an empty database it may fill.
Prints a table, then (last line) one JSON object with every figure and ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from api import targets
from common import machine
from load import Tally, Target, call, http_request, run_load
from seeding import seed
from wrk import run_wrk, wrk_available

from models import db
from models.schema import create_tables, drop_tables

ESL_BRIDGE = Path(sys.executable).parent / "esl-bridge"
TARGET_RATIO = 1.6
WORKER_COUNTS = (1, 2)


@dataclass
class Served:
    port: int
    process: subprocess.Popen

    def cpu_seconds(self) -> float:
        """CPU time of the master and its workers (those alive now)."""
        total = 0.0
        pids = [self.process.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == self.process.pid:
                    pids.append(int(entry.name))
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def served(url: str, workers: int, workdir: Path) -> Iterator[Served]:
    """`esl-bridge serve --workers N` over `url`, until the block ends (SIGTERM)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESL_BRIDGE_", "PROMETHEUS_"))}
    process = subprocess.Popen(
        [str(ESL_BRIDGE), "serve", "--database-url", url, "--http-port", str(port),
         "--workers", str(workers), "--freeswitch", "127.0.0.1:9:ClueCon", "--log-level", "error"],
        env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"esl-bridge serve ended: {process.communicate()[1][-2000:]}")
            try:
                if call(port, http_request("GET", "/health"))[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("esl-bridge serve did not answer")
            time.sleep(0.1)
        yield Served(port, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _empty(url: str) -> None:
    database = db.open_database(url)
    db.database.initialize(database)
    with database.connection_context():
        drop_tables()
        create_tables()
    database.close_all()


def _load(port: int, target: Target, seconds: float, connections: int, tally: Tally,
          generator: str) -> None:
    """One measure into ``tally``: our generator's latencies, or wrk's two percentiles (the
    worst of the rounds is kept)."""
    if generator == "python":
        run_load(port, target, seconds, connections, tally)
        return
    result = run_wrk(port, target, seconds, connections)
    tally.requests += result.requests
    tally.seconds += result.seconds
    tally.latencies += [result.p50_ms / 1000, result.p99_ms / 1000]


def measure(url: str, args: argparse.Namespace, workdir: Path) -> dict[str, dict[str, float]]:
    """Requests per second of GET device with each worker count, interleaved over rounds."""
    seeded = seed(workdir / "unused.db", args.devices, url)
    with ExitStack() as stack:
        servers = {n: stack.enter_context(served(url, n, workdir)) for n in WORKER_COUNTS}
        loads = {n: next(t for t in targets(s.port, seeded, random.Random(n)) if t.name == "device_get")
                 for n, s in servers.items()}
        for n, server in servers.items():
            # Our generator checks every answer's body; wrk then only their status.
            run_load(server.port, loads[n], args.warmup, args.concurrency)
        tallies = {n: Tally() for n in WORKER_COUNTS}
        cpu = dict.fromkeys(WORKER_COUNTS, 0.0)
        for _ in range(args.rounds):
            for n, server in servers.items():
                before = server.cpu_seconds()
                _load(server.port, loads[n], args.duration, args.concurrency, tallies[n], args.load)
                cpu[n] += server.cpu_seconds() - before
    figures = {}
    for n, tally in tallies.items():
        summary = tally.summary()
        if args.load == "wrk":  # two figures per round: the median and the worst p99 kept
            summary["p50_ms"] = round(sorted(tally.latencies[0::2])[len(tally.latencies) // 4] * 1000, 3)
            summary["p99_ms"] = round(max(tally.latencies[1::2]) * 1000, 3)
        summary["cpu_us_per_request"] = round(cpu[n] / tally.requests * 1e6, 1) if tally.requests else None
        figures[f"workers_{n}"] = summary
    figures["ratio"] = round(figures["workers_2"]["rps"] / figures["workers_1"]["rps"], 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections (16)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measure (3)")
    parser.add_argument("--rounds", type=int, default=8, help="rounds, alternating worker counts (8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="uncounted seconds first (2)")
    parser.add_argument("--postgresql", default=os.environ.get("ESL_BRIDGE_BENCH_POSTGRESQL"),
                        help="an empty PostgreSQL database to measure too")
    parser.add_argument("--load", choices=("wrk", "python"),
                        default="wrk" if wrk_available() else "python",
                        help="load generator: wrk (C; the default when installed) or ours (Python)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="esl-bridge-bench-workers-"))
    results = {}
    try:
        results["sqlite"] = measure(f"sqlite:///{workdir}/bench.db", args, workdir)
        if args.postgresql:
            _empty(args.postgresql)
            results["postgresql"] = measure(args.postgresql, args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    info = {**machine(), "pinned": False}  # the workers need every core
    misses = [f"{db_name}: {item['ratio']}x < {TARGET_RATIO}x" for db_name, item in results.items()
              if item["ratio"] < TARGET_RATIO]
    print(f"esl-bridge workers benchmark: {info['cpus']} CPUs ({info['cpu_model'] or 'unknown'}), "
          f"Python {info['python']}, {args.devices} devices, concurrency {args.concurrency}, "
          f"{args.rounds} rounds x {args.duration:g} s after {args.warmup:g} s warm-up, "
          f"load from {args.load}")
    print()
    print(f"{'database':<11} {'workers':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11} {'x 1 worker':>11}")
    for db_name, item in results.items():
        for n in WORKER_COUNTS:
            row = item[f"workers_{n}"]
            ratio = 1.0 if n == 1 else item["ratio"]
            print(f"{db_name:<11} {n:>7} {row['rps']:>9.1f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                  f"{row['cpu_us_per_request'] or 0:>11.0f} {ratio:>11.2f}")
    print(f"{'':<11} (CPU us/req: the master's and workers' CPU time per request)")
    print()
    print(f"target (2 workers >= {TARGET_RATIO}x 1 worker): {'met' if not misses else 'MISSED: ' + '; '.join(misses)}")
    print(json.dumps({"benchmark": "workers", "machine": info,
                      "settings": {"load": args.load, "devices": args.devices,
                                   "concurrency": args.concurrency,
                                   "rounds": args.rounds, "duration_s": args.duration,
                                   "warmup_s": args.warmup},
                      "results": results,
                      "targets": {"min_ratio": TARGET_RATIO, "met": not misses, "misses": misses}},
                     separators=(",", ":")))


if __name__ == "__main__":
    main()
