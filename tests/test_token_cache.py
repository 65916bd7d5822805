"""The per-process token cache (PostgreSQL): a revocation or a change of privileges committed
anywhere reaches every process when its NOTIFY is delivered; a lookup racing it, or one made
while the listening connection is down, never leaves an entry that outlives it.

The cache's rules are tested on their own first; then with real processes (`esl-bridge serve
--workers 2`) and a real PostgreSQL, whose tests run only when a PostgreSQL test database is
configured (CI's second pass). Their cache keeps entries for ten minutes: only a delivered
notification can make a worker see a change within the tests' waits.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import psycopg2
import pytest
import requests
from fixtures_web import TEST_DATABASE_ENV, assert_error, client_for, fresh_database, make_account
from serve_process import ESL_BRIDGE, Serve, serve
from test_actions_support import Clock, wait_until

from models import db
from models import token as tokens
from models.cache_listener import CacheListener
from models.tables import TokenRow
from models.token_cache import (
    EVERYTHING,
    TokenCache,
    TokenRowValues,
    for_account,
    for_token,
    for_user,
)

pytestmark = pytest.mark.store

LONG_TTL = 600.0
#: Seconds a delivered notification may take to show (generous: the machine is shared).
DELIVERY = 20.0

needs_postgresql = pytest.mark.skipif(
    not os.environ.get(TEST_DATABASE_ENV, "").startswith(("postgres://", "postgresql://")),
    reason=f"the token cache is PostgreSQL's: set {TEST_DATABASE_ENV} to a PostgreSQL database")


# --- the cache's rules ---------------------------------------------------------------------------

ROW = TokenRowValues("a" * 32, "u" * 32, "user_auth", 1000.0, "admin")


def listening_cache(**options: Any) -> TokenCache:
    cache = TokenCache(**options)
    cache.listening_changed(True)
    return cache


def test_a_lookup_that_read_before_a_notification_does_not_store_its_row() -> None:
    cache = listening_cache()
    started = cache.generation  # the lookup starts, reads the row...
    cache.forget(for_user("someone else entirely"))  # ...any notification comes in...
    assert not cache.store("tok", ROW, started)  # ...and what it read is not kept
    assert cache.get("tok") is None
    assert cache.store("tok", ROW, cache.generation)
    assert cache.get("tok") == ROW


def test_nothing_is_kept_or_answered_while_no_listener_is_connected() -> None:
    cache = TokenCache()
    assert not cache.store("tok", ROW, cache.generation)  # not yet listening
    cache.listening_changed(True)
    started_while_on = cache.generation
    assert cache.store("tok", ROW, started_while_on)
    cache.listening_changed(False)  # connection lost: emptied, and stores are refused
    assert cache.get("tok") is None and len(cache) == 0
    started_while_off = cache.generation
    assert not cache.store("tok", ROW, started_while_off)
    cache.listening_changed(True)  # back: a lookup that started while it was off stores nothing
    assert not cache.store("tok", ROW, started_while_off)
    assert not cache.store("tok", ROW, started_while_on)
    assert len(cache) == 0


def test_entries_live_the_ttl_and_the_oldest_goes_first_when_full() -> None:
    clock = Clock()
    cache = listening_cache(ttl=5.0, max_entries=2, clock=clock)
    cache.store("one", ROW, cache.generation)
    clock.now = 5.0
    assert cache.get("one") == ROW
    clock.now = 5.01
    assert cache.get("one") is None
    for name in ("a", "b", "c"):
        cache.store(name, ROW, cache.generation)
    assert len(cache) == 2 and cache.get("a") is None and cache.get("c") == ROW


def test_a_notification_forgets_what_it_names() -> None:
    cache = listening_cache()
    rows = {"t1": ROW, "t2": ROW._replace(user_id="v" * 32),
            "t3": ROW._replace(account_id="b" * 32, user_id=None, method="api_auth")}
    for token, row in rows.items():
        cache.store(token, row, cache.generation)
    assert cache.forget(for_user("u" * 32)) == 1 and cache.get("t1") is None
    assert cache.forget(for_token("t2")) == 1 and cache.get("t2") is None
    assert cache.forget(for_account("b" * 32)) == 1 and len(cache) == 0
    for token, row in rows.items():
        cache.store(token, row, cache.generation)
    assert cache.forget(EVERYTHING) == 3
    cache.store("t1", ROW, cache.generation)
    assert cache.forget("something:new") == 1  # unknown: forget everything rather than guess


def test_a_token_digest_names_the_token_without_showing_it() -> None:
    token = "x" * 43
    assert for_token(token) == f"token:{hashlib.sha256(token.encode()).hexdigest()[:32]}"
    assert token not in for_token(token)


# --- real processes on PostgreSQL ----------------------------------------------------------------

@pytest.fixture(scope="module")
def office(tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    """Two workers whose token caches keep entries ten minutes; an account and its API key."""
    if not os.environ.get(TEST_DATABASE_ENV, "").startswith(("postgres://", "postgresql://")):
        pytest.skip(f"the token cache is PostgreSQL's: set {TEST_DATABASE_ENV}")
    if not ESL_BRIDGE.exists():
        pytest.fail("the esl-bridge script is not installed")
    url = os.environ[TEST_DATABASE_ENV]
    fresh_database(url)
    account_id, key, _ = make_account()
    server = serve(url, "--token-cache-seconds", str(LONG_TTL), workers=2,
                   cwd=tmp_path_factory.mktemp("cwd"))
    yield {"server": server, "account_id": account_id, "key": key, "url": url}
    assert server.stop() == 0, server.err[-3000:]
    db.database.close_all()


class Worker:
    """One worker reached on purpose through a keep-alive session."""

    def __init__(self, server: Serve, pid: int, session: requests.Session, account_id: str):
        self.server, self.pid, self.session = server, pid, session
        self.base = f"{server.url}/v2/accounts/{account_id}"

    def health(self) -> dict[str, Any]:
        data = self.session.get(f"{self.server.url}/health", timeout=10).json()["data"]
        assert data["worker"]["pid"] == self.pid, "the keep-alive connection changed worker"
        return data

    def request(self, method: str, path: str, token: str, data: Any = None) -> requests.Response:
        url = f"{self.base}/{path}" if path else self.base
        return self.session.request(method, url, json=None if data is None else {"data": data},
                                    headers={"X-Auth-Token": token}, timeout=10)

    def login(self, username: str, password: str) -> str:
        creds = hashlib.md5(f"{username}:{password}".encode()).hexdigest()
        response = self.session.put(f"{self.server.url}/v2/user_auth", timeout=10, json={
            "data": {"credentials": creds, "account_realm": "acme.test"}})
        assert response.status_code == 201, response.text
        return response.json()["auth_token"]

    def api_token(self, key: str) -> str:
        response = self.session.put(f"{self.server.url}/v2/api_auth", json={"data": {"api_key": key}},
                                    timeout=10)
        assert response.status_code == 201, response.text
        return response.json()["auth_token"]

    def cache_entries(self) -> int:
        cache = self.health()["token_cache"]
        assert cache["listening"] is True
        return cache["entries"]


def two_workers(office: dict[str, Any]) -> tuple[Worker, Worker]:
    server: Serve = office["server"]
    a, b = (Worker(server, pid, session, office["account_id"])
            for pid, session in sorted(server.per_worker().items()))
    for worker in (a, b):
        assert wait_until(lambda w=worker: w.health().get("token_cache", {}).get("listening"), DELIVERY)
    return a, b


def cached_in(worker: Worker, token: str, path: str = "") -> None:
    """The worker answers `token` (on `path`) and keeps its lookup."""
    before = worker.cache_entries()
    assert worker.request("GET", path, token).status_code == 200
    assert worker.cache_entries() == before + 1
    assert worker.request("GET", path, token).status_code == 200  # answered from the cache


def status_becomes(worker: Worker, token: str, status: int, path: str = "") -> int:
    """Ask the worker until it answers `status` (at most `DELIVERY` seconds); the last status."""
    deadline = time.monotonic() + DELIVERY
    while True:
        got = worker.request("GET", path, token).status_code
        if got == status or time.monotonic() > deadline:
            worker.health()  # the same worker answered all along
            return got
        gevent.sleep(0.05)


def new_user(worker: Worker, admin_token: str, name: str, **doc: Any) -> str:
    response = worker.request("PUT", "users", admin_token, {
        "first_name": name.title(), "last_name": "Tester", "username": name,
        "password": f"{name}-pw-1", **doc})
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


@needs_postgresql
def test_a_demotion_through_one_worker_reaches_the_others_cached_token(office) -> None:
    a, b = two_workers(office)
    admin = b.api_token(office["key"])
    user_id = new_user(b, admin, "carol", priv_level="admin")
    carol = a.login("carol", "carol-pw-1")
    cached_in(a, carol)  # the account itself: admins only
    demoted = b.request("PATCH", f"users/{user_id}", admin, {"priv_level": "user"})
    assert demoted.status_code == 200, demoted.text
    assert status_becomes(a, carol, 403) == 403
    assert a.request("GET", f"users/{user_id}", carol).status_code == 200  # still its own user


@needs_postgresql
@pytest.mark.parametrize(("name", "method", "data"), [
    ("dave", "PATCH", {"enabled": False}), ("erin", "DELETE", None)], ids=["disabled", "deleted"])
def test_a_user_disabled_or_deleted_through_one_worker_loses_the_others_cached_token(
        office, name: str, method: str, data: Any) -> None:
    a, b = two_workers(office)
    admin = b.api_token(office["key"])
    user_id = new_user(b, admin, name)
    token = a.login(name, f"{name}-pw-1")
    cached_in(a, token, f"users/{user_id}")
    assert b.request(method, f"users/{user_id}", admin, data).status_code == 200
    assert status_becomes(a, token, 401, f"users/{user_id}") == 401


@needs_postgresql
def test_rotating_the_api_key_through_one_worker_revokes_the_others_cached_tokens(office) -> None:
    a, b = two_workers(office)
    minted = a.api_token(office["key"])
    cached_in(a, minted)
    rotated = b.request("PUT", "api_key", b.api_token(office["key"]))
    assert rotated.status_code == 200, rotated.text
    office["key"] = rotated.json()["data"]["api_key"]
    assert status_becomes(a, minted, 401) == 401
    assert a.request("GET", "", a.api_token(office["key"])).status_code == 200


@needs_postgresql
def test_a_lookup_in_flight_while_a_revocation_commits_leaves_no_entry(office, monkeypatch) -> None:
    """This process reads a token, another disables its user and commits before this one
    stores what it read: the notification, delivered in between, keeps the row out."""
    a, b = two_workers(office)
    admin = b.api_token(office["key"])
    user_id = new_user(b, admin, "frank")
    frank = a.login("frank", "frank-pw-1")
    listener = CacheListener.for_database(db.database.obj, LONG_TTL)
    assert listener is not None
    cache = listener.token_cache
    assert cache is not None
    listener.start()
    try:
        assert wait_until(lambda: cache.listening, DELIVERY)
        read = tokens._BY_TOKEN

        class RevokedMidLookup:
            def tuples(self, token: str) -> Iterator[tuple[Any, ...]]:
                rows = list(read.tuples(token))  # the row as it was before the revocation
                seen = cache.generation
                disabled = b.request("PATCH", f"users/{user_id}", admin, {"enabled": False})
                assert disabled.status_code == 200, disabled.text
                assert wait_until(lambda: cache.generation != seen, DELIVERY)
                return iter(rows)

        monkeypatch.setattr(tokens, "_BY_TOKEN", RevokedMidLookup())
        with db.database.connection_context():
            in_flight = tokens.identify(frank, cache=cache)
        assert in_flight is not None and in_flight.user_id == user_id  # it read before the commit
        assert cache.get(frank) is None  # but kept nothing
        monkeypatch.setattr(tokens, "_BY_TOKEN", read)
        with db.database.connection_context():
            assert tokens.identify(frank, cache=cache) is None
    finally:
        listener.stop()
    assert not cache.listening


@needs_postgresql
def test_a_lost_listening_connection_turns_the_cache_off_until_it_is_back(start_bridge, monkeypatch) -> None:
    server = start_bridge(token_cache_seconds=LONG_TTL)
    listener: CacheListener = server.runtime.cache_listener
    cache = listener.token_cache
    assert cache is not None
    assert wait_until(lambda: cache.listening, DELIVERY)
    account_id, key, _ = make_account()
    api = client_for(server.url, account_id, key)
    assert api.get("").status_code == 200
    assert cache.get(api.token) is not None

    refused = gevent.event.Event()
    refused.set()
    real_connect = listener.connect

    def connect() -> Any:
        if refused.is_set():
            raise psycopg2.OperationalError("connection refused (test)")
        return real_connect()

    monkeypatch.setattr(listener, "connect", connect)
    backend = listener.backend_pid
    with db.database.connection_context():
        db.database.execute_sql("SELECT pg_terminate_backend(%s)", (backend,))
    assert wait_until(lambda: not cache.listening, DELIVERY)
    assert len(cache) == 0

    # Off: a token deleted without a notification (as if it were lost) is refused at once...
    with db.database.connection_context():
        TokenRow.delete().where(TokenRow.token == api.token).execute()
    assert_error(api.get(""), 401, "invalid_credentials")
    # ...and lookups are read every time, nothing kept.
    api.token = client_for(server.url, account_id, key).token
    assert api.get("").status_code == 200 and api.get("").status_code == 200
    assert len(cache) == 0 and cache.get(api.token) is None

    refused.clear()
    assert wait_until(lambda: cache.listening, DELIVERY)
    again = listener.backend_pid
    assert again not in (None, backend)
    assert api.get("").status_code == 200
    assert cache.get(api.token) is not None

    server.stop(grace=2)  # the listener stops with the app, its connection closed
    assert not cache.listening and listener.backend_pid is None
    assert wait_until(lambda: not backend_alive(again), DELIVERY)


def backend_alive(pid: int) -> bool:
    with db.database.connection_context():
        return db.database.execute_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0] == 1
