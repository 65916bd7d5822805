"""The systemd unit and its environment file example (deploy/)."""
from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest
from serve_process import ESL_BRIDGE

from web.config import Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
INSTALLED = "/opt/esl-bridge/.venv/bin/esl-bridge"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "esl-bridge.service")
    return parser


def test_the_unit_starts_serve_with_workers_after_postgresql_as_an_unprivileged_user() -> None:
    service = unit()
    assert "postgresql.service" in service["Unit"]["After"] and "network-online.target" in service["Unit"]["After"]
    assert service["Service"]["ExecStart"] == f"{INSTALLED} serve"
    assert service["Service"]["Restart"] == "on-failure"
    assert service["Service"]["User"] not in ("", "root")
    assert service["Service"]["EnvironmentFile"] == "/etc/esl-bridge/esl-bridge.env"
    assert "ESL_BRIDGE_WORKERS=" in (DEPLOY / "esl-bridge.env.example").read_text()


def test_a_stop_has_time_for_requests_then_side_effects_before_anything_kills_it() -> None:
    """systemd waits longer than gunicorn's master, which waits for a worker's drain of the
    requests in flight and then its side effects (a write's directory flush and NOTIFY)."""
    from web.server import STOP_GRACE_SECONDS
    from web.workers import STOP_SECONDS, BridgeApplication

    master = BridgeApplication(Settings(workers=2), None).cfg.graceful_timeout
    assert master == STOP_SECONDS >= 2 * STOP_GRACE_SECONDS + 1
    assert int(unit()["Service"]["TimeoutStopSec"]) > master


def test_the_environment_example_names_only_real_settings() -> None:
    known = {f"ESL_BRIDGE_{f.name.upper()}" for f in fields(Settings)}
    named = set(re.findall(r"^#? ?(ESL_BRIDGE_[A-Z_]+)=", (DEPLOY / "esl-bridge.env.example").read_text(), re.M))
    assert named and named <= known, named - known
    values = dict(re.findall(r"^(ESL_BRIDGE_[A-Z_]+)=(.*)$", (DEPLOY / "esl-bridge.env.example").read_text(), re.M))
    Settings.load(environ=values)  # every value given is one the settings accept


def test_systemd_analyze_verify_passes(tmp_path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # The unit names the install path of the docs; here the script is where this venv put it.
    text = (DEPLOY / "esl-bridge.service").read_text().replace(INSTALLED, str(ESL_BRIDGE))
    (tmp_path / "esl-bridge.service").write_text(text)
    result = subprocess.run([analyze, "verify", str(tmp_path / "esl-bridge.service")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
