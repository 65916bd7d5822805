"""What the benchmarks share: the server process, the child-process roles, the run and the
report (a table for people, then one JSON line for machines, SPEC §9). Seeding a database:
`bench/seeding.py`; the load generator: `bench/load.py`.

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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load import Tally, Target, http_request, run_load
from seeding import Seeded, seed

BENCH_DIR = Path(__file__).resolve().parent
FREESWITCH_SECRET = "bench-secret-3c9a"
BARE_PATH = "/bench/bare"
MIN_RATIO_TO_BARE = 0.5
MAX_SCALING = 1.3


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
