"""A user's devices with `hotdesked`, the three hotdesk listings, and deleting users (SPEC §5, §4)."""
from __future__ import annotations

import secrets

import pytest
from fixtures_web import assert_error

from models import db
from models import device as store_devices
from models import hotdesk as store_hotdesk
from models import user as store_users

pytestmark = pytest.mark.store

USER_DEVICE_KEYS = {"id", "name", "mac_address", "owner_id", "enabled", "device_type", "hotdesked"}


def rows_by_name(api, user_id: str) -> dict[str, dict]:
    response = api.get(f"users/{user_id}/devices")
    assert response.status_code == 200, response.text
    rows = response.json()["data"]
    assert len(rows) == len({r["id"] for r in rows}), rows
    return {r["name"]: r for r in rows}


@pytest.fixture
def desk(api):
    """Alice owns `owned` and `both`, is hotdesked into `visiting` and `both`; Bob owns `bobs`."""
    alice = api.create_user(first_name="Alice", hotdesk={"id": "101"})
    bob = api.create_user(first_name="Bob", hotdesk={"id": "102"})
    devices = {
        "owned": api.create_device(name="owned", owner_id=alice["id"], mac_address="00:00:00:00:00:01"),
        "visiting": api.create_device(name="visiting", owner_id=bob["id"],
                                      hotdesk={"users": {alice["id"]: {}}}),
        "both": api.create_device(name="both", owner_id=alice["id"], hotdesk={"users": {alice["id"]: {}}}),
        "bobs": api.create_device(name="bobs", owner_id=bob["id"]),
        "lobby": api.create_device(name="lobby", hotdesk={"users": {bob["id"]: {}}}),
    }
    return alice, bob, devices


def test_user_devices_with_hotdesked(api, desk):
    alice, bob, devices = desk
    rows = rows_by_name(api, alice["id"])
    assert set(rows) == {"owned", "visiting", "both"}
    assert rows["owned"]["hotdesked"] is False
    assert rows["visiting"]["hotdesked"] is True
    assert rows["both"]["hotdesked"] is False
    assert rows["owned"] == {"id": devices["owned"]["id"], "name": "owned", "mac_address": "000000000001",
                             "owner_id": alice["id"], "enabled": True, "device_type": "sip_device",
                             "hotdesked": False}
    assert all(set(r) == USER_DEVICE_KEYS for r in rows.values())
    bobs = rows_by_name(api, bob["id"])
    assert {n: r["hotdesked"] for n, r in bobs.items()} == {"visiting": False, "bobs": False, "lobby": True}


def test_user_devices_under_v1(api, desk):
    alice, _, _ = desk
    assert len(api.get(f"users/{alice['id']}/devices", version="v1").json()["data"]) == 3


def test_user_devices_of_a_user_with_none(api):
    carol = api.create_user(first_name="Carol")
    api.create_device(name="unowned")
    assert api.get(f"users/{carol['id']}/devices").json()["data"] == []


@pytest.mark.parametrize("user_id", ["5f0c" * 8, "nobody"])
def test_user_devices_of_an_unknown_user_is_404(api, desk, user_id):
    assert_error(api.get(f"users/{user_id}/devices"), 404, "bad_identifier",
                 {"message": "bad identifier", "cause": user_id})
    assert_error(api.get(f"users/{user_id}/hotdesks"), 404, "bad_identifier")


def test_user_devices_follow_changes(api, desk):
    alice, bob, devices = desk
    api.patch(f"devices/{devices['visiting']['id']}", {"hotdesk": {"users": {alice["id"]: None}}})
    api.patch(f"devices/{devices['owned']['id']}", {"owner_id": bob["id"]})
    api.patch(f"devices/{devices['lobby']['id']}", {"hotdesk": {"users": {alice["id"]: {}}}})
    rows = rows_by_name(api, alice["id"])
    assert {n: r["hotdesked"] for n, r in rows.items()} == {"both": False, "lobby": True}
    api.delete(f"devices/{devices['both']['id']}")
    assert set(rows_by_name(api, alice["id"])) == {"lobby"}


def test_user_hotdesks(api, desk):
    alice, bob, devices = desk
    rows = api.get(f"users/{alice['id']}/hotdesks").json()["data"]
    assert sorted(r["device_id"] for r in rows) == sorted([devices["visiting"]["id"], devices["both"]["id"]])
    visiting = next(r for r in rows if r["device_id"] == devices["visiting"]["id"])
    assert visiting["device_name"] == "visiting" and visiting["owner_id"] == bob["id"]


def test_device_hotdesks(api, desk):
    alice, bob, devices = desk
    rows = api.get(f"devices/{devices['visiting']['id']}/hotdesks").json()["data"]
    assert [r["id"] for r in rows] == [alice["id"]]
    assert rows[0]["first_name"] == "Alice" and rows[0]["hotdesk_id"] == "101"
    assert api.get(f"devices/{devices['owned']['id']}/hotdesks").json()["data"] == []
    missing = secrets.token_hex(16)
    assert_error(api.get(f"devices/{missing}/hotdesks"), 404, "bad_identifier",
                 {"message": "bad identifier", "cause": missing})


@pytest.mark.parametrize("path", ["hotdesks", "users/hotdesks"])
def test_account_hotdesks(api, desk, path):
    alice, bob, devices = desk
    response = api.get(path)
    assert response.status_code == 200, response.text
    pairs = {(r["device_id"], r["user_id"]) for r in response.json()["data"]}
    assert pairs == {(devices["visiting"]["id"], alice["id"]), (devices["both"]["id"], alice["id"]),
                     (devices["lobby"]["id"], bob["id"])}
    lobby = next(r for r in response.json()["data"] if r["device_id"] == devices["lobby"]["id"])
    assert lobby["device_name"] == "lobby" and lobby["first_name"] == "Bob" and lobby["hotdesk_id"] == "102"


def test_account_hotdesks_are_the_accounts_only(api, other, desk):
    theirs = other.create_user()
    other.create_device(name="theirs", hotdesk={"users": {theirs["id"]: {}}})
    assert len(api.get("hotdesks").json()["data"]) == 3
    assert len(other.get("hotdesks").json()["data"]) == 1


def test_deleting_a_user_clears_owner_and_hotdesks(api, desk):
    alice, bob, devices = desk
    revisions = {name: api.get(f"devices/{d['id']}").json()["revision"] for name, d in devices.items()}
    assert api.delete(f"users/{alice['id']}").status_code == 200
    for name in ("owned", "both"):
        doc = api.get(f"devices/{devices[name]['id']}").json()
        assert "owner_id" not in doc["data"], name
        assert doc["revision"] != revisions[name]
    for name in ("visiting", "both"):
        doc = api.get(f"devices/{devices[name]['id']}").json()["data"]
        assert alice["id"] not in doc["hotdesk"]["users"], name
    assert api.get(f"devices/{devices['visiting']['id']}").json()["data"]["owner_id"] == bob["id"]
    # Bob's devices were not touched.
    assert api.get(f"devices/{devices['bobs']['id']}").json()["revision"] == revisions["bobs"]
    assert api.get(f"devices/{devices['lobby']['id']}").json()["revision"] == revisions["lobby"]
    assert_error(api.get(f"users/{alice['id']}/devices"), 404, "bad_identifier")
    assert all(r["user_id"] != alice["id"] for r in api.get("hotdesks").json()["data"])
    assert api.get(f"devices/{devices['visiting']['id']}/hotdesks").json()["data"] == []
    listing = {r["name"]: r for r in api.get("devices").json()["data"]}
    assert "owner_id" not in listing["owned"]
    # The devices stay valid: a PATCH with nothing else still passes validation.
    assert api.patch(f"devices/{devices['both']['id']}", {"name": "both2"}).status_code == 200
    # A new user cannot inherit anything.
    newcomer = api.create_user(first_name="New", hotdesk={"id": "101"})
    assert api.get(f"users/{newcomer['id']}/devices").json()["data"] == []


# --- the store's hotdesk rules (used by the FreeSWITCH callouts) -------------------------------

def test_login_moves_the_user_unless_kept_elsewhere(api, desk):
    alice, bob, devices = desk
    with db.database.connection_context():
        user = store_users.get_user(api.account_id, alice["id"])
        change = store_hotdesk.login(user, devices["lobby"]["id"])
        assert {d.id for d in change.changed} >= {devices["lobby"]["id"], devices["visiting"]["id"]}
        assert [d["device_id"] for d in store_hotdesk.user_hotdesks(api.account_id, alice["id"])] == \
            [devices["lobby"]["id"]]
        keeper = store_users.get_user(api.account_id, bob["id"])
        store_users.update_user(api.account_id, bob["id"], {"hotdesk": {"keep_logged_in_elsewhere": True}},
                                merge=True)
        keeper = store_users.get_user(api.account_id, bob["id"])
        store_hotdesk.login(keeper, devices["visiting"]["id"])
        assert {d["device_id"] for d in store_hotdesk.user_hotdesks(api.account_id, bob["id"])} == \
            {devices["lobby"]["id"], devices["visiting"]["id"]}
        store_hotdesk.logout(keeper)
        assert store_hotdesk.user_hotdesks(api.account_id, bob["id"]) == []
    # The documents say the same as the membership table.
    lobby = api.get(f"devices/{devices['lobby']['id']}").json()["data"]
    assert set(lobby["hotdesk"]["users"]) == {alice["id"]}
    assert {n: r["hotdesked"] for n, r in rows_by_name(api, alice["id"]).items()} == \
        {"owned": False, "both": False, "lobby": True}


def test_store_user_device_rows_match_the_api(api, desk):
    alice, _, _ = desk
    with db.database.connection_context():
        rows = store_devices.user_device_rows(api.account_id, alice["id"])
    assert rows == api.get(f"users/{alice['id']}/devices").json()["data"]


# --- SPEC §1: a method a path does not support answers 405 ----------------------------------

@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE", "PUT"])
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_users_hotdesks_refuses_other_methods_with_405(api, method, version):
    """Not 404 for a user called `hotdesks`: the older SDKs' path is a listing, GET only."""
    response = api.request(method, "users/hotdesks", {"first_name": "x"}, version=version)
    assert_error(response, 405, "invalid_method", {"message": "method not allowed"})
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert "GET" in allowed and method not in allowed


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
def test_users_hotdesks_405_comes_first(api, other, method):
    """SPEC §3: 405 before a malformed body, a missing token and another account's path."""
    assert_error(api.request(method, "users/hotdesks", raw="{not json", token=None), 405, "invalid_method")
    assert_error(api.request(method, f"/v2/accounts/{other.account_id}/users/hotdesks"), 405,
                 "invalid_method")
    assert api.get("users/hotdesks").status_code == 200
