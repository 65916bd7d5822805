"""Retry-safe creates: `Idempotency-Key` on `PUT` (the IETF httpapi draft's header), over HTTP."""
from __future__ import annotations

import json
import time

import pytest
from fixtures_web import ApiClient, assert_error, assert_invalid

from models import db
from models.idempotency import KEEP_SECONDS
from models.tables import IdempotencyRow

pytestmark = pytest.mark.store


def put(api: ApiClient, path: str, data: dict, key: str | None, **kw):
    headers = {**kw.pop("headers", {}), **({"Idempotency-Key": key} if key is not None else {})}
    return api.put(path, data, headers=headers, **kw)


def names(api: ApiClient, collection: str) -> list[str]:
    return [row.get("name") or row.get("first_name")
            for row in api.get(collection, params={"paginate": "false"}).json()["data"]]


@pytest.mark.parametrize("collection, data", [
    ("devices", {"name": "desk", "sip": {"username": "2001", "password": "secret-1"}}),
    ("users", {"first_name": "Ann", "last_name": "Lee", "username": "ann", "password": "pa55-word"}),
])
def test_a_retried_create_returns_the_first_result(api, collection, data):
    first = put(api, collection, data, "create-42")
    assert first.status_code == 201, first.text
    again = put(api, collection, data, "create-42", headers={"X-Request-ID": "retry-1"})
    assert again.status_code == 201, again.text
    assert again.json()["data"] == first.json()["data"]
    assert again.json()["revision"] == first.json()["revision"]
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers.get("Location") == first.headers.get("Location")
    assert again.headers["Idempotent-Replayed"] == "true"
    # this request's own id and token, not the first one's
    assert again.json()["request_id"] == "retry-1" and again.json()["auth_token"] == api.token
    assert {k: v for k, v in again.json().items() if k not in ("request_id",)} == \
        {k: v for k, v in first.json().items() if k not in ("request_id",)}
    assert len(api.get(collection).json()["data"]) == (1 if collection == "devices" else 2)


def test_a_sub_account_create_is_retry_safe(api):
    data = {"name": "branch", "realm": "branch.acme.test"}
    first = put(api, "", data, "branch-1")
    again = put(api, "", data, "branch-1")
    assert first.status_code == again.status_code == 201
    assert again.json()["data"]["id"] == first.json()["data"]["id"]


def test_without_a_key_each_put_creates(api):
    for _ in range(2):
        assert put(api, "devices", {"name": "desk"}, None).status_code == 201
    assert names(api, "devices") == ["desk", "desk"]


def test_the_same_key_with_another_request_is_422(api):
    assert put(api, "devices", {"name": "desk"}, "k1").status_code == 201
    for path, data in [("devices", {"name": "other desk"}), ("users", {"first_name": "A", "last_name": "B"})]:
        body = assert_error(put(api, path, data, "k1"), 422, "idempotency_key_reused")
        assert body["data"]["cause"] == "k1"
    assert names(api, "devices") == ["desk"] and len(api.get("users").json()["data"]) == 1


def test_a_token_in_the_body_is_not_part_of_the_request(api):
    """A client that logged in again between tries sends another token: still the same request."""
    raw1 = json.dumps({"data": {"name": "desk"}, "auth_token": api.token})
    first = api.put("devices", raw=raw1, token=None, headers={"Idempotency-Key": "k2"})
    fresh = api.put("/v2/api_auth", {"api_key": api.api_key}, token=None).json()["auth_token"]
    raw2 = json.dumps({"auth_token": fresh, "data": {"name": "desk"}})
    again = api.put("devices", raw=raw2, token=None, headers={"Idempotency-Key": "k2"})
    assert first.status_code == again.status_code == 201
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    assert again.json()["auth_token"] == fresh


def test_keys_belong_to_their_caller(api, other):
    mine = put(api, "devices", {"name": "desk"}, "shared-key")
    theirs = put(other, "devices", {"name": "desk"}, "shared-key")
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["data"]["id"] != theirs.json()["data"]["id"]
    again = put(api, "devices", {"name": "desk"}, "shared-key")
    assert again.json()["data"]["id"] == mine.json()["data"]["id"]
    assert names(api, "devices") == ["desk"] and names(other, "devices") == ["desk"]


def test_a_failed_create_is_not_remembered(api):
    assert_invalid(put(api, "devices", {"name": ""}, "k3"), "name:minLength")
    fixed = put(api, "devices", {"name": "desk"}, "k3")
    assert fixed.status_code == 201
    assert put(api, "devices", {"name": "desk"}, "k3").json()["data"]["id"] == fixed.json()["data"]["id"]


def test_a_key_is_kept_for_a_day(api):
    first = put(api, "devices", {"name": "desk"}, "k4")
    with db.database.connection_context():
        IdempotencyRow.update(created=time.time() - KEEP_SECONDS - 1).execute()
    later = put(api, "devices", {"name": "desk"}, "k4")
    assert later.status_code == 201 and later.json()["data"]["id"] != first.json()["data"]["id"]
    assert "Idempotent-Replayed" not in later.headers
    assert put(api, "devices", {"name": "desk"}, "k4").json()["data"]["id"] == later.json()["data"]["id"]


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "a\tb"])
def test_a_malformed_key_is_400_and_creates_nothing(api, key):
    assert_invalid(put(api, "devices", {"name": "desk"}, key), "Idempotency-Key:invalid")
    assert names(api, "devices") == []


def test_a_quoted_key_is_the_same_key(api):
    first = put(api, "devices", {"name": "desk"}, '"k5"')
    assert put(api, "devices", {"name": "desk"}, "k5").json()["data"]["id"] == first.json()["data"]["id"]
