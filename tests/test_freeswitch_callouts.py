"""The hotdesk and presence callouts the Lua scripts make (SPEC §5, §7), over HTTP."""
from __future__ import annotations

import pytest
import requests
from fixtures_web import FREESWITCH_SECRET

from models import db, lockout

pytestmark = pytest.mark.store

SECRET = {"X-ESL-Bridge-Secret": FREESWITCH_SECRET}


def callout(bridge, path: str, form: dict, headers=SECRET) -> requests.Response:
    return requests.post(f"{bridge.url}/freeswitch/{path}", data=form, headers=headers, timeout=10)


@pytest.fixture
def office(bridge, api):
    """Two desks (2001, 2002) and three users: Ann (no PIN), Bob (PIN 4321), Cid (hotdesk off)."""
    ann = api.create_user(first_name="Ann", hotdesk={"enabled": True, "id": "100"})
    bob = api.create_user(first_name="Bob", hotdesk={"enabled": True, "id": "200", "pin": "4321",
                                                     "require_pin": True})
    cid = api.create_user(first_name="Cid", hotdesk={"enabled": False, "id": "300"})
    desk1 = api.create_device(name="desk 1", sip={"username": "2001", "password": "password"})
    desk2 = api.create_device(name="desk 2", sip={"username": "2002", "password": "password"})
    return {"api": api, "ann": ann, "bob": bob, "cid": cid, "desk1": desk1, "desk2": desk2}


def devices_of(api, user) -> dict[str, bool]:
    response = api.get(f"users/{user['id']}/devices")
    assert response.status_code == 200
    return {row["id"]: row["hotdesked"] for row in response.json()["data"]}


def hot(bridge, action: str, desk: str = "2001", **form: str) -> dict:
    response = callout(bridge, f"hotdesk/{action}", {"sip_user": desk, "realm": "acme.test", **form})
    assert response.status_code == 200, response.text
    return response.json()


def test_login_without_pin_puts_the_user_on_the_desk(bridge, office):
    answer = hot(bridge, "login", hotdesk_id="100")
    assert answer["result"] == "ok" and answer["action"] == "login"
    assert answer["prompt"].endswith(".wav")
    assert answer["user_id"] == office["ann"]["id"] and answer["device_id"] == office["desk1"]["id"]
    assert devices_of(office["api"], office["ann"]) == {office["desk1"]["id"]: True}


def test_login_moves_the_user_unless_kept_elsewhere(bridge, office):
    api = office["api"]
    hot(bridge, "login", hotdesk_id="100")
    hot(bridge, "login", desk="2002", hotdesk_id="100")
    assert devices_of(api, office["ann"]) == {office["desk2"]["id"]: True}
    api.patch(f"users/{office['ann']['id']}", {"hotdesk": {"keep_logged_in_elsewhere": True}})
    hot(bridge, "login", hotdesk_id="100")
    assert devices_of(api, office["ann"]) == {office["desk1"]["id"]: True, office["desk2"]["id"]: True}


def test_pin_is_asked_then_checked(bridge, office):
    assert hot(bridge, "login", hotdesk_id="200")["result"] == "pin_required"
    assert devices_of(office["api"], office["bob"]) == {}
    assert hot(bridge, "login", hotdesk_id="200", pin="1111")["result"] == "invalid_pin"
    assert devices_of(office["api"], office["bob"]) == {}
    assert hot(bridge, "login", hotdesk_id="200", pin="4321")["result"] == "ok"
    assert devices_of(office["api"], office["bob"]) == {office["desk1"]["id"]: True}


def test_repeated_wrong_pins_are_limited(bridge, office):
    for _ in range(5):
        assert hot(bridge, "login", hotdesk_id="200", pin="0000")["result"] == "invalid_pin"
    # Locked: even the right PIN is refused for now.
    assert hot(bridge, "login", hotdesk_id="200", pin="4321")["result"] == "too_many_attempts"
    assert devices_of(office["api"], office["bob"]) == {}


def test_unknown_id_disabled_user_and_unknown_device_are_answers(bridge, office):
    assert hot(bridge, "login", hotdesk_id="999")["result"] == "unknown_id"
    assert hot(bridge, "login", hotdesk_id="300")["result"] == "disabled"
    assert hot(bridge, "login", desk="7777", hotdesk_id="100")["result"] == "unknown_device"
    office["api"].patch(f"devices/{office['desk1']['id']}", {"enabled": False})
    assert hot(bridge, "login", hotdesk_id="100")["result"] == "unknown_device"


def test_toggle_logs_in_then_out(bridge, office):
    api = office["api"]
    first = hot(bridge, "toggle", hotdesk_id="100")
    assert (first["result"], first["action"]) == ("ok", "login")
    assert devices_of(api, office["ann"]) == {office["desk1"]["id"]: True}
    second = hot(bridge, "toggle", desk="2002", hotdesk_id="100")
    assert (second["result"], second["action"]) == ("ok", "logout")
    assert devices_of(api, office["ann"]) == {}


def test_toggle_asks_for_the_pin_only_when_logging_in(bridge, office):
    assert hot(bridge, "toggle", hotdesk_id="200")["result"] == "pin_required"
    assert hot(bridge, "toggle", hotdesk_id="200", pin="4321")["action"] == "login"
    assert hot(bridge, "toggle", hotdesk_id="200")["action"] == "logout"


def test_logout_of_one_user_or_of_everyone_on_the_desk(bridge, office):
    api = office["api"]
    api.patch(f"users/{office['bob']['id']}", {"hotdesk": {"require_pin": False}})
    hot(bridge, "login", hotdesk_id="100")
    hot(bridge, "login", hotdesk_id="200")
    assert hot(bridge, "logout", hotdesk_id="100")["result"] == "ok"
    assert devices_of(api, office["ann"]) == {}
    assert devices_of(api, office["bob"]) == {office["desk1"]["id"]: True}
    assert hot(bridge, "logout")["result"] == "ok"
    assert devices_of(api, office["bob"]) == {}
    listing = api.get(f"devices/{office['desk1']['id']}/hotdesks").json()["data"]
    assert listing == []


def test_a_phone_guessing_hotdesk_ids_is_limited(bridge, office):
    for guess in ("101", "102", "103", "104", "105"):
        assert hot(bridge, "login", hotdesk_id=guess)["result"] == "unknown_id"
    # Locked for that phone, even for an id that exists; the phone next to it is not affected.
    assert hot(bridge, "login", hotdesk_id="100")["result"] == "too_many_attempts"
    assert devices_of(office["api"], office["ann"]) == {}
    assert hot(bridge, "login", desk="2002", hotdesk_id="100")["result"] == "ok"


def test_paced_pin_guessing_is_stopped_by_the_hourly_limit(database_url):
    def locked(key: str, now: float) -> bool:
        with lockout.guard(key, now=now) as attempts:
            return attempts.locked(key)

    def failed(key: str, now: float) -> None:
        with lockout.guard(key, now=now) as attempts:
            attempts.failed(key)

    with db.database.connection_context():
        now = 0.0
        for _ in range(20):
            assert not locked("user", now)
            failed("user", now)
            now += 65.0  # 4 in 5 minutes: under the short limit
        assert locked("user", now)
        assert not locked("user", 20 * 65.0 + 3600.0)  # an hour after the first ones
        failed("other", 0.0)
        with lockout.guard("other", now=0.0) as attempts:
            attempts.succeeded("other")
        assert not locked("other", 0.0)


def test_toggling_a_pin_user_out_from_another_phone_needs_the_pin(bridge, office):
    assert hot(bridge, "login", hotdesk_id="200", pin="4321")["result"] == "ok"
    remote = hot(bridge, "toggle", desk="2002", hotdesk_id="200")
    assert (remote["result"], remote["action"]) == ("pin_required", "logout")
    wrong = hot(bridge, "toggle", desk="2002", hotdesk_id="200", pin="0000")
    assert (wrong["result"], wrong["action"]) == ("invalid_pin", "logout")
    assert devices_of(office["api"], office["bob"]) == {office["desk1"]["id"]: True}
    right = hot(bridge, "toggle", desk="2002", hotdesk_id="200", pin="4321")
    assert (right["result"], right["action"]) == ("ok", "logout")
    assert devices_of(office["api"], office["bob"]) == {}


def test_a_user_whose_hotdesking_was_turned_off_can_still_be_logged_out(bridge, office):
    api = office["api"]
    hot(bridge, "login", hotdesk_id="100")
    api.patch(f"users/{office['ann']['id']}", {"hotdesk": {"enabled": False}})
    assert hot(bridge, "login", desk="2002", hotdesk_id="100")["result"] == "disabled"
    assert hot(bridge, "logout", hotdesk_id="100")["result"] == "ok"
    assert devices_of(api, office["ann"]) == {}


@pytest.mark.parametrize("form", [
    {"sip_user": "2001&x=1", "realm": "acme.test", "hotdesk_id": "100"},
    {"sip_user": "2001", "realm": "acme.test\n", "hotdesk_id": "100"},
    {"sip_user": "2001", "realm": "acme.test", "hotdesk_id": "1e3"},
    {"sip_user": "2001", "realm": "acme.test", "hotdesk_id": "100", "pin": "12ab"},
    {"sip_user": "2001", "realm": "acme.test"},
])
def test_malformed_callouts_are_400_and_change_nothing(bridge, office, form):
    response = callout(bridge, "hotdesk/login", form)
    assert response.status_code == 400
    assert response.json()["result"] == "error"
    assert devices_of(office["api"], office["ann"]) == {}


def test_repeated_form_keys_are_refused(bridge, office):
    body = "sip_user=2001&realm=acme.test&hotdesk_id=100&hotdesk_id=200"
    response = requests.post(f"{bridge.url}/freeswitch/hotdesk/login", data=body, headers={
        **SECRET, "Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    assert response.status_code == 400
    assert devices_of(office["api"], office["ann"]) == {}


def test_callouts_need_the_secret(bridge, office):
    form = {"sip_user": "2001", "realm": "acme.test", "hotdesk_id": "100"}
    assert callout(bridge, "hotdesk/login", form, headers={}).status_code == 403
    assert callout(bridge, "hotdesk/login", form, headers={"X-ESL-Bridge-Secret": "nope"}).status_code == 403
    assert callout(bridge, "presence", {"sip_user": "2001", "realm": "acme.test"}, headers={}).status_code == 403
    assert devices_of(office["api"], office["ann"]) == {}


def test_unknown_hotdesk_action_is_404(bridge, office):
    assert callout(bridge, "hotdesk/reboot", {"sip_user": "2001", "realm": "acme.test"}).status_code == 404


def test_presence_lookup_of_a_calling_device(bridge, api):
    static = api.create_device(name="alice", presence_id="alice-static", sip={"username": "2001", "password": "password"})
    api.create_device(name="plain", sip={"username": "2002", "password": "password"})
    answer = callout(bridge, "presence", {"sip_user": "2001", "realm": "acme.test"}).json()
    assert answer == {"presence_id": "alice-static@acme.test", "device_id": static["id"]}
    assert callout(bridge, "presence", {"sip_user": "2002", "realm": "acme.test"}).json()["presence_id"] is None
    assert callout(bridge, "presence", {"sip_user": "4242", "realm": "acme.test"}).json() == {
        "presence_id": None, "device_id": None}


def test_presence_lookup_of_a_cellphone_forward_number(bridge, api):
    cell = api.create_device(name="alice cell", device_type="cellphone", presence_id="alice@acme.test",
                             call_forward={"enabled": True, "number": "+1 (555) 010-2000"})
    # however the number is dialled: with +, with the country code, nationally, from abroad
    for dialled in ("+15550102000", "15550102000", "5550102000", "0115550102000"):
        answer = callout(bridge, "presence", {"number": dialled, "realm": "acme.test"}).json()
        assert answer == {"presence_id": "alice@acme.test", "device_id": cell["id"]}, dialled
    for other in ("5550102001", "550102000", "*5550102000"):
        assert callout(bridge, "presence", {"number": other, "realm": "acme.test"}).json()["device_id"] is None
    api.patch(f"devices/{cell['id']}", {"call_forward": {"enabled": False}})
    assert callout(bridge, "presence", {"number": "+15550102000", "realm": "acme.test"}).json()["device_id"] is None


@pytest.mark.parametrize("form", [
    {"realm": "acme.test"},
    {"realm": "acme.test", "sip_user": "2001", "number": "100"},
    {"realm": "acme test", "sip_user": "2001"},
    {"realm": "acme.test", "number": "100;x"},
    {"realm": "acme.test", "sip_user": "a b"},
])
def test_malformed_presence_lookups_are_400(bridge, api, form):
    assert callout(bridge, "presence", form).status_code == 400
