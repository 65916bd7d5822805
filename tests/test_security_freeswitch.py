"""Account boundaries on what reaches FreeSWITCH (SPEC §3, §4 `presence_id`, §6, §7), end to end
on a test FreeSWITCH: one account never lights, rings, resyncs or unregisters another's phones,
also through documents stored before the rules existed."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest
import requests
from fixtures_web import ApiClient, assert_error, assert_invalid, client_for, make_account
from test_actions_support import (
    Bridge,
    bridge_fixture,
    presence_reset,
    write_raw,
)
from test_freeswitch_directory import ask, lookup, user_of

from models import db
from models.tables import DeviceRow
from web.callouts.directory_xml import NOT_FOUND

OTHER = "other.test"


@pytest.fixture
def bridge(start_bridge, fake_freeswitch_factory, esl_pool_factory) -> Iterator[Bridge]:
    yield from bridge_fixture(start_bridge, fake_freeswitch_factory, esl_pool_factory)


@pytest.fixture
def other(bridge: Bridge) -> Iterator[ApiClient]:
    """A second account, realm other.test, with its own 2001."""
    account_id, key, admin_id = make_account("other", OTHER)
    client = client_for(bridge.url, account_id, key, admin_id, realm=OTHER)
    client.create_device(name="their 2001", sip={"username": "2001", "password": "their-secret"})
    yield client
    client.session.close()


def presence_events(bridge: Bridge) -> list[str]:
    return [c for c in bridge.sent() if c.startswith("sendevent PRESENCE_IN")]


# --- presence ids name the account's own lamps -------------------------------------------------

@pytest.mark.parametrize("kind", ["devices", "users"])
def test_a_presence_id_of_another_realm_is_refused(bridge: Bridge, other: ApiClient, kind: str) -> None:
    """The attack: A stores `2001@other.test` and lights B's lamp through its own document."""
    api = bridge.api
    base = {"name": "x"} if kind == "devices" else {"first_name": "A", "last_name": "B"}
    assert_invalid(api.put(kind, {**base, "presence_id": f"2001@{OTHER}"}), "presence_id:invalid", exact=True)
    created = api.create(kind, {**base, "presence_id": "2001"})
    for method in ("PATCH", "POST"):
        change = {"presence_id": "2001@OTHER.test"} if method == "PATCH" else {**base, "presence_id": "x@other.test"}
        assert_invalid(api.request(method, f"{kind}/{created['id']}", change), "presence_id:invalid")
    assert api.get(f"{kind}/{created['id']}").json()["data"]["presence_id"] == "2001"
    # the account's own realm, in any case, and a bare id are fine
    for value in ("2001@acme.test", "2001@ACME.test", "frontdesk"):
        assert api.patch(f"{kind}/{created['id']}", {"presence_id": value}).status_code == 200


def test_a_stored_foreign_presence_id_never_reaches_freeswitch(bridge: Bridge, other: ApiClient) -> None:
    device = bridge.device("2001")
    user = bridge.user(presence_id="boss")
    write_raw("devices", device["id"], {"presence_id": f"2001@{OTHER}"})
    write_raw("users", user["id"], {"presence_id": f"2001@{OTHER}"})
    bridge.mark()
    for path in (f"devices/{device['id']}/presence", f"users/{user['id']}/presence"):
        for body in (None, {"action": "set", "state": "confirmed"}):
            assert_invalid(bridge.api.post(path, body), "presence_id:invalid")
    assert presence_events(bridge) == []
    # The directory and the dialplan's lookup fall back to the phone's own id.
    answer = user_of(ask(bridge, lookup("2001")))
    assert "presence_id=2001@acme.test}" in answer["params"]["dial-string"]
    assert answer["variables"]["presence_id"] == "2001@acme.test"
    assert OTHER not in str(answer)
    lamp = requests.post(f"{bridge.url}/freeswitch/presence", data={"sip_user": "2001", "realm": "acme.test"},
                         headers={"X-ESL-Bridge-Secret": bridge.server.settings.freeswitch_secret}, timeout=10)
    assert lamp.json()["presence_id"] is None


def test_a_users_presence_skips_a_devices_foreign_presence_id(bridge: Bridge, other: ApiClient) -> None:
    user = bridge.user()
    phone = bridge.device("2001", owner_id=user["id"])
    write_raw("devices", phone["id"], {"presence_id": f"2001@{OTHER}"})
    bridge.mark()
    assert bridge.api.post(f"users/{user['id']}/presence").status_code == 200
    assert presence_events(bridge) == [presence_reset("2001@acme.test")]


# --- SIP realms of another account, stored before the rule ------------------------------------

def _move_to_other_realm(device_id: str) -> None:
    """What an older version could store: a device of A registering in B's realm."""
    write_raw("devices", device_id, {"sip": {"username": "2009", "password": "secret-pass", "realm": OTHER}})
    with db.database.connection_context():
        DeviceRow.update(realm=OTHER, sip_username_lc="2009").where(DeviceRow.id == device_id).execute()


def test_a_device_in_another_accounts_realm_reaches_no_phone(bridge: Bridge, other: ApiClient) -> None:
    device = bridge.device("2009")
    _move_to_other_realm(device["id"])
    bridge.register(bridge.fs1, "2009", realm=OTHER)
    bridge.mark()
    assert_invalid(bridge.quickcall(device["id"], "2000"), "sip.realm:invalid")
    assert_invalid(bridge.api.post(f"devices/{device['id']}/sync"), "sip.realm:invalid")
    # B's directory is B's: A's document answers none of its lookups
    assert ask(bridge, lookup("2009", OTHER)).text == NOT_FOUND
    # nor does deleting it unregister or resync B's phone
    assert bridge.api.delete(f"devices/{device['id']}").status_code == 200
    bridge.settle()
    assert bridge.sent() == []


def test_a_users_quickcall_leaves_out_a_device_in_another_realm(bridge: Bridge, other: ApiClient) -> None:
    user = bridge.user()
    mine = bridge.device("2001", owner_id=user["id"])
    stray = bridge.device("2009", owner_id=user["id"])
    _move_to_other_realm(stray["id"])
    bridge.mark()
    response = bridge.api.get(f"users/{user['id']}/quickcall/2000")
    assert response.status_code == 200, response.text
    [originate] = [c for c in bridge.sent() if c.startswith("bgapi originate")]
    assert "user/2001@acme.test" in originate and OTHER not in originate
    assert mine["id"] != stray["id"]


# --- a `user` token acts on the devices it owns -----------------------------------------------

def test_a_user_token_acts_on_its_own_device(bridge: Bridge) -> None:
    api = bridge.api
    bob = api.create_user(username="bob", password="pa55-word")
    phone = bridge.device("2001", owner_id=bob["id"])
    creds = hashlib.md5(b"bob:pa55-word").hexdigest()
    token = api.put("/v2/user_auth", {"credentials": creds, "account_name": "acme"}, token=None).json()["auth_token"]
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    assert api.post(f"devices/{phone['id']}/presence", token=token).status_code == 200
    assert api.post(f"devices/{phone['id']}/sync", token=token).status_code == 200
    assert api.get(f"devices/{phone['id']}/quickcall/2000", token=token).status_code == 200
    assert api.get(f"users/{bob['id']}/quickcall/2000", token=token).status_code == 200
    assert api.post(f"users/{bob['id']}/presence", token=token).status_code == 200
    sent = bridge.sent()
    assert sum(c.startswith("bgapi originate") for c in sent) == 2
    assert sum(c.startswith("sendevent PRESENCE_IN") for c in sent) == 2


# --- QuickCall: HEAD does not act, the API key is a credential, never echoed -------------------

def test_head_on_quickcall_places_no_call(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    for path in (f"devices/{device['id']}/quickcall/2000", f"users/{bridge.api.admin_id}/quickcall/2000"):
        response = bridge.api.request("HEAD", path)
        assert response.status_code == 405
        assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}
        assert "HEAD" not in response.headers["Allow"]
    # Kazoo's QuickCall URL with the key, too
    response = bridge.api.request("HEAD", f"devices/{device['id']}/quickcall/2000",
                                  token=None, params={"auth_token": bridge.api.api_key})
    assert response.status_code == 405
    assert bridge.sent() == []


def test_the_api_key_in_the_quickcall_url_is_never_echoed(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    response = bridge.quickcall(device["id"], "2000", token=None, params={"auth_token": bridge.api.api_key})
    assert response.status_code == 200, response.text
    assert bridge.api.api_key not in response.text
    assert response.json()["auth_token"] != bridge.api.api_key


@pytest.mark.parametrize("where", ["header", "bearer", "body"])
def test_the_api_key_is_no_token_even_on_quickcall(bridge: Bridge, where: str) -> None:
    """Only the `auth_token` query parameter of the QuickCall URL takes the key (the seed)."""
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    key = bridge.api.api_key
    kw: dict = {"token": None}
    if where == "header":
        kw["token"] = key
    elif where == "bearer":
        kw["headers"] = {"Authorization": f"Bearer {key}"}
    else:
        kw["raw"] = json.dumps({"auth_token": key})
    body = assert_error(bridge.api.request("POST", f"devices/{device['id']}/quickcall/2000", **kw),
                        401, "invalid_credentials")
    assert body["auth_token"] == "undefined"
    assert bridge.sent() == []
