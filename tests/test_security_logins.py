"""Logins as Kazoo clients send them (Kazoo's `cb_user_auth`, `crossbar_auth`), the token read
back (`GET /user_auth/{token}`), and refused logins limited per source address."""
from __future__ import annotations

import hashlib
import time

import pytest
from fixtures_web import ApiClient, assert_error, assert_invalid, make_account

from models import db, lockout
from models import user as users
from models.token import IDLE_SECONDS
from web.app import create_app
from web.config import Settings
from web.login_throttle import LIMITS

pytestmark = pytest.mark.store

CREDS = hashlib.md5(b"bob:pa55-word").hexdigest()


def user_auth(api: ApiClient, **data):
    return api.put("/v2/user_auth", {"credentials": CREDS, **data}, token=None)


@pytest.fixture
def bob(api: ApiClient) -> dict:
    return api.create_user(username="bob", password="pa55-word")


# --- cb_user_auth:maybe_authenticate_user: which account a login means -------------------------

@pytest.mark.parametrize("given", ["Acme Corp, Inc.", "acmecorpinc", "ACME-CORP inc", "  acme.corp.inc!"])
def test_account_name_is_compared_as_kazoo_normalises_it(api, bob, given):
    """kz_util:normalize_account_name: lower case, only letters and digits."""
    assert api.patch("", {"name": "Acme Corp, Inc."}).status_code == 200
    response = user_auth(api, account_name=given)
    assert response.status_code == 201, response.text
    assert response.json()["data"]["owner_id"] == bob["id"]
    assert response.json()["data"]["account_name"] == "Acme Corp, Inc."


def test_a_different_name_is_still_refused(api, bob):
    assert api.patch("", {"name": "Acme Corp, Inc."}).status_code == 200
    for given in ("acmecorp", "Acme Corp, Inc. 2", "!!!", ""):
        assert_error(user_auth(api, account_name=given), 401, "invalid_credentials")


@pytest.mark.parametrize("field", ["account_realm", "realm"])
def test_realm_names_the_account(api, bob, field):
    response = user_auth(api, **{field: "ACME.test"})
    assert response.status_code == 201, response.text
    assert response.json()["data"]["account_id"] == api.account_id


def test_an_unknown_realm_falls_back_to_the_name(api, bob):
    """cb_user_auth:find_account: realm first, then the name."""
    assert user_auth(api, account_realm="nowhere.test", account_name="acme").status_code == 201
    assert_error(user_auth(api, account_realm="nowhere.test"), 401, "invalid_credentials")


def test_accounts_sharing_a_normalised_name_are_each_tried(api, bob):
    """cb_user_auth:maybe_auth_accounts: the first account holding the credentials."""
    twin_id, _, _ = make_account("A.C.M.E.", "twin.test")  # "acme" too, once normalised
    with db.database.connection_context():
        twin_bob = users.create_user(twin_id, {"first_name": "B", "last_name": "T", "username": "bob",
                                               "password": "other-word"})
    mine = user_auth(api, account_name="a.c.m.e")
    assert mine.status_code == 201 and mine.json()["data"]["owner_id"] == bob["id"]
    twin_creds = hashlib.md5(b"bob:other-word").hexdigest()
    theirs = api.put("/v2/user_auth", {"credentials": twin_creds, "account_name": "acme"}, token=None)
    assert theirs.status_code == 201 and theirs.json()["data"]["owner_id"] == twin_bob.id


@pytest.mark.parametrize("data, rule", [({"account_name": 12}, "account_name:type"),
                                        ({"realm": ["acme.test"]}, "account_realm:type"),
                                        ({}, "account_name:required")])
def test_malformed_account_fields_are_400(api, data, rule):
    assert_invalid(user_auth(api, **data), rule)


# --- tokens: Authorization: Bearer, and GET /user_auth/{token} (Kazoo 4) -----------------------

def test_a_bearer_token_is_a_token(api):
    response = api.get("devices", token=None, headers={"Authorization": f"Bearer {api.token}"})
    assert response.status_code == 200, response.text
    assert response.json()["auth_token"] == api.token
    assert api.get("devices", token=None, headers={"Authorization": f"bearer {api.token}"}).status_code == 200
    for value in (f"Bearer {'x' * 43}", f"Basic {api.token}", "Bearer ", api.token):
        assert_error(api.get("devices", token=None, headers={"Authorization": value}), 401, "invalid_credentials")


def test_user_auth_token_tells_its_account_user_and_expiry(api, bob):
    login = user_auth(api, account_name="acme").json()
    token = login["auth_token"]
    before = time.time()
    response = api.get(f"/v2/user_auth/{token}", token=token)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["account_id"] == api.account_id and data["owner_id"] == bob["id"]
    assert data["method"] == "user_auth" and data["account_name"] == "acme"
    assert before + IDLE_SECONDS - 120 <= data["exp"] <= time.time() + IDLE_SECONDS + 1
    # an API-key token has no user
    keyed = api.get(f"/v1/user_auth/{api.token}").json()["data"]
    assert keyed["account_id"] == api.account_id and "owner_id" not in keyed
    assert keyed["method"] == "api_auth"


def test_user_auth_token_shows_only_the_callers_own_token(api, bob, other):
    """cb_user_auth:maybe_get_auth_token: a token other than the request's own is 401."""
    mine = user_auth(api, account_name="acme").json()["auth_token"]
    for path_token in (other.token, mine, "x" * 43):
        assert_error(api.get(f"/v2/user_auth/{path_token}"), 401, "invalid_credentials")
    assert_error(api.get(f"/v2/user_auth/{mine}", token=None), 401, "invalid_credentials")
    assert_error(api.get(f"/v2/user_auth/{api.api_key}", token=api.api_key), 401, "invalid_credentials")


# --- refused logins limited per source address -------------------------------------------------

def _client(address: str):
    app = create_app(Settings(database_url="sqlite:///unused.db"))
    return app.test_client(), {"REMOTE_ADDR": address}


def _api_auth(client, environ, key: str):
    return client.put("/v2/api_auth", json={"data": {"api_key": key}}, environ_base=environ)


def test_refused_logins_are_limited_per_source_across_processes(api, database_url):
    """Two apps over one database stand for two workers: each counts the other's failures."""
    burst = LIMITS[0][0]
    one, here = _client("192.0.2.7")
    two, _ = _client("192.0.2.7")
    elsewhere = {"REMOTE_ADDR": "198.51.100.9"}
    for attempt in range(burst):
        client = one if attempt % 2 else two
        assert _api_auth(client, here, "0" * 64).status_code == 401
    for client in (one, two):
        refused = _api_auth(client, here, api.api_key)  # even the right key: no oracle
        assert refused.status_code == 429, refused.text
        body = refused.get_json()
        assert body["message"] == "too_many_requests" and body["data"] == {"message": "too many requests"}
        assert 1 <= int(refused.headers["Retry-After"]) <= LIMITS[0][1]
        creds = {"credentials": "0" * 32, "account_name": "acme"}
        assert client.put("/v2/user_auth", json={"data": creds}, environ_base=here).status_code == 429
    # another address is not held back, and malformed requests are no failures
    assert _api_auth(one, elsewhere, api.api_key).status_code == 201
    for _ in range(burst):
        assert _api_auth(one, elsewhere, "short").status_code == 400
    assert _api_auth(one, elsewhere, api.api_key).status_code == 201


def test_ipv6_sources_are_counted_by_their_64(api, database_url):
    client, _ = _client("::1")
    for host in range(LIMITS[0][0]):
        assert _api_auth(client, {"REMOTE_ADDR": f"2001:db8:0:1::{host + 1}"}, "0" * 64).status_code == 401
    assert _api_auth(client, {"REMOTE_ADDR": "2001:db8:0:1::ffff"}, api.api_key).status_code == 429
    assert _api_auth(client, {"REMOTE_ADDR": "2001:db8:0:2::1"}, api.api_key).status_code == 201


def test_the_limit_lifts_once_the_failures_age(api, database_url):
    burst, window = LIMITS[0]
    client, here = _client("192.0.2.8")
    long_ago = time.time() - window - 1
    with db.database.connection_context():
        with lockout.guard("login:192.0.2.8", now=long_ago, limits=LIMITS) as attempts:
            for _ in range(burst):
                attempts.failed("login:192.0.2.8")
    # a burst a minute ago holds nothing back now; a new one does
    assert _api_auth(client, here, api.api_key).status_code == 201
    for _ in range(burst):
        assert _api_auth(client, here, "0" * 64).status_code == 401
    assert _api_auth(client, here, api.api_key).status_code == 429
