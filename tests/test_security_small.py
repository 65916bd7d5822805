"""Small holes: paths with `//`, requests with too many headers, made-up methods in /metrics,
slow bodies and the database, SIP IP uniqueness across accounts, and expired rows purged in the
background."""
from __future__ import annotations

import json
import logging
import socket
import time

import gevent
import pytest
import requests
from fixtures_web import assert_error, assert_invalid

from models import db, lockout
from models.idempotency import KEEP_SECONDS, Remembered, remember
from models.tables import IdempotencyRow, LockoutRow, TokenRow
from models.token import IDLE_SECONDS
from web.housekeeping import Housekeeping

pytestmark = pytest.mark.store


def raw_request(port: int, text: str) -> tuple[str, dict]:
    """Send one request as written; the status line and the JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(text.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            if length is not None and len(body) >= length:
                break
    return head.split(b"\r\n")[0].decode(), json.loads(body or b"null")


@pytest.mark.parametrize("path", ["/v2//accounts/{A}", "/v2/accounts//{A}/devices", "/v2/accounts/{A}//devices"])
def test_a_double_slash_is_answered_in_the_envelope_not_redirected(api, bridge, path):
    status, body = raw_request(bridge.http_port, f"GET {path.replace('{A}', api.account_id)} HTTP/1.1\r\n"
                                                 f"Host: x\r\nX-Auth-Token: {api.token}\r\nConnection: close\r\n\r\n")
    assert status.split()[1] in ("403", "404"), status
    assert body["status"] == "error" and body["error"] == status.split()[1]


def test_over_a_hundred_headers_is_one_warning_line(bridge, caplog, capfd):
    headers = "".join(f"X-Header-{n}: {n}\r\n" for n in range(120))
    with caplog.at_level(logging.DEBUG):
        status, body = raw_request(bridge.http_port, f"GET /health HTTP/1.1\r\nHost: x\r\n{headers}\r\n")
    assert status.split()[1] == "400" and body["message"] == "malformed HTTP request"
    mine = [r for r in caplog.records if "100 headers" in r.getMessage()]
    assert [r.levelname for r in mine] == ["WARNING"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in capfd.readouterr().err


def test_made_up_methods_add_no_metric_series(bridge):
    """A client may send any token as its method; each one counted under its own name would add
    series to /metrics without end (memory, and every scrape), from unauthenticated requests."""
    before = requests.get(f"{bridge.url}/metrics", timeout=10).text
    for n in range(3):
        status, body = raw_request(bridge.http_port, f"BREW{n}X /health HTTP/1.1\r\nHost: x\r\n"
                                                     "Connection: close\r\n\r\n")
        assert status.split()[1] == "405" and body["status"] == "error"
    after = requests.get(f"{bridge.url}/metrics", timeout=10).text
    assert "BREW" not in after
    counted = 'esl_bridge_http_requests_total{endpoint="unmatched",method="other",status="405"}'

    def count(text: str) -> float:
        return sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
                   if line.startswith(counted))
    assert count(after) - count(before) == 3


def test_bodies_sent_slowly_leave_the_database_to_other_requests(api, bridge):
    """A body may take its time (the body timeout bounds each pause, not the whole): a request
    holding a database connection while its body trickles in would let a few clients without
    a token take every connection of the pool (64 on SQLite, 32 on PostgreSQL per worker), and
    every other request would wait for one, then be answered 500."""
    stalled = []
    try:
        for _ in range(70):
            sock = socket.create_connection(("127.0.0.1", bridge.http_port), timeout=10)
            sock.sendall(b"PUT /v2/api_auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"data\":")  # and the rest, later
            stalled.append(sock)
        assert api.get("devices").status_code == 200
    finally:
        for sock in stalled:
            sock.close()


def test_a_sip_ip_is_unique_within_an_account_only(api, other):
    ip = {"method": "ip", "ip": "192.0.2.10"}
    assert api.put("devices", {"name": "mine", "sip": ip}).status_code == 201
    # another account learns nothing: its device with the same address is simply created
    theirs = other.put("devices", {"name": "theirs", "sip": ip})
    assert theirs.status_code == 201, theirs.text
    assert_invalid(api.put("devices", {"name": "again", "sip": ip}), "sip.ip:unique")
    moved = other.patch(f"devices/{theirs.json()['data']['id']}", {"sip": {"ip": "192.0.2.11"}})
    assert moved.status_code == 200
    assert other.patch(f"devices/{theirs.json()['data']['id']}", {"sip": ip}).status_code == 200


def test_expired_rows_are_purged_at_start_and_then_in_the_background(start_bridge, api, monkeypatch):
    now = time.time()
    with db.database.connection_context():
        TokenRow.update(last_used=now - IDLE_SECONDS - 5).execute()  # the api fixture's token
        remember("scope", "old", Remembered("0" * 64, 201, "{}", None), now=now - KEEP_SECONDS - 5)
        remember("scope", "new", Remembered("0" * 64, 201, "{}", None))
        with lockout.guard("login:192.0.2.2") as attempts:
            attempts.failed("login:192.0.2.2")
        LockoutRow.insert(key="login:192.0.2.1", failures="[]", last_failure=now - 7200).execute()

    def rows() -> tuple:
        with db.database.connection_context():
            return (TokenRow.select().count(), [r.key for r in IdempotencyRow.select()],
                    sorted(r.key for r in LockoutRow.select()))

    assert rows()[0] == 1 and len(rows()[1]) == 2
    start_bridge()  # a (re)start purges at once
    assert wait_until_equal(rows, (0, ["new"], ["login:192.0.2.2"]))
    # and again every INTERVAL_SECONDS afterwards
    monkeypatch.setattr(Housekeeping, "INTERVAL_SECONDS", 0.05)
    start_bridge()
    with db.database.connection_context():
        TokenRow.insert(token="t" * 43, account_id=api.account_id, method="api_auth",
                        created=now - 2 * IDLE_SECONDS, last_used=now - 2 * IDLE_SECONDS).execute()
    assert wait_until_equal(lambda: rows()[0], 0)
    assert_error(api.get("devices"), 401, "invalid_credentials")


def wait_until_equal(read, expected, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while read() != expected:
        if time.monotonic() > deadline:
            return False
        gevent.sleep(0.02)
    return True
