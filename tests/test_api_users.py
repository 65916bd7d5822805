"""Users over HTTP: CRUD, SPEC §4's user rules, write-only passwords."""
from __future__ import annotations

import hashlib
import json
import secrets

import pytest
from fixtures_web import assert_error, assert_invalid

pytestmark = pytest.mark.store

PASSWORD = "Sup3r-secret!"


def user_ids(api) -> set[str]:
    return {row["id"] for row in api.get("users", params={"paginate": "false"}).json()["data"]}


def login(api, username: str, password: str):
    creds = hashlib.md5(f"{username}:{password}".encode()).hexdigest()
    return api.put("/v2/user_auth", {"credentials": creds, "account_name": "acme"}, token=None)


def test_create_read_and_defaults(api):
    response = api.put("users", {"first_name": "Alice", "last_name": "Liddell", "username": "alice",
                                 "email": "alice@acme.test", "password": PASSWORD})
    assert response.status_code == 201, response.text
    user = response.json()["data"]
    assert user["priv_level"] == "user" and user["enabled"] is True
    assert user["username"] == "alice" and user["email"] == "alice@acme.test"
    fetched = api.get(f"users/{user['id']}")
    assert fetched.json()["data"] == user
    assert fetched.headers["ETag"].strip('"') == response.json()["revision"]
    assert api.get(f"users/{user['id']}", version="v1").json()["data"] == user


def test_password_is_never_returned(api):
    response = api.put("users", {"first_name": "A", "last_name": "B", "username": "alice", "password": PASSWORD})
    user = response.json()["data"]
    replies = [response,
               api.get(f"users/{user['id']}"),
               api.patch(f"users/{user['id']}", {"password": PASSWORD + "2"}),
               api.post(f"users/{user['id']}", {"first_name": "A", "last_name": "B", "username": "alice",
                                                "password": PASSWORD + "3"}),
               api.get("users"), api.get("users", version="v1"),
               api.delete(f"users/{user['id']}")]
    for reply in replies:
        assert reply.status_code in (200, 201), reply.text
        assert '"password"' not in reply.text and "Sup3r" not in reply.text
        assert "creds" not in reply.text


def test_password_is_write_only_but_works(api):
    user = api.create_user(username="Alice", password=PASSWORD)
    response = login(api, "alice", PASSWORD)
    assert response.status_code == 201, response.text
    assert response.json()["data"]["owner_id"] == user["id"]


def test_changing_the_username_needs_the_password(api):
    user = api.create_user(username="alice", password=PASSWORD)
    assert_invalid(api.patch(f"users/{user['id']}", {"username": "alicia"}), "password:required")
    assert api.get(f"users/{user['id']}").json()["data"]["username"] == "alice"
    assert api.patch(f"users/{user['id']}", {"username": "alicia", "password": PASSWORD}).status_code == 200
    assert login(api, "alicia", PASSWORD).status_code == 201
    assert_error(login(api, "alice", PASSWORD), 401, "invalid_credentials")


def test_a_password_needs_a_username(api):
    assert_invalid(api.put("users", {"first_name": "A", "last_name": "B", "password": PASSWORD}),
                   "username:required", exact=True)
    assert len(user_ids(api)) == 1  # the admin


def test_post_replaces_and_patch_merges(api):
    user = api.create_user(title="Dr", hotdesk={"id": "100", "pin": "1234", "require_pin": True})
    replaced = api.post(f"users/{user['id']}", {"first_name": "Bea", "last_name": "Bee"}).json()["data"]
    assert replaced["first_name"] == "Bea" and "title" not in replaced
    assert "id" not in replaced["hotdesk"] and "pin" not in replaced["hotdesk"]  # Kazoo's defaults only
    patched = api.patch(f"users/{user['id']}", {"hotdesk": {"id": "200", "pin": "9999"}, "x": {"y": 1}})
    assert patched.status_code == 200, patched.text
    patched = api.patch(f"users/{user['id']}", {"hotdesk": {"pin": None}, "x": None}).json()["data"]
    assert patched["hotdesk"] == {"id": "200", "enabled": False, "require_pin": False,
                                  "keep_logged_in_elsewhere": False}
    assert "x" not in patched and patched["first_name"] == "Bea"
    # The old hotdesk id is free again.
    api.create_user(first_name="Other", hotdesk={"id": "100"})


def test_delete_returns_the_user_and_then_404(api):
    user = api.create_user(username="gone", password=PASSWORD)
    response = api.delete(f"users/{user['id']}")
    assert response.status_code == 200 and response.json()["data"] == user
    assert_error(api.get(f"users/{user['id']}"), 404, "bad_identifier",
                 {"message": "bad identifier", "cause": user["id"]})
    assert user["id"] not in user_ids(api)
    assert_error(login(api, "gone", PASSWORD), 401, "invalid_credentials")
    assert_error(api.delete(f"users/{user['id']}"), 404, "bad_identifier")
    api.create_user(username="GONE")


def test_unknown_keys_kept_private_keys_dropped(api):
    user = api.create_user(department="R&D", pvt_md5_auth="x" * 32, _id="y", preferences={"lang": "fr"})
    stored = api.get(f"users/{user['id']}").json()["data"]
    assert stored["department"] == "R&D" and stored["preferences"] == {"lang": "fr"}
    assert not [k for k in stored if k.startswith(("pvt_", "_"))]


RULES = [
    ({"first_name": None}, "first_name:required"),
    ({"last_name": None}, "last_name:required"),
    ({"first_name": ""}, "first_name:minLength"),
    ({"last_name": "l" * 129}, "last_name:maxLength"),
    ({"first_name": 1}, "first_name:type"),
    ({"username": ""}, "username:minLength"),
    ({"username": "u" * 257}, "username:maxLength"),
    ({"username": ["alice"]}, "username:type"),
    ({"username": "alice", "password": ""}, "password:minLength"),
    ({"username": "alice", "password": 1234}, "password:type"),
    ({"email": "not-an-email"}, "email:pattern"),
    ({"email": "a@b@c"}, "email:pattern"),
    ({"email": "a@b\n"}, "email:pattern"),
    ({"email": "e" * 250 + "@x.io"}, "email:maxLength"),
    ({"priv_level": "root"}, "priv_level:enum"),
    ({"enabled": "true"}, "enabled:type"),
    ({"presence_id": "a b"}, "presence_id:pattern"),
    ({"presence_id": "p" * 129}, "presence_id:maxLength"),
    ({"caller_id": {"internal": {"name": "Alice@home"}}}, "caller_id.internal.name:pattern"),
    ({"caller_id": {"external": {"number": "x1"}}}, "caller_id.external.number:pattern"),
    ({"hotdesk": "x"}, "hotdesk:type"),
    ({"hotdesk": {"enabled": "yes"}}, "hotdesk.enabled:type"),
    ({"hotdesk": {"id": "12a"}}, "hotdesk.id:pattern"),
    ({"hotdesk": {"id": ""}}, "hotdesk.id:minLength"),
    ({"hotdesk": {"id": "1" * 16}}, "hotdesk.id:maxLength"),
    ({"hotdesk": {"id": 100}}, "hotdesk.id:type"),
    ({"hotdesk": {"pin": "123"}}, "hotdesk.pin:minLength"),
    ({"hotdesk": {"pin": "1" * 16}}, "hotdesk.pin:maxLength"),
    ({"hotdesk": {"pin": "12ab"}}, "hotdesk.pin:pattern"),
    ({"hotdesk": {"pin": "1234\n"}}, "hotdesk.pin:pattern"),
    ({"hotdesk": {"require_pin": "no"}}, "hotdesk.require_pin:type"),
    ({"hotdesk": {"keep_logged_in_elsewhere": 1}}, "hotdesk.keep_logged_in_elsewhere:type"),
    ({"allow_anonymous_quickcalls": "false"}, "allow_anonymous_quickcalls:type"),
]


def _with(change: dict) -> dict:
    doc = {"first_name": "Alice", "last_name": "Liddell"}
    for key, value in change.items():
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
    return doc


@pytest.mark.parametrize("change, rule", RULES, ids=[r for _, r in RULES])
def test_create_refuses(api, change, rule):
    before = user_ids(api)
    assert_invalid(api.put("users", _with(change)), rule, exact=True)
    assert user_ids(api) == before


@pytest.mark.parametrize("change, rule", RULES[::2], ids=[r for _, r in RULES[::2]])
def test_update_refuses_and_changes_nothing(api, change, rule):
    user = api.create_user()
    before = api.get(f"users/{user['id']}").json()
    assert_invalid(api.post(f"users/{user['id']}", _with(change)), rule)
    patch = {k: v for k, v in change.items() if v is not None} or {k: None for k in change}
    assert_invalid(api.patch(f"users/{user['id']}", patch), rule)
    after = api.get(f"users/{user['id']}").json()
    assert (after["data"], after["revision"]) == (before["data"], before["revision"])


def test_valid_boundaries_are_accepted(api):
    user = api.create_user(first_name="f" * 128, last_name="l", username="u" * 256, email="a@b",
                           priv_level="admin", enabled=False, presence_id="2001@acme.test",
                           hotdesk={"enabled": True, "id": "1" * 15, "pin": "1" * 15, "require_pin": True,
                                    "keep_logged_in_elsewhere": True},
                           caller_id={"internal": {"name": "Alice L. (2)", "number": "+2001"}},
                           allow_anonymous_quickcalls=True)
    assert api.get(f"users/{user['id']}").json()["data"] == user


def test_username_is_unique_in_the_account_case_insensitively(api, other):
    alice = api.create_user(username="Alice")
    data = assert_invalid(api.put("users", _with({"username": "aLICE"})), "username:unique", exact=True)
    assert data["username"]["unique"]["cause"] == "aLICE"
    bob = api.create_user(username="bob")
    assert_invalid(api.patch(f"users/{bob['id']}", {"username": "ALICE", "password": PASSWORD}),
                   "username:unique")
    assert api.patch(f"users/{alice['id']}", {"username": "ALICE"}).status_code == 200
    assert other.put("users", _with({"username": "alice"})).status_code == 201


def test_hotdesk_id_is_unique_in_the_account(api, other):
    first = api.create_user(hotdesk={"id": "1001"})
    data = assert_invalid(api.put("users", _with({"hotdesk": {"id": "1001"}})), "hotdesk.id:unique", exact=True)
    assert data["hotdesk.id"]["unique"]["cause"] == "1001"
    second = api.create_user(hotdesk={"id": "1002"})
    assert_invalid(api.patch(f"users/{second['id']}", {"hotdesk": {"id": "1001"}}), "hotdesk.id:unique")
    assert api.patch(f"users/{first['id']}", {"hotdesk": {"id": "1001", "pin": "0000"}}).status_code == 200
    assert other.put("users", _with({"hotdesk": {"id": "1001"}})).status_code == 201


def test_several_failures_together_and_nothing_stored(api):
    api.create_user(username="alice", hotdesk={"id": "7"})
    before = user_ids(api)
    response = api.put("users", {"last_name": "", "username": "ALICE", "priv_level": "boss",
                                 "hotdesk": {"id": "7", "pin": "12"}, "email": "nope"})
    assert_invalid(response, "first_name:required", "last_name:minLength", "username:unique",
                   "priv_level:enum", "hotdesk.id:unique", "hotdesk.pin:minLength", "email:pattern",
                   exact=True)
    assert user_ids(api) == before


def test_unknown_user_is_404(api):
    for ident in (secrets.token_hex(16), "xyz", "0" * 33):
        for method in ("GET", "POST", "PATCH", "DELETE"):
            body = None if method in ("GET", "DELETE") else {"first_name": "a", "last_name": "b"}
            assert_error(api.request(method, f"users/{ident}", raw=json.dumps({"data": body}) if body else None),
                         404, "bad_identifier", {"message": "bad identifier", "cause": ident})
