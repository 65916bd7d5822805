"""Devices over HTTP: CRUD, every validation rule of SPEC §4's device table, database rules."""
from __future__ import annotations

import secrets

import pytest
from fixtures_web import assert_error, assert_invalid

from models import db
from models import device as store_devices

pytestmark = pytest.mark.store


def device_ids(api) -> list[str]:
    return [row["id"] for row in api.get("devices", params={"paginate": "false"}).json()["data"]]


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
    assert device_ids(api) == [keep["id"]]
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


# --- the schema rules of SPEC §4 --------------------------------------------------------------

UNKNOWN_ID = "f" * 32

RULES = [
    ({"name": None}, "name:required"),
    ({"name": ""}, "name:minLength"),
    ({"name": "n" * 129}, "name:maxLength"),
    ({"name": 7}, "name:type"),
    ({"enabled": "yes"}, "enabled:type"),
    ({"device_type": ""}, "device_type:minLength"),
    ({"device_type": "t" * 65}, "device_type:maxLength"),
    ({"device_type": ["softphone"]}, "device_type:type"),
    ({"owner_id": "not-an-id"}, "owner_id:pattern"),
    ({"owner_id": "A" * 32}, "owner_id:pattern"),
    ({"owner_id": 5}, "owner_id:type"),
    ({"owner_id": UNKNOWN_ID}, "owner_id:not_found"),
    ({"mac_address": "00:11:22:33:44"}, "mac_address:pattern"),
    ({"mac_address": "00:11:22:33:44:55:66"}, "mac_address:pattern"),
    ({"mac_address": "zz:zz:zz:zz:zz:zz"}, "mac_address:pattern"),
    ({"mac_address": 1122334455}, "mac_address:type"),
    ({"presence_id": ""}, "presence_id:minLength"),
    ({"presence_id": "p" * 129}, "presence_id:maxLength"),
    ({"presence_id": "has space"}, "presence_id:pattern"),
    ({"presence_id": "a,b"}, "presence_id:pattern"),
    ({"presence_id": "alice@"}, "presence_id:pattern"),
    ({"presence_id": "alice\n"}, "presence_id:pattern"),
    ({"presence_id": 2001}, "presence_id:type"),
    ({"sip": "alice"}, "sip:type"),
    ({"sip": {"username": "a"}}, "sip.username:minLength"),
    ({"sip": {"username": "u" * 33}}, "sip.username:maxLength"),
    ({"sip": {"username": "al ice"}}, "sip.username:pattern"),
    ({"sip": {"username": "alice@acme"}}, "sip.username:pattern"),
    ({"sip": {"username": "alice\n"}}, "sip.username:pattern"),
    ({"sip": {"username": 2001}}, "sip.username:type"),
    ({"sip": {"password": "abcd"}}, "sip.password:minLength"),
    ({"sip": {"password": "p" * 33}}, "sip.password:maxLength"),
    ({"sip": {"password": "pässword"}}, "sip.password:pattern"),
    ({"sip": {"password": "pass\tword"}}, "sip.password:pattern"),
    ({"sip": {"password": 12345}}, "sip.password:type"),
    ({"sip": {"realm": "a.b"}}, "sip.realm:minLength"),
    ({"sip": {"realm": "r" * 254}}, "sip.realm:maxLength"),
    ({"sip": {"realm": "-bad.test"}}, "sip.realm:pattern"),
    ({"sip": {"realm": "bad_realm.test"}}, "sip.realm:pattern"),
    ({"sip": {"realm": 1234}}, "sip.realm:type"),
    ({"sip": {"method": "digest"}}, "sip.method:enum"),
    ({"sip": {"method": "ip"}}, "sip.ip:required"),
    ({"sip": {"method": "ip", "ip": "999.1.1.1"}}, "sip.ip:pattern"),
    ({"sip": {"method": "ip", "ip": "10.0.0"}}, "sip.ip:pattern"),
    ({"sip": {"method": "ip", "ip": "::1"}}, "sip.ip:pattern"),
    ({"sip": {"invite_format": "sip"}}, "sip.invite_format:enum"),
    ({"sip": {"expire_seconds": "300"}}, "sip.expire_seconds:type"),
    ({"sip": {"expire_seconds": 1.5}}, "sip.expire_seconds:type"),
    ({"sip": {"expire_seconds": 300.0}}, "sip.expire_seconds:type"),
    ({"sip": {"expire_seconds": 0}}, "sip.expire_seconds:minimum"),
    ({"caller_id": "x"}, "caller_id:type"),
    ({"caller_id": {"internal": {"name": "n" * 36}}}, "caller_id.internal.name:maxLength"),
    ({"caller_id": {"external": {"name": "Alice@home"}}}, "caller_id.external.name:pattern"),
    ({"caller_id": {"emergency": {"name": "Smith, Alice"}}}, "caller_id.emergency.name:pattern"),
    ({"caller_id": {"internal": {"name": "it's"}}}, "caller_id.internal.name:pattern"),
    ({"caller_id": {"internal": {"name": "Front Desk "}}}, "caller_id.internal.name:pattern"),
    ({"caller_id": {"external": {"name": "  "}}}, "caller_id.external.name:pattern"),
    ({"caller_id": {"internal": {"number": "1" * 36}}}, "caller_id.internal.number:maxLength"),
    ({"caller_id": {"external": {"number": "555-1234"}}}, "caller_id.external.number:pattern"),
    ({"caller_id": {"emergency": {"number": 911}}}, "caller_id.emergency.number:type"),
    ({"call_forward": 3}, "call_forward:type"),
    ({"call_forward": {"enabled": "yes"}}, "call_forward.enabled:type"),
    ({"call_forward": {"number": "1" * 36}}, "call_forward.number:maxLength"),
    ({"call_forward": {"number": "sip:bob@x"}}, "call_forward.number:pattern"),
    ({"call_forward": {"require_keypress": 1}}, "call_forward.require_keypress:type"),
    ({"call_forward": {"keep_caller_id": "true"}}, "call_forward.keep_caller_id:type"),
    ({"call_forward": {"failover": "no"}}, "call_forward.failover:type"),
    ({"call_forward": {"direct_calls_only": 0}}, "call_forward.direct_calls_only:type"),
    ({"call_forward": {"ignore_early_media": []}}, "call_forward.ignore_early_media:type"),
    ({"do_not_disturb": True}, "do_not_disturb:type"),
    ({"do_not_disturb": {"enabled": "on"}}, "do_not_disturb.enabled:type"),
    ({"hotdesk": "x"}, "hotdesk:type"),
    ({"hotdesk": {"users": ["x"]}}, "hotdesk.users:type"),
    ({"hotdesk": {"users": {"not-an-id": {}}}}, "hotdesk.users:pattern"),
    ({"hotdesk": {"users": {UNKNOWN_ID: {}}}}, f"hotdesk.users.{UNKNOWN_ID}:not_found"),
    ({"provision": "x"}, "provision:type"),
    ({"provision": {"check_sync_event": ""}}, "provision.check_sync_event:minLength"),
    ({"provision": {"check_sync_event": "e" * 65}}, "provision.check_sync_event:maxLength"),
    ({"provision": {"check_sync_event": "check sync"}}, "provision.check_sync_event:pattern"),
    ({"provision": {"check_sync_event": "check-sync\r\nX: y"}}, "provision.check_sync_event:pattern"),
    ({"media": "x"}, "media:type"),
    ({"ringtones": []}, "ringtones:type"),
    ({"call_restriction": 1}, "call_restriction:type"),
    ({"dial_plan": "x"}, "dial_plan:type"),
    ({"music_on_hold": True}, "music_on_hold:type"),
    ({"allow_anonymous_quickcalls": "true"}, "allow_anonymous_quickcalls:type"),
]


def _with(base: dict, change: dict) -> dict:
    doc = dict(base)
    for key, value in change.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def _groups(rules: list) -> dict[str, list]:
    """The rules grouped by top-level key (one test per key keeps the module fast)."""
    groups: dict[str, list] = {}
    for change, rule in rules:
        groups.setdefault(next(iter(change)), []).append((change, rule))
    return groups


GROUPS = _groups(RULES)


@pytest.mark.parametrize("key", list(GROUPS))
def test_create_refuses(api, key):
    failures = []
    for change, rule in GROUPS[key]:
        response = api.put("devices", _with({"name": "phone"}, change))
        try:
            data = assert_invalid(response, rule)
            assert len(data) == 1, data
        except AssertionError as exc:
            failures.append(f"{rule} for {change}: {exc}")
    assert not failures, "\n".join(failures)
    assert device_ids(api) == []


@pytest.mark.parametrize("key", list(GROUPS))
def test_update_refuses_and_changes_nothing(api, key):
    device = api.create_device(name="phone")
    before = api.get(f"devices/{device['id']}").json()
    failures = []
    for change, rule in GROUPS[key]:
        patch = {k: v for k, v in change.items() if v is not None} or {"name": None}
        for method, body in (("POST", _with({"name": "phone"}, change)), ("PATCH", patch)):
            try:
                assert_invalid(api.request(method, f"devices/{device['id']}", body), rule)
            except AssertionError as exc:
                failures.append(f"{method} {rule} for {change}: {exc}")
    assert not failures, "\n".join(failures)
    after = api.get(f"devices/{device['id']}").json()
    assert after["data"] == before["data"] and after["revision"] == before["revision"]


@pytest.mark.parametrize("doc", [
    {"name": "n" * 128, "device_type": "t" * 64},
    {"name": "x", "device_type": "fax", "enabled": False, "presence_id": "2001@acme.test"},
    {"name": "x", "presence_id": "*97#.+_-"},
    {"name": "x", "sip": {"username": "u" * 32, "password": "p" * 32, "realm": "r" * 60 + ".test"}},
    {"name": "x", "sip": {"username": "a.b_c-d+e", "password": " !~\"'{}|", "invite_format": "e164",
                          "expire_seconds": 3600}},
    {"name": "x", "sip": {"method": "ip", "ip": "192.168.1.10"}},
    {"name": "x", "caller_id": {"internal": {"name": "Alice (Desk) 2.0", "number": "+15551234567"},
                                "external": {"name": "n" * 35, "number": "1" * 35}}},
    {"name": "x", "call_forward": {"enabled": True, "number": "+1 (555) 123-4567", "require_keypress": True,
                                   "keep_caller_id": True, "substitute": False, "failover": True,
                                   "direct_calls_only": False, "ignore_early_media": True}},
    {"name": "x", "provision": {"check_sync_event": "check-sync;reboot=false"},
     "media": {"audio": {"codecs": ["PCMU"]}}, "ringtones": {}, "call_restriction": {}, "dial_plan": {},
     "music_on_hold": {"media_id": "x"}, "allow_anonymous_quickcalls": True,
     "do_not_disturb": {"enabled": True}, "mac_address": ""},
    {"name": "x", "deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": [1, {"h": None}]}}}}}}}},
])
def test_valid_documents_are_stored_as_sent(api, doc):
    created = api.create("devices", doc)
    stored = api.get(f"devices/{created['id']}").json()["data"]
    for key, value in doc.items():
        if key == "mac_address" and value == "":
            assert "mac_address" not in stored
        elif isinstance(value, dict) and key in ("sip", "media"):  # Kazoo's defaults fill them in
            assert {k: stored[key][k] for k in value} == value
        else:
            assert stored[key] == value, key


def test_several_failures_are_reported_together_and_nothing_is_stored(api):
    api.create_device(name="first", mac_address="001122334455", sip={"username": "alice", "password": "secret-1"})
    response = api.put("devices", {
        "sip": {"username": "ALICE", "password": "abc", "method": "ip"},
        "mac_address": "00-11-22-33-44-55",
        "owner_id": UNKNOWN_ID,
        "enabled": "yes",
        "caller_id": {"internal": {"number": "12ab"}},
    })
    data = assert_invalid(response, "name:required", "sip.username:unique", "sip.password:minLength",
                          "sip.ip:required", "mac_address:unique", "owner_id:not_found", "enabled:type",
                          "caller_id.internal.number:pattern", exact=True)
    assert data["sip.username"]["unique"]["cause"] == "ALICE"
    assert len(device_ids(api)) == 1


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
    assert len(device_ids(api)) == 2


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
