"""Hostile values never reach FreeSWITCH (SPEC §6 general rules, §6.1 checks).

Each request carries a value that could end an ESL command, add a header line, split an
originate's variables or legs, expand a variable or start an application. The answer is a 400
naming the field (or, for the request id, a fresh id), and the test FreeSWITCH receives no
command at all beyond the pool's own connection set-up. A benign twin of each request proves
that the same path does reach FreeSWITCH.
"""
from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fixtures_web import assert_error, assert_invalid
from test_actions_support import Bridge, bridge_fixture, write_raw

# URL-encoded, as they travel in a query string or a path.
HOSTILE_CID_NAME = [
    "Bars%0D%0Aapi%20status",          # CR LF: a second command
    "Bars%0Aapi%20status",             # LF alone
    "Bars%0D",                         # CR alone
    "Bars%00",                         # NUL
    "Bars%09Test",                     # tab
    "Bars%7Bx%7D",                     # { }
    "Bars,sip_auto_answer=false",      # a variable of our own
    "Bars%2Cuser%2F2002@acme.test",    # a second leg
    "O%27Brien",                       # ' ends the quoted value
    "Bars%22",                         # "
    "%24%7Bsofia_contact(2001)%7D",    # ${...}
    "%26system(rm%20-rf%20%2F)",       # &app(...)
    "a:_:b",                           # the :_: separator
    "%5E%5E:a:b",                      # ^^ redefines the separator
    "a%7Cb",                           # |
    "a%5Cb",                           # backslash
    "a@b",                             # FreeSWITCH cuts a shown name at @
    "a%5Bb%5D",                        # [ ]
    "a%3Cb%3E",                        # < >
    "a%25b",                           # %
    "a%60b",                           # `
    "a;b",
    "a=b",
    "A" * 36,                          # over-long
    "%20Leading",                      # leading space
    "Trailing%20",
    "a%C2%85b",                        # U+0085 NEL
    "a%E2%80%A8b",                     # U+2028 line separator
    "a%E2%80%8Bb",                     # U+200B zero width space
    "a%E2%80%AEb",                     # U+202E right-to-left override
    "a%EF%BB%BFb",                     # U+FEFF
    "a%7Fb",                           # DEL
    "",                                # empty
]
HOSTILE_CID_NUMBER = [
    "1555%0A", "1555%0D%0Aapi%20status", "1,2", "1%202", "%2B1%2B2", "abc", "%24%7Bx%7D",
    "1:_:2", "1%5E%5E2", "9" * 36, "%2B", "%D9%A1%D9%A2%D9%A3", "1555%00", "1555%27", "",
]
HOSTILE_NUMBER = [  # in the path
    "9196%0Aapi%20status", "9196%0D%0A", "%0A", "9196%7B", "9196%7D", "9196%27",
    "%24%7Bsystem%7D", "%26system(id)", "91:_:96", "91%5E%5E96", "9" * 33, "9196%C2%85",
    "9196%E2%80%A8", "9196%00", "9196%09", "9196%7C2002", "9196%20XML%20public", "9196;x",
    "9196@acme.test", "%D9%A1%D9%A2", "9196%5C", "9196%22", "9196%25", "9196%3Cx%3E",
    "9196%60", "%2B%2B9196",
]
HOSTILE_PRESENCE_ID = [
    "a\nb", "a\r\nb", "a,b", "a b", "${x}", "a'b", "x:_:y", "a@b@c", "a^^b", "a@", "@acme.test",
    "a" * 129, "a@-bad-", "a@acme.test\n", "a|b", "a{b}", "&system(id)", "a\u2028b", "a\u0085b",
    "a\x00b", "a%0Ab", "a\\b", "",
]
HOSTILE_REQUEST_ID = [
    "abc,sip_auto_answer=false", "a b", "${x}", "a'b", "x" * 65, "a:_:b", "a^^b", "{x}", "a@b",
    "caf\u00e9", "a|b", "a&b",
]


@pytest.fixture
def bridge(start_bridge, fake_freeswitch_factory, esl_pool_factory) -> Iterator[Bridge]:
    bridge_ = next(bridge_fixture(start_bridge, fake_freeswitch_factory, esl_pool_factory))
    bridge_.device("2001")
    bridge_.register(bridge_.fs1, "2001")
    bridge_.mark()
    yield bridge_
    bridge_.api.session.close()


def device_id(bridge: Bridge) -> str:
    [row] = bridge.api.get("devices", params={"filter_sip.username": "2001"}).json()["data"]
    return row["id"]


def assert_nothing_sent(bridge: Bridge) -> None:
    bridge.settle()
    assert bridge.sent() == []
    assert all(fake.sent_events == [] for fake in bridge.fakes)
    assert all(fake.channels == {} for fake in bridge.fakes)


def test_control_benign_values_do_reach_freeswitch(bridge: Bridge) -> None:
    """The hostile tests below would pass vacuously if nothing ever reached the fake."""
    ident = device_id(bridge)
    response = bridge.quickcall(ident, "9196", "cid-name=Bars%20Test&cid-number=%2B15551112222",
                                headers={"X-Request-ID": "benign-1"})
    assert response.status_code == 200, response.text
    [command] = bridge.sent()
    assert command.startswith("bgapi originate {")
    assert ",effective_caller_id_name='Bars Test',effective_caller_id_number=+15551112222," in command
    assert ",esl_bridge_request_id=benign-1,esl_bridge_call_id=" in command
    bridge.mark()
    assert bridge.api.post(f"devices/{ident}/presence").status_code == 200
    assert len(bridge.sent()) == 1


@pytest.mark.parametrize("value", HOSTILE_CID_NAME)
def test_hostile_cid_name(bridge: Bridge, value: str) -> None:
    for method in ("GET", "POST"):
        response = bridge.quickcall(device_id(bridge), "9196", f"cid-name={value}", method=method)
        assert_invalid(response, "cid-name:" + ("minLength" if value == "" else
                                                "maxLength" if len(value) == 36 else "pattern"), exact=True)
    assert_nothing_sent(bridge)


@pytest.mark.parametrize("value", HOSTILE_CID_NUMBER)
def test_hostile_cid_number(bridge: Bridge, value: str) -> None:
    response = bridge.quickcall(device_id(bridge), "9196", f"cid-number={value}")
    data = assert_invalid(response)
    assert list(data) == ["cid-number"], data
    assert_nothing_sent(bridge)


@pytest.mark.parametrize("value", HOSTILE_NUMBER)
def test_hostile_number(bridge: Bridge, value: str) -> None:
    for number_filter in ("", "number_filter=false", "number_filter=true"):
        response = bridge.quickcall(device_id(bridge), value, number_filter)
        assert_invalid(response, "number:pattern", exact=True)
    assert_nothing_sent(bridge)


@pytest.mark.parametrize("value", ["9196%0Aapi%20status", "91:_:96", "%24%7Bx%7D"])
def test_hostile_number_in_a_user_quickcall(bridge: Bridge, value: str) -> None:
    user = bridge.user()
    assert bridge.api.patch(f"devices/{device_id(bridge)}", {"owner_id": user["id"]}).status_code == 200
    bridge.mark()
    response = bridge.api.get(f"users/{user['id']}/quickcall/{value}")
    assert_invalid(response, "number:pattern", exact=True)
    assert_nothing_sent(bridge)


def test_several_hostile_values_are_reported_together(bridge: Bridge) -> None:
    response = bridge.quickcall(device_id(bridge), "91:_:96",
                                "cid-name=a%0Ab&cid-number=1,2&timeout=1%0A&media=a%0Ab")
    assert_invalid(response, "number:pattern", "cid-name:pattern", "cid-number:pattern",
                   "timeout:type", "media:enum", exact=True)
    assert_nothing_sent(bridge)


def test_hostile_values_of_an_anonymous_quickcall(bridge: Bridge) -> None:
    assert bridge.api.patch("", {"allow_anonymous_quickcalls": True}).status_code == 200
    response = bridge.quickcall(device_id(bridge), "9196%0A", "cid-name=%24%7Bx%7D", token=None)
    assert_invalid(response, "number:pattern", "cid-name:pattern", exact=True)
    assert_nothing_sent(bridge)


@pytest.mark.parametrize("value", HOSTILE_REQUEST_ID)
def test_hostile_request_id_is_replaced_by_a_fresh_one(bridge: Bridge, value: str) -> None:
    response = bridge.quickcall(device_id(bridge), "9196",
                                headers={"X-Request-ID": value.encode("utf-8")})
    assert response.status_code == 200, response.text
    fresh = response.json()["request_id"]
    assert fresh != value and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", fresh)
    assert response.headers["X-Request-ID"] == fresh
    [command] = bridge.sent()
    call_id = response.json()["data"]["call_id"]
    assert (f",esl_bridge_request_id={fresh},esl_bridge_call_id={call_id}}}"
            "user/2001@acme.test 9196 XML default\n") in command
    assert value not in command


@pytest.mark.parametrize("value", ["maybe", "true%0Aapi%20status", "1", ""])
def test_hostile_reboot_flag_of_sync(bridge: Bridge, value: str) -> None:
    response = bridge.api.post(f"devices/{device_id(bridge)}/sync?reboot={value}")
    assert_invalid(response, "reboot:enum", exact=True)
    assert_nothing_sent(bridge)


# --- presence ids: refused when stored, and by the quoting gate if one was stored anyway ----------

@pytest.mark.parametrize("value", HOSTILE_PRESENCE_ID)
def test_hostile_presence_id_is_refused_on_devices_and_users(bridge: Bridge, value: str) -> None:
    ident = device_id(bridge)
    patched = bridge.api.patch(f"devices/{ident}", {"presence_id": value})
    if "\x00" in value:  # refused with the body itself
        assert_invalid(patched, "json:invalid", exact=True)
    else:
        assert_invalid(patched, "presence_id:" + ("minLength" if value == "" else
                                                  "maxLength" if len(value) > 128 else "pattern"))
    created = bridge.api.put("devices", {"name": "p", "presence_id": value})
    assert_invalid(created)
    created = bridge.api.put("users", {"first_name": "a", "last_name": "b", "presence_id": value})
    assert_invalid(created)
    assert_nothing_sent(bridge)  # no side effect of an update that did not happen
    assert "presence_id" not in bridge.api.get(f"devices/{ident}").json()["data"]


@pytest.mark.parametrize("value", ["a\nb", "a,b", "${x}", "x:_:y", "a'b", "a b", "a@b@c", "a\u2028b"])
def test_a_stored_hostile_presence_id_is_stopped_by_the_quoting_gate(bridge: Bridge, value: str) -> None:
    ident = device_id(bridge)
    user = bridge.user()
    write_raw("devices", ident, {"presence_id": value})
    write_raw("users", user["id"], {"presence_id": value})
    for path in (f"devices/{ident}/presence", f"users/{user['id']}/presence"):
        for body in (None, {"action": "set", "state": "confirmed"}):
            response = bridge.api.post(path, body)
            data = assert_invalid(response)
            assert list(data) == ["presence_id"], data
    assert_nothing_sent(bridge)


@pytest.mark.parametrize("table, changes, field", [
    ("devices", {"caller_id": {"external": {"name": "a\nb", "number": "1"}}}, "cid_name"),
    ("devices", {"caller_id": {"external": {"name": "ab", "number": "1,2"}}}, "cid_number"),
    ("devices", {"sip": {"username": "2001\napi status", "password": "x", "realm": "acme.test"}},
     "endpoints.0.user"),
    ("devices", {"sip": {"username": "2001", "password": "x", "realm": "acme.test,user/x"}},
     "endpoints.0.realm"),
    ("accounts", {"dialplan_context": "default\napi status"}, "context"),
    ("accounts", {"dialplan_context": "a b"}, "context"),
])
def test_stored_hostile_values_are_stopped_by_the_quoting_gate(bridge: Bridge, table: str,
                                                               changes: dict, field: str) -> None:
    device = device_id(bridge)
    write_raw(table, device if table == "devices" else bridge.account_id, changes)
    response = bridge.quickcall(device, "9196")
    data = assert_invalid(response)
    assert list(data) == [field], data
    assert_nothing_sent(bridge)


@pytest.mark.parametrize("event", ["check-sync\napi status", "check-sync,x", "a b", "${x}"])
def test_a_stored_hostile_check_sync_event_is_stopped_by_the_quoting_gate(bridge: Bridge, event: str) -> None:
    ident = device_id(bridge)
    write_raw("devices", ident, {"provision": {"check_sync_event": event}})
    assert_invalid(bridge.api.post(f"devices/{ident}/sync"))
    assert_nothing_sent(bridge)


@pytest.mark.parametrize("event", ["check-sync\napi status", "a b", "${x}", "x:_:y",
                                   # the gate's own shape: anything it would refuse later is refused now
                                   "check-sync;", "a;;b", "=x", "a;b=c=d", ";reboot=true"])
def test_hostile_check_sync_event_is_refused_on_update(bridge: Bridge, event: str) -> None:
    ident = device_id(bridge)
    response = bridge.api.patch(f"devices/{ident}", {"provision": {"check_sync_event": event}, "sync": True})
    assert_invalid(response, "provision.check_sync_event:pattern")
    assert_nothing_sent(bridge)


def test_hostile_ids_in_the_path_are_404_and_send_nothing(bridge: Bridge) -> None:
    for path in ("devices/2001%0Aapi/quickcall/9196", "devices/%24%7Bx%7D/sync",
                 "devices/a,b/presence", "users/a:_:b/presence", "users/%0A/quickcall/9196"):
        response = bridge.api.post(path)
        assert_error(response, 404, "bad_identifier")
    assert_nothing_sent(bridge)
