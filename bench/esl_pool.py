"""Round trips per second through the ESL pool against one shared greenswitch connection.

The baseline is what a user would write by hand: one greenswitch ``InboundESL`` shared by every
caller. Both run, in this one process, 1, 4 and 16 concurrent callers through two workloads:
only fast commands (``api status``), and the same with one command in twenty slow
(``api msleep 50``, which FreeSWITCH runs on the connection's own thread, holding it).

By default the test FreeSWITCH (``tests/fake_freeswitch.py``) runs in a child process, as a real
one would; ``--freeswitch host:port:password`` measures a real FreeSWITCH instead. Prints a table,
then, as the very last line, one JSON object with the figures and the ratios (pool rate divided
by shared-connection rate), including ``fast_ratio_16`` and ``slow_ratio_16``.
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

from esl_bridge import EslPool, Node  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CALLERS = (1, 4, 16)
WORKLOADS = ("fast", "slow")


def command_for(workload: str, counter: itertools.count) -> str:
    """``status``, or one time in twenty ``msleep 50`` in the slow workload."""
    if workload == "slow" and next(counter) % 20 == 0:
        return "msleep 50"
    return "status"


def run_callers(callers: int, seconds: float, call: Callable[[str], object], workload: str
                ) -> float:
    """Round trips per second of ``callers`` greenlets calling ``call(cmd)`` for ``seconds``."""
    counter = itertools.count()
    done = [0]
    deadline = time.monotonic() + seconds

    def caller() -> None:
        while time.monotonic() < deadline:
            call(command_for(workload, counter))
            done[0] += 1

    started = time.monotonic()
    gevent.joinall([gevent.spawn(caller) for _ in range(callers)], raise_error=True)
    return done[0] / (time.monotonic() - started)


def measure_cell(node: Node, callers: int, seconds: float, workload: str, pool_size: int,
                 rounds: int) -> tuple[float, float]:
    """Median rates of the pool and of one shared greenswitch connection for one cell.

    Both are set up once and measured in alternating rounds (pool, shared, pool, ...), so that
    a neighbour's load on the machine falls on both alike.
    """
    pool = EslPool([node], pool_size=pool_size, command_timeout=10.0).start()
    shared = InboundESL(node.host, node.port, node.password, timeout=10)
    try:
        if not pool.wait_connected(10.0):
            raise SystemExit(f"the pool could not connect to {node.name}: {pool.health()}")
        shared.connect()

        def through_pool(cmd: str) -> object:
            return pool.api(cmd)

        def through_shared(cmd: str) -> object:
            return shared.send(f"api {cmd}")

        for call in (through_pool, through_shared):  # warm up
            run_callers(callers, min(0.2, seconds), call, workload)
        pool_rates, shared_rates = [], []
        for _ in range(rounds):
            pool_rates.append(run_callers(callers, seconds / rounds, through_pool, workload))
            shared_rates.append(run_callers(callers, seconds / rounds, through_shared, workload))
        return statistics.median(pool_rates), statistics.median(shared_rates)
    finally:
        pool.stop()
        shared.stop()


def start_fake() -> tuple[subprocess.Popen, str]:
    """The test FreeSWITCH in a child process; returns it and its ``host:port:password``."""
    child = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_freeswitch.py")],
                             stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline().strip()
    if not line:
        child.kill()
        raise SystemExit("the test FreeSWITCH did not start")
    return child, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--freeswitch", help="host:port:password of a real FreeSWITCH")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement (default 2)")
    parser.add_argument("--pool-size", type=int, default=4,
                        help="command connections per node (default 4, the service's default)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating pool/shared rounds per cell, median kept (default 3)")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    child = None
    if options.freeswitch:
        spec, target = options.freeswitch, "freeswitch"
    else:
        child, spec = start_fake()
        target = "test FreeSWITCH (child process)"
    node = Node.parse(spec)
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        for workload in WORKLOADS:
            for callers in CALLERS:
                pool_rate, shared_rate = measure_cell(node, callers, options.seconds, workload,
                                                      options.pool_size, options.rounds)
                results.setdefault(workload, {})[str(callers)] = {
                    "pool": round(pool_rate, 1), "shared": round(shared_rate, 1),
                    "ratio": round(pool_rate / shared_rate, 2) if shared_rate else 0.0}
    finally:
        if child is not None:
            child.terminate()
            child.wait(timeout=10)

    print(f"ESL round trips per second against {target}, {options.seconds:g} s per cell "
          f"and side ({options.rounds} alternating rounds, median), pool_size={options.pool_size}")
    print(f"{'workload':<10}{'callers':>8}{'pool/s':>12}{'shared/s':>12}{'ratio':>8}")
    for workload in WORKLOADS:
        for callers in CALLERS:
            row = results[workload][str(callers)]
            print(f"{workload:<10}{callers:>8}{row['pool']:>12.1f}{row['shared']:>12.1f}"
                  f"{row['ratio']:>7.2f}x")
    summary = {
        "bench": "esl_pool",
        "target": "freeswitch" if options.freeswitch else "fake",
        "seconds": options.seconds,
        "rounds": options.rounds,
        "pool_size": options.pool_size,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "results": results,
        "fast_ratio_16": results["fast"]["16"]["ratio"],
        "slow_ratio_16": results["slow"]["16"]["ratio"],
    }
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
