"""`esl-bridge serve` as a real process (a master and its workers) for tests: start it on a free
port, find its workers, reach one worker on purpose (a keep-alive connection stays with the worker
that accepted it), stop it."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ESL_BRIDGE = Path(sys.executable).parent / "esl-bridge"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith("ESL_BRIDGE_") and k != "PROMETHEUS_MULTIPROC_DIR"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> set[int]:
    """The live child processes of ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


@dataclass
class Serve:
    """One `esl-bridge serve` process: ``url``, ``process``, and its stderr once stopped."""

    process: subprocess.Popen
    port: int
    workers: int
    err: str = ""
    sessions: dict[int, requests.Session] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> set[int]:
        return children(self.process.pid)

    def wait_up(self, timeout: float = 30.0) -> None:
        """Until the master has ``workers`` workers and one of them answers /health."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"esl-bridge serve ended: {self.process.communicate()[1][-3000:]}")
            try:
                if (len(self.worker_pids()) == self.workers
                        and requests.get(f"{self.url}/health", timeout=2).status_code == 200):
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"esl-bridge serve did not answer on {self.url}")

    def session_of(self, pid: int | None = None, *, tries: int = 200) -> tuple[int, requests.Session]:
        """A keep-alive session held by one worker (``pid``, or any worker not yet held)."""
        for _ in range(tries):
            session = requests.Session()
            got = session.get(f"{self.url}/health", timeout=10).json()["data"]["worker"]["pid"]
            if (pid is None and got not in self.sessions) or got == pid:
                self.sessions[got] = session
                return got, session
            session.close()
        raise AssertionError(f"no connection reached worker {pid or 'not yet seen'}")

    def per_worker(self) -> dict[int, requests.Session]:
        """A session held by each worker."""
        for pid in list(self.sessions):
            if pid not in self.worker_pids():
                self.sessions.pop(pid).close()
        while len(self.sessions) < self.workers:
            self.session_of()
        return self.sessions

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        for session in self.sessions.values():
            session.close()
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            _, self.err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, self.err = self.process.communicate()
            raise AssertionError(f"esl-bridge serve ignored signal {signum}: {self.err[-3000:]}") from None
        return self.process.returncode


def serve(database_url: str, *flags: str, workers: int = 2, cwd: Path,
          preexec_fn: Any = None) -> Serve:
    """Start `esl-bridge serve --workers N` over ``database_url`` and wait until it answers."""
    port = free_port()
    argv = [str(ESL_BRIDGE), "serve", "--database-url", database_url, "--http-port", str(port),
            "--workers", str(workers), "--log-level", "warning", *flags]
    if "--freeswitch" not in flags:
        argv += ["--freeswitch", "127.0.0.1:9:ClueCon"]  # nothing there: documents are served
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=clean_env(), cwd=cwd, preexec_fn=preexec_fn)
    started = Serve(process, port, workers)
    try:
        started.wait_up()
    except BaseException:
        started.stop(signal.SIGKILL)
        raise
    return started
