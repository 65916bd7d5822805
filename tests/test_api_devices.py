"""Devices over HTTP: CRUD, every validation rule of SPEC §4's device table, database rules."""
from __future__ import annotations

import secrets

import pytest
from fixtures_web import UNKNOWN_ID, assert_error, assert_invalid

from models import db
from models import device as store_devices

pytestmark = pytest.mark.store


# --- create, read, replace, merge, delete -----------------------------------------------------

@pytest.mark.parametrize("version", ["v1", "v2"])
def test_create_answers_201_with_location_and_defaults(api, version):
    response = api.put("devices", {"name": "Desk phone", "sip": {"username": "alice", "password": "secret-1"}},
                       version=version)
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert response.headers["Location"] == f"/{version}/accounts/{api.account_id}/devices/{data['id']}"
    assert len(data["id"]) == 32 and int(data["id"], 16) >= 0
    assert data["name"] == "Desk phone"
    assert data["enabled"] is True
    assert data["device_type"] == "sip_device"
    assert data["sip"] == {"username": "alice", "password": "secret-1", "realm": "acme.test",
                           "method": "password", "invite_format": "username", "expire_seconds": 300}
    fetched = api.get(data["id"] and f"devices/{data['id']}", version=version)
    assert fetched.status_code == 200
    assert fetched.json()["data"] == data
    assert fetched.json()["revision"] == response.json()["revision"]


def test_sip_password_is_returned_to_the_account(api):
    device = api.create_device(sip={"username": "alice", "password": "s3cret-pw"})
    assert api.get(f"devices/{device['id']}").json()["data"]["sip"]["password"] == "s3cret-pw"


def test_unknown_keys_are_kept_and_private_keys_dropped(api):
    device = api.create_device(custom={"colour": "teal", "n": [1, 2]}, pvt_owner="x", _rev="1-x",
                               _id="abc", vendor_key=True)
    assert device["custom"] == {"colour": "teal", "n": [1, 2]} and device["vendor_key"] is True
    stored = api.get(f"devices/{device['id']}").json()["data"]
    assert not [k for k in stored if k.startswith("pvt_") or k.startswith("_")]
    assert stored["custom"] == {"colour": "teal", "n": [1, 2]}
    patched = api.patch(f"devices/{device['id']}", {"pvt_type": "device", "_deleted": True}).json()["data"]
    assert not [k for k in patched if k.startswith("pvt_") or k.startswith("_")]


def test_post_replaces_the_document(api):
    device = api.create_device(name="one", custom="kept?", sip={"username": "alice", "password": "secret-1"},
                               mac_address="00:11:22:33:44:55")
    response = api.post(f"devices/{device['id']}", {"name": "two", "do_not_disturb": {"enabled": True}})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["name"] == "two" and data["do_not_disturb"] == {"enabled": True}
    for gone in ("custom", "mac_address"):
        assert gone not in data
    # The old SIP identity is gone; what is left of `sip` are Kazoo's defaults.
    assert "username" not in data["sip"] and "password" not in data["sip"]
    assert api.get(f"devices/{device['id']}").json()["data"] == data
    # Its SIP identity and MAC are free again.
    api.create_device(sip={"username": "alice", "password": "secret-1"}, mac_address="001122334455")


def test_patch_merges_and_null_removes(api):
    device = api.create_device(name="one", custom={"a": 1, "b": 2}, extra="x",
                               sip={"username": "alice", "password": "secret-1"})
    response = api.patch(f"devices/{device['id']}", {"custom": {"b": None, "c": 3}, "extra": None,
                                                     "sip": {"password": "secret-2"}, "new": [1]})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["name"] == "one"
    assert data["custom"] == {"a": 1, "c": 3}
    assert "extra" not in data and data["new"] == [1]
    assert data["sip"]["username"] == "alice" and data["sip"]["password"] == "secret-2"
    assert api.get(f"devices/{device['id']}").json()["data"] == data


def test_patch_revalidates_the_merged_document(api):
    device = api.create_device(name="one")
    assert_invalid(api.patch(f"devices/{device['id']}", {"name": None}), "name:required", exact=True)
    assert_invalid(api.patch(f"devices/{device['id']}", {"sip": {"method": "ip"}}), "sip.ip:required")
    assert api.get(f"devices/{device['id']}").json()["data"]["name"] == "one"


def test_post_revalidates_everything(api):
    device = api.create_device(name="one")
    assert_invalid(api.post(f"devices/{device['id']}", {"enabled": False}), "name:required", exact=True)
    assert api.get(f"devices/{device['id']}").json()["data"]["enabled"] is True


def test_delete_returns_the_old_document_and_hides_it_everywhere(api, bridge):
    device = api.create_device(name="gone", sip={"username": "alice", "password": "secret-1"})
    keep = api.create_device(name="kept")
    with db.database.connection_context():
        assert store_devices.directory_entry("acme.test", "alice") is not None
    response = api.delete(f"devices/{device['id']}")
    assert response.status_code == 200, response.text
    assert response.json()["data"] == device
    assert_error(api.get(f"devices/{device['id']}"), 404, "bad_identifier",
                 {"message": "bad identifier", "cause": device["id"]})
    assert api.ids("devices") == [keep["id"]]
    assert_error(api.patch(f"devices/{device['id']}", {"name": "back"}), 404, "bad_identifier")
    assert_error(api.delete(f"devices/{device['id']}"), 404, "bad_identifier")
    with db.database.connection_context():
        assert store_devices.directory_entry("acme.test", "alice") is None
    # The SIP identity is free again.
    api.create_device(sip={"username": "ALICE", "password": "secret-1"})


def test_sync_is_never_stored(api):
    device = api.create_device(sync=True)
    assert "sync" not in device
    patched = api.patch(f"devices/{device['id']}", {"sync": True, "name": "renamed"}).json()["data"]
    assert "sync" not in patched and patched["name"] == "renamed"
    assert "sync" not in api.get(f"devices/{device['id']}").json()["data"]
    assert_invalid(api.patch(f"devices/{device['id']}", {"sync": "yes"}), "sync:type", exact=True)
    # reported with the document's own failures, in one 400; nothing written
    assert_invalid(api.put("devices", {"name": 5, "sync": "yes"}), "sync:type", "name:type", exact=True)
    assert_invalid(api.patch(f"devices/{device['id']}", {"name": "", "sync": 1}), "sync:type", "name:minLength",
                   exact=True)
    assert api.get(f"devices/{device['id']}").json()["data"]["name"] == "renamed"
    # null is as absent
    assert api.patch(f"devices/{device['id']}", {"sync": None, "name": "again"}).status_code == 200
    assert "sync" not in api.get(f"devices/{device['id']}").json()["data"]


# --- rules that need the database -------------------------------------------------------------

def test_mac_address_is_cleansed(api):
    device = api.create_device(mac_address="AA-bb:CC.dd ee_FF")
    assert device["mac_address"] == "aabbccddeeff"
    assert api.get(f"devices/{device['id']}").json()["data"]["mac_address"] == "aabbccddeeff"
    patched = api.patch(f"devices/{device['id']}", {"mac_address": "0011.2233.4455"}).json()["data"]
    assert patched["mac_address"] == "001122334455"


def test_mac_address_is_unique_in_the_account_only(api, other):
    first = api.create_device(mac_address="aa:bb:cc:dd:ee:ff")
    data = assert_invalid(api.put("devices", {"name": "twin", "mac_address": "AABBCCDDEEFF"}),
                          "mac_address:unique", exact=True)
    assert data["mac_address"]["unique"]["cause"] == "aabbccddeeff"
    second = api.create_device(mac_address="aa:bb:cc:dd:ee:00")
    assert_invalid(api.patch(f"devices/{second['id']}", {"mac_address": "AA-BB-CC-DD-EE-FF"}),
                   "mac_address:unique")
    # Its own MAC does not collide with itself; another account may hold the same MAC.
    assert api.patch(f"devices/{first['id']}", {"mac_address": "AA:BB:CC:DD:EE:FF"}).status_code == 200
    assert other.put("devices", {"name": "same", "mac_address": "aabbccddeeff"}).status_code == 201


def test_sip_username_is_unique_in_the_realm_case_insensitively(api, other):
    first = api.create_device(sip={"username": "Alice", "password": "secret-1"})
    for username in ("alice", "ALICE", "aLiCe"):
        data = assert_invalid(api.put("devices", {"name": "x", "sip": {"username": username}}),
                              "sip.username:unique", exact=True)
        assert data["sip.username"]["unique"] == {"message": "SIP credentials already in use",
                                                  "cause": username}
    second = api.create_device(sip={"username": "bob", "password": "secret-1"})
    assert_invalid(api.patch(f"devices/{second['id']}", {"sip": {"username": "alice"}}), "sip.username:unique")
    assert api.patch(f"devices/{first['id']}", {"sip": {"username": "ALICE"}}).status_code == 200
    # Another realm (the other account's) has its own namespace...
    assert other.put("devices", {"name": "x", "sip": {"username": "alice"}}).status_code == 201
    # ...and a device elsewhere that names this realm explicitly shares this one.
    assert_invalid(other.put("devices", {"name": "x", "sip": {"username": "alice", "realm": "ACME.test"}}),
                   "sip.username:unique")
    assert len(api.ids("devices")) == 2


def test_sip_ip_is_unique(api):
    api.create_device(sip={"method": "ip", "ip": "10.1.2.3"})
    assert_invalid(api.put("devices", {"name": "x", "sip": {"method": "ip", "ip": "10.1.2.3"}}),
                   "sip.ip:unique", exact=True)
    # An ip that is not used for authentication does not count.
    assert api.put("devices", {"name": "x", "sip": {"method": "password", "ip": "10.1.2.3"}}).status_code == 201


def test_owner_must_be_a_user_of_the_account(api, other):
    user = api.create_user()
    stranger = other.create_user()
    device = api.create_device(owner_id=user["id"])
    assert device["owner_id"] == user["id"]
    data = assert_invalid(api.put("devices", {"name": "x", "owner_id": stranger["id"]}), "owner_id:not_found")
    assert data["owner_id"]["not_found"]["cause"] == stranger["id"]
    assert_invalid(api.patch(f"devices/{device['id']}", {"owner_id": secrets.token_hex(16)}),
                   "owner_id:not_found")
    assert api.get(f"devices/{device['id']}").json()["data"]["owner_id"] == user["id"]


def test_hotdesk_users_must_be_users_of_the_account(api, other):
    alice, bob = api.create_user(), api.create_user(first_name="Bob")
    stranger = other.create_user()
    device = api.create_device(hotdesk={"users": {alice["id"]: {}, bob["id"]: {}}})
    assert set(device["hotdesk"]["users"]) == {alice["id"], bob["id"]}
    data = assert_invalid(api.patch(f"devices/{device['id']}",
                                    {"hotdesk": {"users": {stranger["id"]: {}, UNKNOWN_ID: {}}}}),
                          f"hotdesk.users.{stranger['id']}:not_found", f"hotdesk.users.{UNKNOWN_ID}:not_found",
                          exact=True)
    assert data
    assert_invalid(api.patch(f"devices/{device['id']}", {"hotdesk": {"users": {alice["id"]: "yes"}}}),
                   f"hotdesk.users.{alice['id']}:type")
    assert set(api.get(f"devices/{device['id']}").json()["data"]["hotdesk"]["users"]) == {alice["id"], bob["id"]}


def test_sip_realm_defaults_to_the_account_realm_of_a_sub_account(api):
    sub = api.put("", {"name": "child", "realm": "child.acme.test"}).json()["data"]["id"]
    response = api.put(f"/v2/accounts/{sub}/devices", {"name": "x", "sip": {"username": "alice"}})
    assert response.status_code == 201, response.text
    assert response.json()["data"]["sip"]["realm"] == "child.acme.test"
    # Same username, different realm: both exist.
    api.create_device(sip={"username": "alice", "password": "secret-1"})


def test_a_device_cannot_take_another_accounts_realm(api, other):
    response = other.put("devices", {"name": "impostor", "sip": {"username": "bob", "password": "secret-1",
                                                                 "realm": "acme.test"}})
    assert_invalid(response, "sip.realm:invalid")
    assert api.put("devices", {"name": "mine", "sip": {"username": "bob"}}).status_code == 201
