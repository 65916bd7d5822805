"""Documents as Kazoo writes and lists them: ids a create brings (`kz_doc:id/1`), schema defaults
(`kz_json_schema:add_defaults/2` over devices.json and users.json), view rows without nulls."""
from __future__ import annotations

import secrets

import pytest
from fixtures_web import assert_error, assert_invalid

pytestmark = pytest.mark.store

# The defaults of Kazoo's devices.json that a new device gets (3.22 and 4.x, sip.expire_seconds
# from 4.x), and those of users.json.
DEVICE_DEFAULTS = {
    "enabled": True,
    "sip": {"method": "password", "invite_format": "username", "expire_seconds": 300},
    "media": {"audio": {"codecs": ["PCMU"]}, "video": {"codecs": []},
              "encryption": {"enforce_security": False, "methods": []}},
    "call_restriction": {}, "caller_id": {}, "contact_list": {}, "dial_plan": {},
    "music_on_hold": {}, "ringtones": {},
    "exclude_from_queues": False, "mwi_unsolicitated_updates": True,
    "register_overwrite_notify": False, "suppress_unregister_notifications": False,
}
CALL_FORWARD_DEFAULTS = {"enabled": False, "substitute": True, "require_keypress": True,
                         "keep_caller_id": True, "direct_calls_only": False,
                         "ignore_early_media": True, "failover": False}
USER_DEFAULTS = {
    "enabled": True, "priv_level": "user", "vm_to_email_enabled": True, "verified": False,
    "require_password_update": False, "profile": {},
    "hotdesk": {"enabled": False, "require_pin": False, "keep_logged_in_elsewhere": False},
    "media": DEVICE_DEFAULTS["media"], "call_restriction": {}, "caller_id": {}, "contact_list": {},
    "dial_plan": {}, "music_on_hold": {}, "ringtones": {},
}


# --- ids kept on create -------------------------------------------------------------------

@pytest.mark.parametrize("collection", ["devices", "users"])
def test_kz_doc_id_a_create_keeps_the_id_it_brings(api, collection):
    wanted = secrets.token_hex(16)
    body = {"name": "kept"} if collection == "devices" else {"first_name": "K", "last_name": "Ept"}
    response = api.put(collection, {**body, "id": wanted})
    assert response.status_code == 201, response.text
    assert response.json()["data"]["id"] == wanted
    assert response.headers.get("Location", wanted).endswith(wanted)
    assert api.get(f"{collection}/{wanted}").json()["data"]["id"] == wanted
    assert wanted in [r["id"] for r in api.get(collection).json()["data"]]


def test_a_kept_id_serves_references_made_before(api):
    """A migration recreates a user and its phone with their old ids: the phone's owner_id and
    the hotdesk membership still name the user."""
    user_id, device_id = secrets.token_hex(16), secrets.token_hex(16)
    api.create("users", {"id": user_id, "first_name": "Mig", "last_name": "Rated"})
    api.create("devices", {"id": device_id, "name": "desk", "owner_id": user_id,
                           "hotdesk": {"users": {user_id: {}}}})
    rows = api.get(f"users/{user_id}/devices").json()["data"]
    assert [(r["id"], r["hotdesked"]) for r in rows] == [(device_id, False)]


def test_sub_account_keeps_its_id(api):
    wanted = secrets.token_hex(16)
    created = api.put("", {"id": wanted, "name": "Branch", "realm": "branch.acme.test"})
    assert created.status_code == 201, created.text
    assert created.json()["data"]["id"] == wanted
    assert api.get(f"/v2/accounts/{wanted}").json()["data"]["name"] == "Branch"


def test_an_id_in_use_is_409_conflict_and_nothing_is_stored(api, other):
    mine = api.create_device(name="first")
    user = api.create_user()
    theirs = other.create_device(name="theirs")
    for used in (mine["id"], user["id"], theirs["id"], api.account_id):
        response = api.put("devices", {"name": "second", "id": used})
        assert_error(response, 409, "conflict", {"message": "id already in use", "cause": used})
    assert [r["name"] for r in api.get("devices").json()["data"]] == ["first"]
    assert api.get(f"devices/{mine['id']}").json()["data"]["name"] == "first"


@pytest.mark.parametrize("bad", ["ABCDEF" * 5 + "AB", "short", 42, "g" * 32])
def test_an_id_that_is_not_an_id_is_400_naming_id(api, bad):
    assert_invalid(api.put("devices", {"name": "x", "id": bad}), "id:pattern", exact=True)
    assert_invalid(api.put("users", {"first_name": "A", "last_name": "B", "id": bad}), "id:pattern")
    assert api.get("devices").json()["data"] == []


def test_an_update_cannot_move_a_document_to_another_id(api):
    device = api.create_device(name="stays")
    elsewhere = secrets.token_hex(16)
    response = api.post(f"devices/{device['id']}", {"name": "stays", "id": elsewhere})
    assert response.status_code == 200 and response.json()["data"]["id"] == device["id"]
    assert_error(api.get(f"devices/{elsewhere}"), 404, "bad_identifier")


# --- defaults ---------------------------------------------------------------------------------

def test_add_defaults_fills_a_new_device_from_devices_json(api):
    device = api.create_device(name="bare")
    for key, value in DEVICE_DEFAULTS.items():
        if key == "sip":
            assert {k: device["sip"][k] for k in value} == value
        else:
            assert device[key] == value, key
    assert "call_forward" not in device  # an object without a default is not made for its flags
    assert api.get(f"devices/{device['id']}").json()["data"] == device


def test_add_defaults_fills_the_objects_given(api):
    device = api.create_device(name="fwd", call_forward={"enabled": True, "number": "5550001111"},
                               media={"audio": {"codecs": ["PCMA", "G722"]}}, sip={"method": "ip",
                                                                                   "ip": "10.0.0.9"})
    assert device["call_forward"] == {**CALL_FORWARD_DEFAULTS, "enabled": True, "number": "5550001111"}
    assert device["media"]["audio"] == {"codecs": ["PCMA", "G722"]}  # given values stay
    assert device["media"]["video"] == {"codecs": []}
    assert device["sip"]["method"] == "ip" and device["sip"]["invite_format"] == "username"


def test_add_defaults_fills_a_new_user_from_users_json(api):
    user = api.create_user()
    for key, value in USER_DEFAULTS.items():
        assert user[key] == value, key
    given = api.create_user(first_name="Hot", hotdesk={"id": "77", "require_pin": True, "pin": "1234"})
    assert given["hotdesk"] == {"id": "77", "pin": "1234", "require_pin": True, "enabled": False,
                                "keep_logged_in_elsewhere": False}


def test_defaults_are_validated_like_the_rest(api):
    assert_invalid(api.put("devices", {"name": "x", "media": {"audio": {"codecs": ["NOPE"]}}}),
                   "media.audio.codecs.0:enum")
    assert_invalid(api.put("devices", {"name": "x", "call_forward": {"substitute": "yes"}}),
                   "call_forward.substitute:type")


# --- listing rows -----------------------------------------------------------------------------

def test_devices_crossbar_listing_rows_have_no_nulls(api):
    bare = api.create_device(name="bare")
    response = api.get("devices")
    assert "null" not in response.text
    assert response.json()["data"] == [{"id": bare["id"], "name": "bare", "mac_address": "",
                                        "enabled": True, "device_type": "sip_device"}]
    user = api.create_user()
    hot = api.create_device(name="hot", hotdesk={"users": {user["id"]: {}}})
    for path in ("devices", "users", f"users/{user['id']}/devices", "hotdesks",
                 f"users/{user['id']}/hotdesks", f"devices/{hot['id']}/hotdesks"):
        assert "null" not in api.get(path).text, path


def test_cb_hotdesks_fetch_users_rows_carry_the_user_as_id(api):
    named = api.create_user(first_name="Ann", last_name="Lee", hotdesk={"id": "101"})
    plain = api.create_user(first_name="Bo", last_name="Ng")
    device = api.create_device(name="lobby", hotdesk={"users": {named["id"]: {}, plain["id"]: {}}})
    rows = api.get(f"devices/{device['id']}/hotdesks").json()["data"]
    assert sorted(rows, key=lambda r: r["id"]) == sorted([
        {"id": named["id"], "first_name": "Ann", "last_name": "Lee", "hotdesk_id": "101"},
        {"id": plain["id"], "first_name": "Bo", "last_name": "Ng"},
    ], key=lambda r: r["id"])
