"""Device documents over HTTP: the schema rules of SPEC §4, each refused with Kazoo's rule name
and nothing stored."""
from __future__ import annotations

import pytest
from fixtures_web import UNKNOWN_ID, assert_invalid

pytestmark = pytest.mark.store

# --- the schema rules of SPEC §4 --------------------------------------------------------------

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
    assert api.ids("devices") == []


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
    assert len(api.ids("devices")) == 1
