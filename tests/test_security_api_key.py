"""The API key over HTTP (SPEC §3; Kazoo's `cb_api_auth`): a credential that mints tokens, never
a token itself; rotated by `PUT /accounts/{A}/api_key`, which revokes the tokens of the old one."""
from __future__ import annotations

import hashlib
import json

import pytest
from fixtures_web import ApiClient, assert_error, client_for
from test_api_auth import sub_account

from models import account as accounts

pytestmark = pytest.mark.store


def api_auth(api: ApiClient, key: str):
    return api.put("/v2/api_auth", {"api_key": key}, token=None)


def user_token(api: ApiClient, username: str = "bob", priv_level: str = "user") -> str:
    api.create_user(username=username, password="pa55-word", priv_level=priv_level)
    creds = hashlib.md5(f"{username}:pa55-word".encode()).hexdigest()
    return api.put("/v2/user_auth", {"credentials": creds, "account_name": "acme"}, token=None).json()["auth_token"]


@pytest.mark.parametrize("where", ["X-Auth-Token", "Bearer", "query", "body"])
def test_the_api_key_is_refused_as_a_token(api, where):
    key = api.api_key
    kw: dict = {"token": None}
    if where == "X-Auth-Token":
        kw["token"] = key
    elif where == "Bearer":
        kw["headers"] = {"Authorization": f"Bearer {key}"}
    elif where == "query":
        kw["params"] = {"auth_token": key}
    for method, path in [("GET", "devices"), ("GET", ""), ("GET", "api_key"), ("PUT", "devices")]:
        if where == "body":
            kw["raw"] = json.dumps({"data": {"name": "x"}, "auth_token": key})
        body = assert_error(api.request(method, path, **kw), 401, "invalid_credentials")
        assert body["auth_token"] == "undefined"
    assert api.get("devices").json()["data"] == []


def test_the_api_key_still_mints_tokens(api):
    response = api_auth(api, api.api_key)
    assert response.status_code == 201
    assert response.json()["auth_token"] != api.api_key


def test_rotating_the_key_revokes_the_tokens_it_minted(api):
    old_key = api.api_key
    minted = api_auth(api, old_key).json()["auth_token"]
    person = user_token(api, "root", "admin")
    rotated = api.put("api_key", token=person)
    assert rotated.status_code == 200, rotated.text
    new_key = rotated.json()["data"]["api_key"]
    assert len(new_key) == 64 and new_key != old_key
    assert rotated.json()["auth_token"] == person  # a user's token is no child of the key
    # the old key mints nothing, its tokens are dead; the user's token lives on
    assert_error(api_auth(api, old_key), 401, "invalid_credentials")
    for token in (minted, api.token):
        assert_error(api.get("devices", token=token), 401, "invalid_credentials")
    assert api.get("devices", token=person).status_code == 200
    assert api.get("api_key", token=person).json()["data"] == {"api_key": new_key}
    fresh = api_auth(api, new_key)
    assert fresh.status_code == 201 and fresh.json()["data"]["account_id"] == api.account_id


def test_rotating_with_a_token_of_the_key_revokes_that_token_too(api):
    response = api.put("api_key")
    assert response.status_code == 200, response.text
    new_key = response.json()["data"]["api_key"]
    # the reply carries no token: the one sent was minted from the old key
    assert response.json()["auth_token"] in ("", "undefined")
    assert response.json()["auth_token"] != new_key
    assert_error(api.get("devices"), 401, "invalid_credentials")


def test_rotation_is_admin_only_and_stays_in_the_tree(api, other):
    token = user_token(api)
    assert_error(api.put("api_key", token=token), 403, "forbidden")
    assert_error(api.request("PUT", f"/v2/accounts/{other.account_id}/api_key"), 403, "forbidden")
    assert api_auth(api, api.api_key).status_code == 201
    assert api_auth(other, other.api_key).status_code == 201


def test_a_parent_rotates_a_child_key_without_losing_its_own_tokens(api):
    child = sub_account(api, "child", "child.acme.test")
    response = api.request("PUT", f"/v2/accounts/{child.account_id}/api_key")
    assert response.status_code == 200, response.text
    assert response.json()["auth_token"] == api.token
    assert api.get("devices").status_code == 200
    assert_error(child.get("devices"), 401, "invalid_credentials")
    assert_error(api_auth(api, child.api_key), 401, "invalid_credentials")
    new_child = client_for(api.base, child.account_id, response.json()["data"]["api_key"])
    assert new_child.get("devices").status_code == 200



def test_a_key_rotated_while_it_mints_a_token_mints_nothing(api, monkeypatch):
    """The key is rotated by another process after this `api_auth` found the account by it and
    before it stored the token: the rotation revoked the tokens that existed, so the new one
    must not outlive it (a leaked key hammering `api_auth` would otherwise survive rotation)."""
    find = accounts.account_by_api_key

    def found_then_rotated(key):
        account = find(key)
        accounts.rotate_api_key(account.id)
        return account

    monkeypatch.setattr(accounts, "account_by_api_key", found_then_rotated)
    minted = api_auth(api, api.api_key)
    monkeypatch.undo()
    assert_error(minted, 401, "invalid_credentials")
    assert_error(api.get("devices"), 401, "invalid_credentials")  # the old key's token: revoked
