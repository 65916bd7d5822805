"""Run the suite as N pytest processes at once, each with a share of the tests.

Most tests wait on sockets and timers rather than compute, so several processes on two cores
finish sooner than one. The shares come from pytest-split (``--splits N --group k``), balanced
by the test durations kept in ``tests/durations.json`` (refresh them with ``--store``; a test
missing from the file counts as an average one). Each process runs under gevent's monkey patch,
as ``make test`` always did, and writes to its own log; the logs are printed one after the
other once all have finished, and the exit status is the first failure's.

    python tests/parallel.py -j 3 [pytest arguments...]
    python tests/parallel.py --store          # one process, records every test's duration

With ``ESL_BRIDGE_TEST_DATABASE_URL`` set (one PostgreSQL database for the whole run), the
processes would empty each other's tables: the suite then runs as one process.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DURATIONS = HERE / "durations.json"
PYTEST = [sys.executable, "-m", "gevent.monkey", "--module", "pytest"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-j", "--jobs", type=int, default=3, help="pytest processes (default 3)")
    parser.add_argument("--store", action="store_true",
                        help="run in one process and record the durations for later splits")
    options, pytest_args = parser.parse_known_args()
    if options.store:
        return subprocess.call([*PYTEST, "--store-durations", "--durations-path",
                                str(DURATIONS), "--clean-durations", *pytest_args])
    jobs = options.jobs
    if jobs < 2 or os.environ.get("ESL_BRIDGE_TEST_DATABASE_URL"):
        return subprocess.call([*PYTEST, *pytest_args])
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="esl-bridge-tests-") as logs:
        runs = []
        for group in range(1, jobs + 1):
            log = open(Path(logs) / f"group{group}.log", "w+b")  # noqa: SIM115 (closed below)
            command = [*PYTEST, "--splits", str(jobs), "--group", str(group),
                       "--durations-path", str(DURATIONS), "--splitting-algorithm",
                       "least_duration", *pytest_args]
            runs.append((group, log, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)))
        status = 0
        for group, log, process in runs:
            code = process.wait()
            log.seek(0)
            sys.stdout.write(f"---- tests, group {group} of {jobs} (exit {code})\n")
            sys.stdout.write(log.read().decode(errors="replace"))
            log.close()
            # 5 = no tests collected in this group (a filter left it nothing): not a failure.
            if code not in (0, 5) and status == 0:
                status = code
    sys.stdout.write(f"---- {jobs} groups, {time.monotonic() - started:.1f} s, "
                     f"{'passed' if status == 0 else 'FAILED'}\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
