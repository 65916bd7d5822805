"""Tokens and authorization over HTTP (SPEC §1 `user_auth`/`api_auth`, §3)."""
from __future__ import annotations

import hashlib
import json
import secrets

import pytest
from fixtures_web import ApiClient, assert_error, assert_invalid, client_for

pytestmark = pytest.mark.store

FORBIDDEN = {"message": "forbidden"}
INVALID_CREDENTIALS = {"message": "invalid credentials"}


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def user_auth(api: ApiClient, **data: str):
    return api.put("/v2/user_auth", data, token=None)


def sub_account(api: ApiClient, name: str, realm: str, parent: ApiClient | None = None) -> ApiClient:
    """Create a sub-account of `parent` (default `api`) over HTTP; a client holding its own token."""
    parent = parent or api
    response = parent.put("", {"name": name, "realm": realm})
    assert response.status_code == 201, response.text
    sub_id = response.json()["data"]["id"]
    key = parent.request("GET", f"/v2/accounts/{sub_id}/api_key").json()["data"]["api_key"]
    return client_for(api.base, sub_id, key, realm=realm)


# --- PUT /user_auth -------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["md5", "sha"])
@pytest.mark.parametrize("by", ["account_name", "account_realm"])
def test_user_auth_gives_a_token_that_acts_on_the_account(api, method, by):
    # an admin: a `user` acts on itself only (tests/test_security_privileges.py)
    user = api.create_user(username="bob", password="pa55-word", priv_level="admin")
    creds = sha1("bob:pa55-word") if method == "sha" else md5("bob:pa55-word")
    data = {"credentials": creds, by: "acme" if by == "account_name" else "acme.test"}
    if method == "sha":
        data["method"] = "sha"
    response = user_auth(api, **data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "success"
    assert body["data"]["account_id"] == api.account_id
    assert body["data"]["owner_id"] == user["id"]
    token = body["auth_token"]
    assert len(token) >= 22  # at least 128 random bits
    again = api.get("", token=token)
    assert again.status_code == 200, again.text
    assert again.json()["data"]["id"] == api.account_id
    assert again.json()["auth_token"] == token


def test_user_auth_tokens_differ_each_time(api):
    api.create_user(username="bob", password="pa55-word")
    tokens = {user_auth(api, credentials=md5("bob:pa55-word"), account_name="acme").json()["auth_token"]
              for _ in range(3)}
    assert len(tokens) == 3


def test_user_auth_md5_of_sha_credentials_is_refused(api):
    """`method` decides the hash: a sha1 sent without `"method": "sha"` is malformed."""
    api.create_user(username="bob", password="pa55-word")
    assert_invalid(user_auth(api, credentials=sha1("bob:pa55-word"), account_name="acme"),
                   "credentials:pattern")
    assert_invalid(user_auth(api, credentials=md5("bob:pa55-word"), account_name="acme", method="sha"),
                   "credentials:pattern")


@pytest.mark.parametrize("case", ["wrong password", "unknown account", "other account", "disabled",
                                  "wrong realm"])
def test_user_auth_with_bad_credentials_is_401(api, other, case):
    user = api.create_user(username="bob", password="pa55-word")
    other.create_user(username="carol", password="carol-pw")
    data = {"credentials": md5("bob:pa55-word"), "account_name": "acme"}
    if case == "wrong password":
        data["credentials"] = md5("bob:guess")
    elif case == "unknown account":
        data["account_name"] = "nobody"
    elif case == "other account":
        data = {"credentials": md5("carol:carol-pw"), "account_name": "acme"}
    elif case == "wrong realm":
        data = {"credentials": md5("bob:pa55-word"), "account_realm": "other.test"}
    else:
        assert api.patch(f"users/{user['id']}", {"enabled": False}).status_code == 200
    body = assert_error(user_auth(api, **data), 401, "invalid_credentials", INVALID_CREDENTIALS)
    assert body["auth_token"] == "undefined"


@pytest.mark.parametrize("data, rule", [
    ({"account_name": "acme"}, "credentials:required"),
    ({"credentials": "xyz", "account_name": "acme"}, "credentials:pattern"),
    ({"credentials": md5("a:b")}, "account_name:required"),
    ({"credentials": md5("a:b"), "account_name": "acme", "method": "md4"}, "method:enum"),
])
def test_user_auth_malformed_request_is_400(api, data, rule):
    assert_invalid(user_auth(api, **data), rule)


def test_user_auth_without_data_is_400(api):
    assert_invalid(api.put("/v2/user_auth", raw="{}", token=None), "data:required")


def test_user_auth_follows_a_password_change(api):
    user = api.create_user(username="bob", password="first-pw")
    assert api.patch(f"users/{user['id']}", {"password": "second-pw"}).status_code == 200
    assert_error(user_auth(api, credentials=md5("bob:first-pw"), account_name="acme"), 401,
                 "invalid_credentials")
    assert user_auth(api, credentials=md5("bob:second-pw"), account_name="acme").status_code == 201


@pytest.mark.parametrize("change", ["delete", "disable"])
def test_a_token_dies_with_its_user(api, change):
    user = api.create_user(username="bob", password="pa55-word", priv_level="admin")
    token = user_auth(api, credentials=md5("bob:pa55-word"), account_name="acme").json()["auth_token"]
    assert api.get("", token=token).status_code == 200
    if change == "delete":
        assert api.delete(f"users/{user['id']}").status_code == 200
    else:
        assert api.patch(f"users/{user['id']}", {"enabled": False}).status_code == 200
    assert_error(api.get("api_key", token=token), 401, "invalid_credentials")


# --- PUT /api_auth ----------------------------------------------------------------------------

def test_api_auth_gives_a_token(api):
    response = api.put("/v2/api_auth", {"api_key": api.api_key}, token=None)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["data"]["account_id"] == api.account_id
    token = body["auth_token"]
    assert token != api.api_key
    assert api.get("devices", token=token).status_code == 200


def test_api_auth_with_an_unknown_key_is_401(api):
    body = assert_error(api.put("/v2/api_auth", {"api_key": secrets.token_hex(32)}, token=None),
                        401, "invalid_credentials", INVALID_CREDENTIALS)
    assert body["auth_token"] == "undefined"


@pytest.mark.parametrize("data, rule", [({}, "api_key:required"), ({"api_key": "short"}, "api_key:pattern"),
                                        ({"api_key": 12}, "api_key:required")])
def test_api_auth_malformed_key_is_400(api, data, rule):
    assert_invalid(api.put("/v2/api_auth", data, token=None), rule)


def test_auth_endpoints_exist_under_v1(api):
    assert api.put("/v1/api_auth", {"api_key": api.api_key}, token=None).status_code == 201
    api.create_user(username="bob", password="pa55-word")
    response = api.put("/v1/user_auth", {"credentials": md5("bob:pa55-word"), "account_name": "acme"},
                       token=None)
    assert response.status_code == 201, response.text


# --- where the token comes from ---------------------------------------------------------------

def test_token_from_query_parameter(api):
    response = api.get("devices", token=None, params={"auth_token": api.token})
    assert response.status_code == 200, response.text
    assert response.json()["auth_token"] == api.token


def test_token_from_body(api):
    raw = json.dumps({"data": {"name": "desk"}, "auth_token": api.token})
    response = api.put("devices", raw=raw, token=None)
    assert response.status_code == 201, response.text
    assert response.json()["data"]["name"] == "desk"


def test_header_token_comes_before_query_and_body(api):
    good, bad = api.token, "x" * 43
    assert api.get("", token=good, params={"auth_token": bad}).status_code == 200
    assert_error(api.get("", token=bad, params={"auth_token": good}), 401, "invalid_credentials")
    raw = json.dumps({"data": {"name": "desk"}, "auth_token": good})
    assert_error(api.put("devices", raw=raw, token=None, params={"auth_token": bad}), 401,
                 "invalid_credentials")
    assert api.get("devices").json()["data"] == []


def test_api_key_is_a_credential_not_a_token(api):
    """It mints tokens (`api_auth`); only the QuickCall URL takes it in their place
    (tests/test_security_api_key.py)."""
    assert_error(api.get("devices", token=api.api_key), 401, "invalid_credentials")
    assert_error(api.put("devices", {"name": "desk"}, token=api.api_key), 401, "invalid_credentials")
    assert api.get("devices").json()["data"] == []


@pytest.mark.parametrize("token", [None, "", "not-a-token-at-all!", "a" * 43, "0" * 64])
def test_missing_or_unknown_token_is_401(api, token):
    response = api.get("devices", token=token)
    body = assert_error(response, 401, "invalid_credentials", INVALID_CREDENTIALS)
    assert body["auth_token"] == "undefined"


def test_every_account_path_needs_a_token(api):
    device = api.create_device()
    user = api.create_user()
    for method, path in [("GET", ""), ("POST", ""), ("PATCH", ""), ("PUT", ""), ("GET", "api_key"),
                         ("GET", "users"), ("PUT", "users"), ("GET", f"users/{user['id']}"),
                         ("POST", f"users/{user['id']}"), ("PATCH", f"users/{user['id']}"),
                         ("DELETE", f"users/{user['id']}"), ("GET", f"users/{user['id']}/devices"),
                         ("GET", f"users/{user['id']}/hotdesks"), ("GET", "hotdesks"),
                         ("GET", "users/hotdesks"), ("GET", "devices"), ("PUT", "devices"),
                         ("GET", f"devices/{device['id']}"), ("POST", f"devices/{device['id']}"),
                         ("PATCH", f"devices/{device['id']}"), ("DELETE", f"devices/{device['id']}"),
                         ("GET", f"devices/{device['id']}/hotdesks")]:
        response = api.request(method, path, {"name": "x"} if method != "GET" else None, token=None)
        assert_error(response, 401, "invalid_credentials")
    assert api.get(f"devices/{device['id']}").json()["data"]["name"] == "phone"
    assert api.get(f"users/{user['id']}").status_code == 200


# --- the account tree -------------------------------------------------------------------------

def test_token_acts_on_descendants(api):
    child = sub_account(api, "child", "child.acme.test")
    grandchild = sub_account(api, "grandchild", "gc.acme.test", parent=child)
    for account_id in (child.account_id, grandchild.account_id):
        assert api.request("GET", f"/v2/accounts/{account_id}").status_code == 200
        created = api.request("PUT", f"/v2/accounts/{account_id}/devices", {"name": "from-parent"})
        assert created.status_code == 201, created.text
    assert [row["name"] for row in grandchild.get("devices").json()["data"]] == ["from-parent"]
    assert child.request("GET", f"/v2/accounts/{grandchild.account_id}/devices").status_code == 200


def test_sub_account_token_is_refused_on_parent_and_siblings(api):
    one = sub_account(api, "one", "one.acme.test")
    two = sub_account(api, "two", "two.acme.test")
    assert one.get("").status_code == 200
    for target in (api.account_id, two.account_id):
        for method, path, data in [("GET", "", None), ("PATCH", "", {"name": "taken"}),
                                   ("PUT", "", {"name": "evil", "realm": "evil.test"}),
                                   ("GET", "/api_key", None), ("GET", "/devices", None),
                                   ("PUT", "/devices", {"name": "x"}), ("GET", "/users", None)]:
            response = one.request(method, f"/v2/accounts/{target}{path}", data)
            assert_error(response, 403, "forbidden", FORBIDDEN)
    assert api.get("").json()["data"]["name"] == "acme"
    assert two.get("").json()["data"]["name"] == "two"
    assert api.get("devices").json()["data"] == [] and two.get("devices").json()["data"] == []


@pytest.mark.parametrize("account_id", ["5f0c" * 8, "nope", "0" * 31, "F" * 32, "5f0c" * 8 + "0"])
def test_unknown_or_malformed_account_id_is_403_not_404(api, account_id):
    for method, path in [("GET", ""), ("GET", "/devices"), ("GET", f"/devices/{secrets.token_hex(16)}"),
                         ("PUT", "/users")]:
        response = api.request(method, f"/v2/accounts/{account_id}{path}",
                               {"first_name": "a", "last_name": "b"} if method == "PUT" else None)
        assert_error(response, 403, "forbidden", FORBIDDEN)


def test_sub_account_api_key_differs_and_is_its_own(api):
    child = sub_account(api, "child", "child.acme.test")
    assert child.api_key != api.api_key
    response = api.put("/v2/api_auth", {"api_key": child.api_key}, token=None)
    assert response.json()["data"]["account_id"] == child.account_id


# --- cross-account attempts: all fail and change nothing --------------------------------------

def _snapshot(client: ApiClient, device_id: str, user_id: str) -> tuple:
    return (client.get("").json()["revision"],
            client.get(f"devices/{device_id}").json()["revision"],
            client.get(f"users/{user_id}").json()["revision"],
            client.get("devices").json()["data"], client.get("users").json()["data"],
            client.get("hotdesks").json()["data"])


def test_cross_account_attempts_on_every_resource_fail_and_change_nothing(api, other):
    victim_user = other.create_user(username="victim", password="victim-pw")
    victim_device = other.create_device(name="victim-phone", owner_id=victim_user["id"],
                                        hotdesk={"users": {victim_user["id"]: {}}},
                                        sip={"username": "victim", "password": "secret-1"})
    before = _snapshot(other, victim_device["id"], victim_user["id"])
    mine = api.create_user()
    mine_device = api.create_device()
    theirs = f"/v2/accounts/{other.account_id}"
    u, d = victim_user["id"], victim_device["id"]
    body = {"name": "pwned", "first_name": "p", "last_name": "p", "realm": "pwned.test"}

    # Through the other account's paths: 403 everywhere, for every method.
    for method, path in [("GET", ""), ("POST", ""), ("PATCH", ""), ("PUT", ""), ("GET", "/api_key"),
                         ("GET", "/users"), ("PUT", "/users"), ("GET", f"/users/{u}"),
                         ("POST", f"/users/{u}"), ("PATCH", f"/users/{u}"), ("DELETE", f"/users/{u}"),
                         ("GET", f"/users/{u}/devices"), ("GET", f"/users/{u}/hotdesks"),
                         ("GET", "/hotdesks"), ("GET", "/users/hotdesks"), ("GET", "/devices"),
                         ("PUT", "/devices"), ("GET", f"/devices/{d}"), ("POST", f"/devices/{d}"),
                         ("PATCH", f"/devices/{d}"), ("DELETE", f"/devices/{d}"),
                         ("GET", f"/devices/{d}/hotdesks")]:
        for version in ("v1", "v2"):
            response = api.request(method, theirs.replace("v2", version) + path,
                                   None if method in ("GET", "DELETE") else body)
            assert_error(response, 403, "forbidden", FORBIDDEN)

    # The other account's ids under our own path: they do not exist here.
    for method, path in [("GET", f"users/{u}"), ("POST", f"users/{u}"), ("PATCH", f"users/{u}"),
                         ("DELETE", f"users/{u}"), ("GET", f"users/{u}/devices"),
                         ("GET", f"users/{u}/hotdesks"), ("GET", f"devices/{d}"),
                         ("POST", f"devices/{d}"), ("PATCH", f"devices/{d}"), ("DELETE", f"devices/{d}"),
                         ("GET", f"devices/{d}/hotdesks")]:
        response = api.request(method, path, None if method in ("GET", "DELETE") else body)
        assert_error(response, 404, "bad_identifier", {"message": "bad identifier", "cause": path.split("/")[1]})

    # Their user cannot be referenced from our documents.
    assert_invalid(api.put("devices", {"name": "x", "owner_id": u}), "owner_id:not_found")
    assert_invalid(api.put("devices", {"name": "x", "hotdesk": {"users": {u: {}}}}),
                   f"hotdesk.users.{u}:not_found")
    assert_invalid(api.patch(f"devices/{mine_device['id']}", {"owner_id": u}), "owner_id:not_found")
    # Their SIP identity and MAC are theirs; a listing never shows their rows.
    assert [row["id"] for row in api.get("devices").json()["data"]] == [mine_device["id"]]
    assert {row["id"] for row in api.get("users").json()["data"]} == {api.admin_id, mine["id"]}
    assert api.get("hotdesks").json()["data"] == []

    assert _snapshot(other, victim_device["id"], victim_user["id"]) == before
    assert other.get(f"devices/{d}").json()["data"]["sip"]["password"] == "secret-1"
