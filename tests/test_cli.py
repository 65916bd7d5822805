"""The command line (SPEC §9): `esl-bridge init`, settings precedence, and `esl-bridge serve` as
a real process (clean SIGTERM, HTTPS with a certificate)."""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from fixtures_web import client_for

from models import account as accounts
from models import db
from models.tables import AccountRow, UserRow
from web import cli
from web.config import Settings

pytestmark = pytest.mark.store

ROOT = Path(__file__).resolve().parent.parent
ESL_BRIDGE = Path(sys.executable).parent / "esl-bridge"


def run_init(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["init", *args])
    out, err = capsys.readouterr()
    return code, out, err


def printed(out: str) -> tuple[str, str]:
    account = re.search(r"^account id:\s*([0-9a-f]{32})$", out, re.M)
    key = re.search(r"^api key:\s*([0-9a-f]{64})$", out, re.M)
    assert account and key, out
    return account.group(1), key.group(1)


def account_count() -> int:
    with db.database.connection_context():
        return AccountRow.select().count()


# --- esl-bridge init ----------------------------------------------------------------------------

def test_init_prints_an_account_id_and_a_working_api_key(database_url, capsys, start_bridge):
    code, out, _ = run_init(capsys, "--database-url", database_url, "--account-name", "first",
                            "--realm", "pbx.example.test", "--admin-username", "root",
                            "--admin-password", "s3cret-pass")
    assert code == 0
    account_id, key = printed(out)
    with db.database.connection_context():
        account = accounts.get_account(account_id)
        assert (account.doc["name"], account.doc["realm"]) == ("first", "pbx.example.test")
        assert accounts.api_key(account) == key
        admin = UserRow.get(UserRow.account_id == account_id)
        assert admin.username_lc == "root"
    assert "s3cret-pass" not in out
    bridge = start_bridge()
    client = client_for(bridge.url, account_id, key, realm="pbx.example.test")
    assert client.get("").json()["data"]["name"] == "first"
    import hashlib

    creds = hashlib.md5(b"root:s3cret-pass").hexdigest()
    response = client.put("/v2/user_auth", {"credentials": creds, "account_name": "first"}, token=None)
    assert response.status_code == 201, response.text
    assert response.json()["data"]["owner_id"] == admin.id


def test_init_without_a_password_prints_a_random_one(database_url, capsys):
    code, out, _ = run_init(capsys, "--database-url", database_url, "--account-name", "a", "--realm", "a.test")
    assert code == 0
    printed(out)
    assert re.search(r"password: \S{12,}", out), out


@pytest.mark.parametrize("name, realm", [("first", "other.test"), ("FIRST", "other.test"),
                                         ("other", "pbx.example.test"), ("other", "PBX.Example.Test")])
def test_init_refuses_an_existing_name_or_realm(database_url, capsys, name, realm):
    assert run_init(capsys, "--database-url", database_url, "--account-name", "first",
                    "--realm", "pbx.example.test")[0] == 0
    code, out, err = run_init(capsys, "--database-url", database_url, "--account-name", name, "--realm", realm)
    assert code != 0
    assert "refusing" in err and "api key" not in out
    assert account_count() == 1


def test_init_refuses_an_invalid_realm(database_url, capsys):
    code, out, err = run_init(capsys, "--database-url", database_url, "--account-name", "x",
                              "--realm", "not a realm")
    assert code != 0 and "realm" in err and "api key" not in out
    assert account_count() == 0


def test_init_if_empty(database_url, capsys):
    code, out, _ = run_init(capsys, "--database-url", database_url, "--account-name", "default",
                            "--realm", "pbx.localhost", "--if-empty")
    assert code == 0
    printed(out)
    for name, realm in (("default", "pbx.localhost"), ("another", "another.test")):
        code, out, err = run_init(capsys, "--database-url", database_url, "--account-name", name,
                                  "--realm", realm, "--if-empty")
        assert code == 0 and "api key" not in out and "refusing" not in err
    assert account_count() == 1


def test_init_creates_the_schema(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/fresh.db"
    code, out, _ = run_init(capsys, "--database-url", url, "--account-name", "a", "--realm", "a.test")
    assert code == 0 and Path(tmp_path / "fresh.db").exists()
    printed(out)


def test_init_through_the_installed_script(tmp_path):
    if not ESL_BRIDGE.exists():
        pytest.skip("the esl-bridge console script is not installed in this environment")
    result = subprocess.run([str(ESL_BRIDGE), "init", "--database-url", f"sqlite:///{tmp_path}/s.db",
                             "--account-name", "a", "--realm", "a.test"],
                            capture_output=True, text=True, timeout=60, env=clean_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed(result.stdout)
    again = subprocess.run([str(ESL_BRIDGE), "init", "--database-url", f"sqlite:///{tmp_path}/s.db",
                            "--account-name", "a", "--realm", "b.test"],
                           capture_output=True, text=True, timeout=60, env=clean_env(), cwd=tmp_path)
    assert again.returncode != 0 and "refusing" in again.stderr


# --- settings: flag over ESL_BRIDGE_* over default, for every setting -------------------------

SETTINGS = [
    # field, default, environment value, parsed, flag value, parsed
    ("database_url", "sqlite:///esl-bridge.db", "sqlite:///env.db", "sqlite:///env.db",
     "postgresql://u:p@h/db", "postgresql://u:p@h/db"),
    ("freeswitch", ("127.0.0.1:8021:ClueCon",), "a:1:x,b:2:y", ("a:1:x", "b:2:y"), "c:3:z", ("c:3:z",)),
    ("bind", "127.0.0.1", "0.0.0.0", "0.0.0.0", "::1", "::1"),
    ("http_port", 8000, "8080", 8080, "9090", 9090),
    ("https_port", 8443, "8444", 8444, "9443", 9443),
    ("tls_cert", None, "/env/cert.pem", "/env/cert.pem", "/flag/cert.pem", "/flag/cert.pem"),
    ("tls_key", None, "/env/key.pem", "/env/key.pem", "/flag/key.pem", "/flag/key.pem"),
    ("pool_size", 4, "8", 8, "2", 2),
    ("pipeline_depth", 4, "8", 8, "1", 1),
    ("command_timeout", 5.0, "2.5", 2.5, "0.5", 0.5),
    ("sofia_profile", ("internal",), "internal,external", ("internal", "external"), "lan", ("lan",)),
    ("freeswitch_secret", None, "env-secret", "env-secret", "flag-secret", "flag-secret"),
    ("freeswitch_allow", (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128")),
     "10.0.0.0/8", (ipaddress.ip_network("10.0.0.0/8"),), "192.168.1.7,fd00::/8",
     (ipaddress.ip_network("192.168.1.7/32"), ipaddress.ip_network("fd00::/8"))),
    ("log_level", "info", "DEBUG", "debug", "warning", "warning"),
    ("workers", 1, "4", 4, "2", 2),
    ("idle_timeout", 15.0, "60", 60.0, "5.5", 5.5),
    ("header_timeout", 10.0, "20", 20.0, "2.5", 2.5),
    ("body_timeout", 30.0, "45", 45.0, "10", 10.0),
    ("max_connections", 1000, "5000", 5000, "64", 64),
    ("cors_origins", ("*",), "https://UI.example.com,http://localhost:3000",
     ("https://ui.example.com", "http://localhost:3000"), "*", ("*",)),
    ("token_cache_seconds", 5.0, "30", 30.0, "0", 0.0),
    ("document_cache_seconds", 5.0, "60", 60.0, "0", 0.0),
]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def env(name: str) -> str:
    return "ESL_BRIDGE_" + name.upper()


@pytest.fixture
def served(monkeypatch):
    """Run `esl-bridge serve ...` in-process up to the point it would serve: its settings."""
    captured: list[Settings] = []
    monkeypatch.setattr(cli, "serve", captured.append)
    for name, *_ in SETTINGS:
        monkeypatch.delenv(env(name), raising=False)

    def run(*argv: str, **environ: str) -> Settings:
        for key, value in environ.items():
            monkeypatch.setenv(key, value)
        assert cli.main(["serve", *argv]) == 0
        return captured.pop()

    return run


@pytest.mark.parametrize("name, default, env_raw, env_value, flag_raw, flag_value", SETTINGS,
                         ids=[s[0] for s in SETTINGS])
def test_setting_precedence(served, name, default, env_raw, env_value, flag_raw, flag_value):
    # A certificate goes with its key (either alone is refused): give the other one.
    partner = {env(other): f"/partner/{other}.pem" for this, other in TLS_PAIR if this == name}
    assert getattr(Settings.load(environ={}), name) == default
    assert getattr(Settings.load(environ={env(name): env_raw, **partner}), name) == env_value
    assert getattr(Settings.load(environ={env(name): env_raw, **partner}, overrides={name: flag_raw}),
                   name) == flag_value
    assert getattr(Settings.load(environ={env(name): ""}), name) == default
    # The same through the command line: the variable, then the flag winning over it.
    assert getattr(served(), name) == default
    assert getattr(served(**{env(name): env_raw}, **partner), name) == env_value
    assert getattr(served(flag(name), flag_raw, **{env(name): env_raw}), name) == flag_value


TLS_PAIR = (("tls_cert", "tls_key"), ("tls_key", "tls_cert"))


def test_every_setting_is_covered():
    from dataclasses import fields

    assert {f.name for f in fields(Settings)} == {s[0] for s in SETTINGS}


@pytest.mark.parametrize("argv", [["--http-port", "eighty"], ["--http-port", "70000"], ["--pool-size", "0"],
                                  ["--pipeline-depth", "0"],
                                  ["--command-timeout", "-1"], ["--freeswitch-allow", "10.0.0.0/33"],
                                  ["--freeswitch", "garbage"], ["--freeswitch", "a:1:x,a:1:y"],
                                  ["--freeswitch", "host:0:pw"], ["--database-url", "mysql://x"],
                                  ["--log-level", "bogus"], ["--tls-cert", "/c.pem"], ["--tls-key", "/k.pem"],
                                  ["--workers", "0"], ["--idle-timeout", "0"], ["--header-timeout", "-1"],
                                  ["--body-timeout", "x"], ["--max-connections", "0"],
                                  ["--cors-origins", "ui.example.com"], ["--token-cache-seconds", "-1"],
                                  ["--token-cache-seconds", "nan"]])
def test_bad_setting_values_are_refused(served, capsys, argv):
    assert cli.main(["serve", *argv]) == 2
    assert argv[0].lstrip("-").replace("-", "_") in capsys.readouterr().err


def test_bad_setting_in_the_environment_is_refused(served, capsys, monkeypatch):
    monkeypatch.setenv("ESL_BRIDGE_POOL_SIZE", "many")
    assert cli.main(["serve"]) == 2
    assert "ESL_BRIDGE_POOL_SIZE" in capsys.readouterr().err


# --- esl-bridge serve as a process ----------------------------------------------------------------

def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ESL_BRIDGE_")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(process: subprocess.Popen, url: str, **kw) -> requests.Response:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        try:
            return requests.get(url, timeout=2, **kw)
        except requests.ConnectionError:
            time.sleep(0.05)
    pytest.fail(f"esl-bridge serve did not answer on {url}")


def stop(process: subprocess.Popen, signum: int = signal.SIGTERM) -> tuple[int, str]:
    process.send_signal(signum)
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"esl-bridge serve ignored SIGTERM: {err[-3000:]}")
    return process.returncode, err


def spawn(*argv: str, cwd: Path) -> subprocess.Popen:
    if not ESL_BRIDGE.exists():
        pytest.skip("the esl-bridge console script is not installed in this environment")
    # Nothing listens on port 9: the pool keeps reconnecting in the background, documents are served.
    return subprocess.Popen([str(ESL_BRIDGE), "serve", "--freeswitch", "127.0.0.1:9:ClueCon",
                             "--log-level", "warning", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=cwd)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_answers_and_stops_cleanly_on_a_signal(database_url, tmp_path, capsys, signum):
    code, out, _ = run_init(capsys, "--database-url", database_url, "--account-name", "a", "--realm", "a.test")
    account_id, key = printed(out)
    port = free_port()
    process = spawn("--database-url", database_url, "--http-port", str(port), cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_until_up(process, f"{base}/health").status_code == 200
        client = client_for(base, account_id, key, realm="a.test")
        assert client.put("devices", {"name": "desk"}).status_code == 201
    finally:
        returncode, err = stop(process, signum)
    assert returncode == 0, err[-3000:]
    assert "Traceback" not in err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_over_https(database_url, tmp_path, workers):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    http_port, https_port = free_port(), free_port()
    process = spawn("--database-url", database_url, "--http-port", str(http_port), "--https-port",
                    str(https_port), "--tls-cert", str(cert), "--tls-key", str(key), "--workers", workers,
                    cwd=tmp_path)
    try:
        secure = wait_until_up(process, f"https://127.0.0.1:{https_port}/health", verify=str(cert))
        assert secure.status_code == 200 and secure.json()["data"]["database"]["ok"] is True
        assert requests.get(f"http://127.0.0.1:{http_port}/health", timeout=5).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"https://127.0.0.1:{https_port}/health", timeout=5)  # untrusted without the cert
        plain = requests.get(f"https://127.0.0.1:{https_port}/v2/accounts/{'0' * 32}", verify=str(cert), timeout=5)
        assert plain.status_code == 401
    finally:
        returncode, err = stop(process)
    assert returncode == 0, err[-3000:]


def test_serve_without_a_certificate_serves_no_https(database_url, tmp_path):
    http_port, https_port = free_port(), free_port()
    process = spawn("--database-url", database_url, "--http-port", str(http_port), "--https-port",
                    str(https_port), cwd=tmp_path)
    try:
        wait_until_up(process, f"http://127.0.0.1:{http_port}/health")
        with pytest.raises(requests.ConnectionError):
            requests.get(f"https://127.0.0.1:{https_port}/health", verify=False, timeout=5)
    finally:
        returncode, err = stop(process)
    assert returncode == 0, err[-3000:]


def test_module_runs_as_python_dash_m(tmp_path):
    result = subprocess.run([sys.executable, "-m", "web.cli", "init", "--database-url",
                             f"sqlite:///{tmp_path}/m.db", "--account-name", "m", "--realm", "m.test"],
                            capture_output=True, text=True, timeout=60, env=clean_env(), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    printed(result.stdout)


def test_the_served_pool_takes_its_settings(fake_freeswitch, start_bridge):
    bridge = start_bridge(freeswitch=(fake_freeswitch.node,), pool_size=3, pipeline_depth=2,
                          command_timeout=1.5)
    pool = bridge.pool
    assert (pool.pool_size, pool.pipeline_depth, pool.command_timeout) == (3, 2, 1.5)
    assert pool.wait_connected(5.0)
    assert len(fake_freeswitch.command_connections()) == 3
