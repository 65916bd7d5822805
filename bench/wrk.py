"""Load through ``wrk`` (a load generator written in C) when it is installed.

On a two-core machine the load generator shares the cores with the servers it measures: ours,
in Python, costs about a quarter of what a request costs the server, which is enough to hide
what a second worker process gains. wrk sends the same requests (the raw bytes of a ``Target``,
in turn, from a Lua script) for a small fraction of that.

    wrk_available()                          # wrk on PATH?
    run_wrk(port, target, seconds, connections) -> WrkResult
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from load import Target

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(raw: bytes) -> str:
    text = raw.decode("ascii")
    return '"' + (text.replace("\\", "\\\\").replace('"', '\\"')
                  .replace("\r", "\\r").replace("\n", "\\n")) + '"'


def _script(target: Target) -> str:
    requests = ",\n  ".join(_lua_string(raw) for raw in target.requests)
    # Each connection starts at its own place in the list, then takes the requests in turn.
    return (f"local requests = {{\n  {requests}\n}}\n"
            "local i = 0\n"
            "init = function(args) i = math.random(#requests) end\n"
            "request = function()\n"
            "  i = i % #requests + 1\n"
            "  return requests[i]\n"
            "end\n")


def _milliseconds(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if found is None:
        raise RuntimeError(f"cannot read wrk's latency {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def run_wrk(port: int, target: Target, seconds: float, connections: int) -> WrkResult:
    """``connections`` keep-alive connections on one wrk thread for ``seconds`` (whole seconds:
    wrk takes no fraction); every answer must be 2xx (``RuntimeError`` otherwise)."""
    whole = max(1, round(seconds))
    with tempfile.TemporaryDirectory(prefix="esl-bridge-wrk-") as folder:
        script = Path(folder) / "requests.lua"
        script.write_text(_script(target))
        output = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{whole}s", "--latency", "-s", str(script),
             f"http://127.0.0.1:{port}/"],
            check=True, capture_output=True, text=True, timeout=whole + 30).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"{target.name}: wrk saw failed answers:\n{output}")
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", output)
    # The lines of "Latency Distribution" (not a "+/- Stdev" figure ending in 50.00%).
    p50 = re.search(r"^\s+50%\s+(\S+)$", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)$", output, re.M)
    if not (done and p50 and p99):
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    elapsed = float(done.group(2)) / (1000 if done.group(3) == "ms" else 1)
    return WrkResult(int(done.group(1)), elapsed, _milliseconds(p50.group(1)),
                     _milliseconds(p99.group(1)))
