"""Round trips per second through the ESL pool against one shared greenswitch connection.

The baseline is what a user would write by hand: one greenswitch ``InboundESL`` shared by every
caller. The ceiling is a hand-written pipelined client without any library
(``bench/raw_pipelined.py``: 4 connections, calls handed to them in turn, so 16 callers keep 4
commands in flight on each). All three run, in this one process, 1, 4 and 16 concurrent callers
through two workloads: only fast commands (``api status``), and the same with one command in
twenty slow (``api msleep 50``, which FreeSWITCH runs on the connection's own thread, holding
it).

By default the test FreeSWITCH (``tests/fake_freeswitch``) runs in a child process, as a real
one would; ``--freeswitch host:port:password`` measures a real FreeSWITCH instead. Prints a table,
then, as the very last line, one JSON object with the figures and the ratios (pool rate divided
by shared-connection rate, and by the raw ceiling's), including ``fast_ratio_16``,
``slow_ratio_16`` and ``fast_ceiling_ratio_16``. Targets: ``fast_ratio_16 >= 1.0``,
``slow_ratio_16 >= 5`` and ``fast_ceiling_ratio_16 >= 0.7``.

Each cell also reports the CPU time per round trip of this process (``client``) and, when the
test FreeSWITCH is our child, of that process (``freeswitch``): on a machine with one core for
each, the slower side sets the rate; on a loaded machine, their sum does.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
from greenswitch.esl import InboundESL  # noqa: E402

from esl_bridge import PIPELINE_DEPTH, EslPool, Node  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from raw_pipelined import RawPipelined  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CALLERS = (1, 4, 16)
WORKLOADS = ("fast", "slow")
SIDES = ("pool", "shared", "raw")
RAW_CONNECTIONS = 4
TARGETS = {"fast_ratio_16": 1.0, "slow_ratio_16": 5.0, "fast_ceiling_ratio_16": 0.7}


def command_for(workload: str, counter: itertools.count) -> str:
    """``status``, or one time in twenty ``msleep 50`` in the slow workload."""
    if workload == "slow" and next(counter) % 20 == 0:
        return "msleep 50"
    return "status"


def cpu_seconds(pids: list[int] | None) -> float | None:
    """CPU time (user + system) used so far by the processes ``pids`` (Linux ``/proc``), or
    None."""
    if not pids:
        return None
    total = 0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None
    return total / os.sysconf("SC_CLK_TCK")


def run_callers(callers: int, seconds: float, call: Callable[[str], object], workload: str,
                server_pids: list[int] | None = None) -> tuple[float, float, float | None]:
    """``callers`` greenlets calling ``call(cmd)`` for ``seconds``.

    Returns round trips per second and the CPU microseconds per round trip of this process and
    of the processes ``server_pids`` together (None when unknown).
    """
    counter = itertools.count()
    done = [0]
    deadline = time.monotonic() + seconds

    def caller() -> None:
        while time.monotonic() < deadline:
            call(command_for(workload, counter))
            done[0] += 1

    server_before = cpu_seconds(server_pids)
    client_before = time.process_time()
    started = time.monotonic()
    gevent.joinall([gevent.spawn(caller) for _ in range(callers)], raise_error=True)
    elapsed = time.monotonic() - started
    client = time.process_time() - client_before
    server_after = cpu_seconds(server_pids)
    trips = max(done[0], 1)
    server = None
    # /proc counts in clock ticks (10 ms): below 5 of them the figure is noise (slow workload)
    if (server_before is not None and server_after is not None
            and server_after - server_before >= 5 / os.sysconf("SC_CLK_TCK")):
        server = 1e6 * (server_after - server_before) / trips
    return done[0] / elapsed, 1e6 * client / trips, server


def measure_cell(node: Node, callers: int, seconds: float, workload: str, pool_size: int,
                 rounds: int, server_pids: list[int] | None = None,
                 pipeline_depth: int = PIPELINE_DEPTH) -> dict[str, dict[str, float | None]]:
    """Median rates (and CPU per round trip) of the pool, of one shared greenswitch connection
    and of the raw pipelined client for one cell:
    ``{"pool": {"rate", "client_us", "freeswitch_us"}, "shared": ..., "raw": ...}``.

    All are set up once and measured in alternating rounds (pool, shared, raw, pool, ...), so
    that a neighbour's load on the machine falls on each alike.
    """
    pool = EslPool([node], pool_size=pool_size, command_timeout=10.0,
                   pipeline_depth=pipeline_depth).start()
    shared = InboundESL(node.host, node.port, node.password, timeout=10)
    raw = None
    try:
        if not pool.wait_connected(10.0):
            raise SystemExit(f"the pool could not connect to {node.name}: {pool.health()}")
        shared.connect()
        raw = RawPipelined(node.host, node.port, node.password, RAW_CONNECTIONS)

        def through_pool(cmd: str) -> object:
            return pool.api(cmd)

        def through_shared(cmd: str) -> object:
            return shared.send(f"api {cmd}")

        sides = {"pool": through_pool, "shared": through_shared, "raw": raw.api}
        for call in sides.values():  # warm up
            run_callers(callers, min(0.2, seconds), call, workload)
        samples: dict[str, list[tuple[float, float, float | None]]] = {side: [] for side in sides}
        for _ in range(rounds):
            for side, call in sides.items():
                samples[side].append(
                    run_callers(callers, seconds / rounds, call, workload, server_pids))
        cell: dict[str, dict[str, float | None]] = {}
        for side, runs in samples.items():
            server = [s for _, _, s in runs if s is not None]
            cell[side] = {"rate": statistics.median(r for r, _, _ in runs),
                          "client_us": statistics.median(c for _, c, _ in runs),
                          "freeswitch_us": statistics.median(server) if server else None}
        return cell
    finally:
        pool.stop()
        shared.stop()
        if raw is not None:
            raw.close()


def start_fake(workers: int = 1) -> tuple[subprocess.Popen, str, list[int]]:
    """The test FreeSWITCH in a child process (``workers`` processes accepting on one socket);
    returns it, its ``host:port:password`` and the process ids of its workers."""
    child = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_freeswitch"),
                              "--workers", str(workers)], stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline().split()
    if not line:
        child.kill()
        raise SystemExit("the test FreeSWITCH did not start")
    return child, line[0], [int(pid) for pid in line[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--freeswitch", help="host:port:password of a real FreeSWITCH")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement (default 2)")
    parser.add_argument("--pool-size", type=int, default=4,
                        help="command connections per node (default 4, the service's default)")
    parser.add_argument("--pipeline-depth", type=int, default=PIPELINE_DEPTH,
                        help=f"commands in flight per pool connection (default {PIPELINE_DEPTH}, "
                             "the service's default)")
    parser.add_argument("--fake-workers", type=int, default=1,
                        help="processes of the test FreeSWITCH, each serving whole connections, "
                             "as FreeSWITCH's thread per connection (default 1)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating pool/shared rounds per cell, median kept (default 3)")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    child, server_pids = None, None
    if options.freeswitch:
        spec, target = options.freeswitch, "freeswitch"
    else:
        child, spec, server_pids = start_fake(options.fake_workers)
        target = (f"test FreeSWITCH ({options.fake_workers} worker processes)"
                  if options.fake_workers > 1 else "test FreeSWITCH (child process)")
    node = Node.parse(spec)
    results: dict[str, dict[str, dict[str, object]]] = {}

    def us(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    try:
        for workload in WORKLOADS:
            for callers in CALLERS:
                cell = measure_cell(node, callers, options.seconds, workload, options.pool_size,
                                    options.rounds, server_pids, options.pipeline_depth)
                rates = {side: cell[side]["rate"] or 0.0 for side in SIDES}
                results.setdefault(workload, {})[str(callers)] = {
                    **{side: round(rates[side], 1) for side in SIDES},
                    "ratio": round(rates["pool"] / rates["shared"], 2) if rates["shared"] else 0.0,
                    "ceiling_ratio": (round(rates["pool"] / rates["raw"], 2) if rates["raw"]
                                      else 0.0),
                    "cpu_us_per_round_trip": {
                        side: {"client": us(cell[side]["client_us"]),
                               "freeswitch": us(cell[side]["freeswitch_us"])}
                        for side in SIDES}}
    finally:
        if child is not None:
            child.terminate()
            child.wait(timeout=10)

    print(f"ESL round trips per second against {target}, {options.seconds:g} s per cell "
          f"and side ({options.rounds} alternating rounds, median), pool_size="
          f"{options.pool_size}, pipeline_depth={options.pipeline_depth}; raw: "
          f"{RAW_CONNECTIONS} connections, no library")
    print(f"{'workload':<10}{'callers':>8}{'pool/s':>10}{'shared/s':>10}{'raw/s':>10}"
          f"{'/shared':>9}{'/raw':>7}"
          f"   CPU us per round trip, FreeSWITCH + client: pool | shared | raw")

    def cpu(side: dict[str, float | None]) -> str:
        server = "?" if side["freeswitch"] is None else f"{side['freeswitch']:.1f}"
        return f"{server} + {side['client']:.1f}"

    def cpu_columns(workload: str, per_trip: dict[str, dict[str, float | None]]) -> str:
        if workload != "fast":
            return ""  # rates of a few hundred per second: CPU per trip says nothing here
        return "   " + " | ".join(cpu(per_trip[side]) for side in SIDES)

    for workload in WORKLOADS:
        for callers in CALLERS:
            row = results[workload][str(callers)]
            print(f"{workload:<10}{callers:>8}{row['pool']:>10.1f}{row['shared']:>10.1f}"
                  f"{row['raw']:>10.1f}{row['ratio']:>8.2f}x{row['ceiling_ratio']:>6.2f}x"
                  f"{cpu_columns(workload, row['cpu_us_per_round_trip'])}")
    summary = {
        "bench": "esl_pool",
        "target": "freeswitch" if options.freeswitch else "fake",
        "seconds": options.seconds,
        "rounds": options.rounds,
        "pool_size": options.pool_size,
        "pipeline_depth": options.pipeline_depth,
        "raw_connections": RAW_CONNECTIONS,
        "fake_workers": None if options.freeswitch else options.fake_workers,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "results": results,
        "fast_ratio_16": results["fast"]["16"]["ratio"],
        "slow_ratio_16": results["slow"]["16"]["ratio"],
        "fast_ceiling_ratio_16": results["fast"]["16"]["ceiling_ratio"],
    }
    misses = [f"{name} {summary[name]} < {floor}" for name, floor in TARGETS.items()
              if summary[name] < floor]
    summary["targets"] = {"floors": TARGETS, "met": not misses, "misses": misses}
    print(f"targets ({', '.join(f'{n} >= {f:g}' for n, f in TARGETS.items())}): "
          f"{'met' if not misses else 'MISSED: ' + '; '.join(misses)}")
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
