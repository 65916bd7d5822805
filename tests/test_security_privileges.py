"""Privilege levels over HTTP (SPEC §3; Kazoo's `priv_level`, `cb_context:is_account_admin`):
a `user` token acts on itself and the devices it owns, nothing else; admins and API-key tokens
act on the whole account tree."""
from __future__ import annotations

import hashlib

import gevent
import pytest
from fixtures_web import ApiClient, assert_error, rival_commits_in_between
from test_api_auth import sub_account

from models import db
from models import token as tokens
from models import user as users

pytestmark = pytest.mark.store

PASSWORD = "pa55-word"


def token_of(api: ApiClient, username: str, password: str = PASSWORD) -> str:
    creds = hashlib.md5(f"{username}:{password}".encode()).hexdigest()
    response = api.put("/v2/user_auth", {"credentials": creds, "account_name": "acme"}, token=None)
    assert response.status_code == 201, response.text
    return response.json()["auth_token"]


def as_token(api: ApiClient, token: str) -> ApiClient:
    return ApiClient(api.base, api.account_id, api.api_key, token=token, admin_id=api.admin_id)


@pytest.fixture
def staff(api: ApiClient) -> dict:
    """A `user` (bob) owning one device, a colleague (carol) owning another, and bob's client."""
    bob = api.create_user(username="bob", password=PASSWORD, first_name="Bob")
    carol = api.create_user(username="carol", password=PASSWORD, first_name="Carol")
    return {"bob": bob, "carol": carol,
            "bob_phone": api.create_device(name="bob's", owner_id=bob["id"], sip={"username": "bob", "password": "secret-1"}),
            "carol_phone": api.create_device(name="carol's", owner_id=carol["id"]),
            "client": as_token(api, token_of(api, "bob"))}


def test_a_user_token_reads_and_edits_only_itself(api, staff):
    bob, carol, me = staff["bob"], staff["carol"], staff["client"]
    assert me.get(f"users/{bob['id']}").json()["data"]["first_name"] == "Bob"
    patched = me.patch(f"users/{bob['id']}", {"first_name": "Robert", "email": "bob@acme.test"})
    assert patched.status_code == 200, patched.text
    replaced = me.post(f"users/{bob['id']}", {**patched.json()["data"], "last_name": "Builder"})
    assert replaced.status_code == 200, replaced.text
    assert me.get(f"users/{bob['id']}/devices").json()["data"][0]["id"] == staff["bob_phone"]["id"]
    assert me.get(f"users/{bob['id']}/hotdesks").status_code == 200
    for method, path in [("GET", f"users/{carol['id']}"), ("PATCH", f"users/{carol['id']}"),
                         ("DELETE", f"users/{carol['id']}"), ("GET", f"users/{carol['id']}/devices"),
                         ("DELETE", f"users/{bob['id']}")]:
        assert_error(me.request(method, path, {"first_name": "x"} if method == "PATCH" else None),
                     403, "forbidden", {"message": "forbidden"})
    assert api.get(f"users/{carol['id']}").json()["data"]["first_name"] == "Carol"


def test_a_user_token_reaches_nothing_of_the_account(api, staff):
    """Kazoo's `user` priv_level: not the API key, not other users, not admins' work."""
    me = staff["client"]
    for method, path, data in [
            ("GET", "api_key", None), ("PUT", "api_key", None), ("GET", "", None),
            ("PATCH", "", {"name": "mine"}), ("PUT", "", {"name": "sub", "realm": "sub.acme.test"}),
            ("GET", "users", None), ("GET", "devices", None), ("GET", "hotdesks", None),
            ("GET", "users/hotdesks", None), ("GET", "devices/status", None),
            # creating an admin, or anything
            ("PUT", "users", {"first_name": "E", "last_name": "Vil", "priv_level": "admin"}),
            ("PUT", "devices", {"name": "x"}),
            ("DELETE", f"users/{api.admin_id}", None), ("PATCH", f"users/{api.admin_id}", {"priv_level": "user"})]:
        body = assert_error(me.request(method, path, data), 403, "forbidden")
        assert api.api_key not in body.get("auth_token", "")
    assert api.get(f"users/{api.admin_id}").json()["data"]["priv_level"] == "admin"
    assert [row["first_name"] for row in api.get("users").json()["data"]].count("E") == 0


@pytest.mark.parametrize("change", [
    {"priv_level": "admin"}, {"enabled": False}, {"hotdesk": {"require_pin": False}},
    {"hotdesk": {"enabled": True}}, {"allow_anonymous_quickcalls": True}, {"presence_id": "2002"},
    {"caller_id": {"emergency": {"number": "911"}}},
])
def test_a_user_cannot_change_its_own_locks(api, staff, change):
    bob = staff["bob"]
    api.patch(f"users/{bob['id']}", {"hotdesk": {"enabled": False, "id": "100", "pin": "1234",
                                                 "require_pin": True}})
    before = api.get(f"users/{bob['id']}").json()
    body = assert_error(staff["client"].patch(f"users/{bob['id']}", change), 403, "forbidden")
    assert body["data"]["cause"].split(".")[0] == next(iter(change))
    assert api.get(f"users/{bob['id']}").json()["revision"] == before["revision"]


def test_a_user_may_send_back_its_locks_unchanged(api, staff):
    """A POST of the whole document as read (priv_level and all) is no attempt to change them."""
    bob, me = staff["bob"], staff["client"]
    api.patch(f"users/{bob['id']}", {"hotdesk": {"enabled": True, "id": "100", "require_pin": False}})
    doc = me.get(f"users/{bob['id']}").json()["data"]
    response = me.post(f"users/{bob['id']}", {**doc, "hotdesk": {**doc["hotdesk"], "pin": "4321"}})
    assert response.status_code == 200, response.text
    # dropping a flag that is off changes nothing either
    response = me.post(f"users/{bob['id']}", {k: v for k, v in doc.items() if k != "hotdesk"}
                       | {"hotdesk": {"enabled": True, "id": "100"}})
    assert response.status_code == 200, response.text


def test_a_user_token_sees_only_the_devices_it_owns(api, staff):
    me, mine, theirs = staff["client"], staff["bob_phone"], staff["carol_phone"]
    assert me.get(f"devices/{mine['id']}").json()["data"]["name"] == "bob's"
    assert me.get(f"devices/{mine['id']}/hotdesks").status_code == 200
    for method, path in [("GET", f"devices/{theirs['id']}"), ("GET", f"devices/{theirs['id']}/hotdesks"),
                         ("POST", f"devices/{theirs['id']}/sync"), ("POST", f"devices/{theirs['id']}/presence"),
                         ("GET", f"devices/{theirs['id']}/quickcall/2000"),
                         # editing even its own device is an admin's job
                         ("PATCH", f"devices/{mine['id']}"), ("DELETE", f"devices/{mine['id']}"),
                         # unknown ids are refused the same way: nothing to probe
                         ("GET", "devices/" + "0" * 32)]:
        assert_error(me.request(method, path, {"name": "x"} if method == "PATCH" else None), 403, "forbidden")
    assert api.get(f"devices/{mine['id']}").json()["data"]["name"] == "bob's"


def test_a_user_token_stays_in_its_own_account(api, staff):
    child = sub_account(api, "child", "child.acme.test")
    for path in ["", "/devices", "/users", "/api_key"]:
        assert_error(staff["client"].request("GET", f"/v2/accounts/{child.account_id}{path}"),
                     403, "forbidden")


def test_admins_and_api_key_tokens_act_on_the_whole_tree(api, staff):
    api.create_user(username="root", password=PASSWORD, priv_level="admin")
    admin = as_token(api, token_of(api, "root"))
    child = sub_account(api, "child", "child.acme.test")
    for client in (admin, api):
        assert client.get("api_key").status_code == 200
        assert client.get(f"users/{staff['carol']['id']}").status_code == 200
        created = client.put("users", {"first_name": "N", "last_name": "A", "priv_level": "admin"})
        assert created.status_code == 201, created.text
        assert client.request("GET", f"/v2/accounts/{child.account_id}/users").status_code == 200
    assert admin.patch(f"users/{staff['bob']['id']}", {"priv_level": "admin"}).status_code == 200


def test_a_priv_level_change_reaches_live_tokens_at_once(api, staff):
    """Kazoo reads the user's priv_level on each request: a promotion or demotion holds for
    tokens already issued."""
    bob, me = staff["bob"], staff["client"]
    assert_error(me.get("users"), 403, "forbidden")
    assert api.patch(f"users/{bob['id']}", {"priv_level": "admin"}).status_code == 200
    assert me.get("users").status_code == 200
    assert me.get("api_key").status_code == 200
    assert api.patch(f"users/{bob['id']}", {"priv_level": "user"}).status_code == 200
    assert_error(me.get("users"), 403, "forbidden")
    assert_error(me.get("api_key"), 403, "forbidden")


def test_an_admin_demoting_itself_loses_admin_rights(api):
    root = api.create_user(username="root", password=PASSWORD, priv_level="admin")
    admin = as_token(api, token_of(api, "root"))
    assert admin.patch(f"users/{root['id']}", {"priv_level": "user"}).status_code == 200
    assert_error(admin.get("users"), 403, "forbidden")
    assert admin.get(f"users/{root['id']}").status_code == 200


@pytest.mark.parametrize("change", ["demoted", "disabled", "deleted"])
def test_a_login_racing_a_change_of_its_user_gets_the_user_as_changed(api, monkeypatch, change):
    """Another process demotes, disables or deletes the user after this login checked the
    credentials and before it stored the token: the change reached the tokens that existed, so
    the new token must follow the user as it is after the change, not as it was read."""
    root = api.create_user(username="root", password=PASSWORD, priv_level="admin")
    check = users.user_by_credentials

    def checked_then_changed(*args, **kwargs):
        found = check(*args, **kwargs)
        if change == "deleted":
            users.delete_user(api.account_id, root["id"])
        else:
            patch = {"priv_level": "user"} if change == "demoted" else {"enabled": False}
            users.update_user(api.account_id, root["id"], patch, merge=True)
        return found

    monkeypatch.setattr(users, "user_by_credentials", checked_then_changed)
    creds = hashlib.md5(f"root:{PASSWORD}".encode()).hexdigest()
    login = api.put("/v2/user_auth", {"credentials": creds, "account_name": "acme"}, token=None)
    monkeypatch.undo()
    if change == "demoted":
        assert login.status_code == 201, login.text
        assert_error(as_token(api, login.json()["auth_token"]).get("api_key"), 403, "forbidden")
    else:
        assert_error(login, 401, "invalid_credentials")


@rival_commits_in_between
def test_a_demotion_while_a_login_stores_its_token_reaches_that_token(api, monkeypatch):
    """The demotion runs on its own connection while the login holds the user's row: on
    PostgreSQL it waits for the login and then changes its token too; on SQLite it goes first and
    the login, whose read it overtook, is a 409 to retry. Never an admin token after it."""
    root = api.create_user(username="root", password=PASSWORD, priv_level="admin")
    store = tokens.issue_token
    demotions: list[gevent.Greenlet] = []

    def demote() -> None:
        with db.database.connection_context():
            users.update_user(api.account_id, root["id"], {"priv_level": "user"}, merge=True)

    def stored_while_demoted(*args, **kwargs):
        demotions.append(gevent.spawn(demote))
        demotions[0].join(timeout=0.5)  # done at once, unless it waits for this login
        return store(*args, **kwargs)

    monkeypatch.setattr(tokens, "issue_token", stored_while_demoted)
    creds = hashlib.md5(f"root:{PASSWORD}".encode()).hexdigest()
    login = api.put("/v2/user_auth", {"credentials": creds, "account_name": "acme"}, token=None)
    monkeypatch.undo()
    gevent.joinall(demotions, raise_error=True)
    assert api.get(f"users/{root['id']}").json()["data"]["priv_level"] == "user"
    if login.status_code != 409:
        assert login.status_code == 201, login.text
        assert_error(as_token(api, login.json()["auth_token"]).get("api_key"), 403, "forbidden")
