"""Fixtures around the database and the real HTTP server (owned by the web side).

- `database_url`: a fresh database per test: an SQLite file in the test's directory, or, when
  `ESL_BRIDGE_TEST_DATABASE_URL` is set (CI does it), that PostgreSQL database emptied first.
- `start_bridge(**settings)`: starts the real server (gevent WSGI, port 0) over that database,
  optionally with an ESL pool; stopped after the test.
- `bridge`: the one server without FreeSWITCH the document tests share (default settings).
- `api`: an `ApiClient` of a fresh account (realm `acme.test`) on `bridge`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from models import account as accounts
from models import db
from models import user as users
from models.schema import create_tables, drop_tables
from models.token_cache import EVERYTHING
from web.auth import AncestryCache
from web.config import Settings
from web.server import BridgeServer

FREESWITCH_SECRET = "test-secret-5f1c"
#: A well-formed id that names nothing.
UNKNOWN_ID = "f" * 32
TEST_DATABASE_ENV = "ESL_BRIDGE_TEST_DATABASE_URL"
#: A rival committing between a write transaction's read and its write is PostgreSQL's case:
#: SQLite's write transactions take the write lock as they begin, so there a rival waits its
#: turn (tests/test_workers.py, writers through two workers).
rival_commits_in_between = pytest.mark.skipif(
    not os.environ.get(TEST_DATABASE_ENV, "").startswith(("postgres://", "postgresql://")),
    reason="on SQLite no rival can commit inside another's write transaction (BEGIN IMMEDIATE)")


def database_for(folder: Any, name: str = "esl-bridge.db") -> str:
    """The configured test database (`ESL_BRIDGE_TEST_DATABASE_URL`), else SQLite in `folder`."""
    return os.environ.get(TEST_DATABASE_ENV) or f"sqlite:///{folder}/{name}"


def fresh_database(url: str) -> Any:
    """Point the models at `url`, emptied: every table dropped and created again."""
    database = db.open_database(url)
    db.database.initialize(database)
    with database.connection_context():
        drop_tables()
        create_tables()
    return database


@pytest.fixture
def database_url(tmp_path: Any) -> Iterator[str]:
    url = database_for(tmp_path)
    database = fresh_database(url)
    yield url
    database.close_all()


@dataclass
class ApiClient:
    """HTTP client of one account: paths are relative to `/v2/accounts/{A}` unless absolute."""

    base: str
    account_id: str
    api_key: str
    token: str | None = None
    admin_id: str | None = None
    realm: str = "acme.test"
    session: requests.Session = field(default_factory=requests.Session)

    def url(self, path: str, version: str = "v2") -> str:
        if path.startswith("/"):
            return f"{self.base}{path}"
        suffix = f"/{path}" if path else ""
        return f"{self.base}/{version}/accounts/{self.account_id}{suffix}"

    def request(self, method: str, path: str, data: Any = None, *, token: Any = "default",
                version: str = "v2", raw: bytes | str | None = None, **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", {}) or {})
        use = self.token if token == "default" else token
        if use:
            headers["X-Auth-Token"] = use
        body = raw if raw is not None else (None if data is None else _json({"data": data}))
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
        kw.setdefault("timeout", 30)
        return self.session.request(method, self.url(path, version), data=body, headers=headers, **kw)

    def get(self, path: str = "", **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def put(self, path: str, data: Any = None, **kw: Any) -> requests.Response:
        return self.request("PUT", path, data, **kw)

    def post(self, path: str, data: Any = None, **kw: Any) -> requests.Response:
        return self.request("POST", path, data, **kw)

    def patch(self, path: str, data: Any = None, **kw: Any) -> requests.Response:
        return self.request("PATCH", path, data, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)

    def ids(self, collection: str) -> list[str]:
        """The ids of a whole listing (not paginated), in its order."""
        return [row["id"] for row in self.get(collection, params={"paginate": "false"}).json()["data"]]

    # Shortcuts that assert success, for tests whose subject is something else.
    def create(self, collection: str, data: dict[str, Any]) -> dict[str, Any]:
        response = self.put(collection, data)
        assert response.status_code == 201, response.text
        return response.json()["data"]

    def create_device(self, **doc: Any) -> dict[str, Any]:
        doc.setdefault("name", "phone")
        return self.create("devices", doc)

    def create_user(self, **doc: Any) -> dict[str, Any]:
        doc.setdefault("first_name", "Alice")
        doc.setdefault("last_name", "Liddell")
        return self.create("users", doc)


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def make_account(name: str = "acme", realm: str = "acme.test", parent_id: str | None = None,
                 **doc: Any) -> tuple[str, str, str]:
    """Create an account with an admin user directly in the store: (account id, api key, admin id)."""
    with db.database.connection_context():
        parent = accounts.get_account(parent_id) if parent_id else None
        account = accounts.create_account({"name": name, "realm": realm, **doc}, parent=parent)
        admin = users.create_user(account.id, {"first_name": "Ada", "last_name": "Admin",
                                               "username": f"admin@{realm}", "password": "secret",
                                               "priv_level": "admin"})
        return account.id, accounts.api_key(account), admin.id


def client_for(base: str, account_id: str, api_key: str, admin_id: str | None = None,
               realm: str = "acme.test") -> ApiClient:
    """An ApiClient holding a fresh token obtained over HTTP from the API key."""
    client = ApiClient(base, account_id, api_key, admin_id=admin_id, realm=realm)
    response = client.session.put(f"{base}/v2/api_auth", data=_json({"data": {"api_key": api_key}}),
                                   timeout=30)
    assert response.status_code == 201, response.text
    client.token = response.json()["auth_token"]
    return client


@pytest.fixture
def start_bridge(database_url: str) -> Iterator[Callable[..., BridgeServer]]:
    started: list[BridgeServer] = []

    def start(*, pool: Any = None, freeswitch: tuple[str, ...] | None = None, **settings: Any) -> BridgeServer:
        settings.setdefault("freeswitch_secret", FREESWITCH_SECRET)
        values = Settings(database_url=database_url, bind="127.0.0.1", http_port=0, https_port=0,
                          **settings)
        if freeswitch is not None:
            values.freeswitch = freeswitch
        server = BridgeServer(values, pool=pool, start_freeswitch=freeswitch is not None).start()
        server.url = f"http://127.0.0.1:{server.http_port}"  # type: ignore[attr-defined]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(grace=2)


@pytest.fixture(scope="session")
def _shared_bridge(tmp_path_factory: Any) -> Iterator[BridgeServer]:
    # Building the app compiles every URL rule (tens of milliseconds): the document tests
    # share one server with the default settings, each over its own fresh database (the app
    # reaches the database through the `models.db.database` proxy, which `database_url`
    # points at the test's database before every test).
    url = (os.environ.get(TEST_DATABASE_ENV)
           or f"sqlite:///{tmp_path_factory.mktemp('shared')}/esl-bridge.db")
    values = Settings(database_url=url, bind="127.0.0.1", http_port=0, https_port=0,
                      freeswitch_secret=FREESWITCH_SECRET)
    server = BridgeServer(values, start_freeswitch=False).start()
    server.url = f"http://127.0.0.1:{server.http_port}"  # type: ignore[attr-defined]
    yield server
    server.stop(grace=2)


@pytest.fixture
def bridge(database_url: str, _shared_bridge: BridgeServer) -> BridgeServer:
    """The shared server without FreeSWITCH, over this test's fresh database, its caches empty."""
    _shared_bridge.runtime.ancestry = AncestryCache()
    _shared_bridge.runtime.extras.clear()
    for cache in (_shared_bridge.runtime.token_cache, _shared_bridge.runtime.document_cache):
        if cache is not None:
            cache.forget(EVERYTHING)
    return _shared_bridge


@pytest.fixture
def api(bridge: BridgeServer) -> Iterator[ApiClient]:
    account_id, key, admin_id = make_account()
    client = client_for(bridge.url, account_id, key, admin_id)  # type: ignore[attr-defined]
    yield client
    client.session.close()


@pytest.fixture
def other(bridge: BridgeServer) -> Iterator[ApiClient]:
    """An `ApiClient` of a second, unrelated account (realm `other.test`) on the same server."""
    account_id, key, admin_id = make_account("other", "other.test")
    client = client_for(bridge.url, account_id, key, admin_id, realm="other.test")  # type: ignore[attr-defined]
    yield client
    client.session.close()


def assert_error(response: requests.Response, status: int, message: str, data: Any = None) -> dict[str, Any]:
    """The response is SPEC §2's error envelope with this status and message (and `data` if given)."""
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "error", body
    assert body["error"] == str(status), body
    assert body["message"] == message, body
    if data is not None:
        assert body["data"] == data, body
    assert body["request_id"] and response.headers["X-Request-ID"] == body["request_id"]
    return body


def assert_invalid(response: requests.Response, *rules: str, exact: bool = False) -> dict[str, Any]:
    """A 400 validation envelope whose data holds every `"<dotted.path>:<rule>"` given
    (and nothing else when `exact`). Returns the envelope's data."""
    data = assert_error(response, 400, "invalid request")["data"]
    for item in rules:
        path, rule = item.rsplit(":", 1)
        assert rule in data.get(path, {}), f"{item} not in {data}"
        assert isinstance(data[path][rule].get("message"), str), data
    if exact:
        assert set(data) == {item.rsplit(":", 1)[0] for item in rules}, data
    return data
