"""The mod_xml_curl directory endpoint, driven by the requests a real FreeSWITCH sent."""
from __future__ import annotations

import hashlib
import hmac
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote, unquote, urlencode

import pytest
import requests
from conformance import Client
from fixtures_web import FREESWITCH_SECRET, client_for, make_account
from test_actions_hostile import (
    HOSTILE_CID_NAME,
    HOSTILE_CID_NUMBER,
    HOSTILE_NUMBER,
    HOSTILE_PRESENCE_ID,
)

pytestmark = pytest.mark.store

RECORDED = Path(__file__).parent / "data" / "xml_curl"
NOT_FOUND = ('<document type="freeswitch/xml"><section name="result">'
             '<result status="not found"/></section></document>')
AUTH = ("freeswitch", FREESWITCH_SECRET)
PASSWORDS = {"2001": "password", "2002": "hunter22"}


def recorded_directory_requests() -> list[Path]:
    return sorted(p for p in RECORDED.glob("*.txt")
                  if not p.name.endswith(".decoded.txt") and "directory" in p.name
                  and p.read_text().startswith("POST /freeswitch/directory"))


def raw_body(path: Path) -> bytes:
    """The request body exactly as FreeSWITCH sent it (after the blank line)."""
    data = path.read_bytes()
    return data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else data.split(b"\n\n", 1)[1]


def ask(bridge, body: bytes | str | dict, auth=AUTH, headers=None) -> requests.Response:
    if isinstance(body, dict):
        body = urlencode(body)
    return requests.post(f"{bridge.url}/freeswitch/directory", data=body, auth=auth,
                         headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
                         timeout=10)


def user_of(response: requests.Response) -> dict:
    """The parsed user XML: id, domain, params and variables."""
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    root = ET.fromstring(response.text)
    assert root.tag == "document" and root.get("type") == "freeswitch/xml"
    domain = root.find("./section[@name='directory']/domain")
    assert domain is not None, response.text
    user = domain.find("./groups/group/users/user")
    return {
        "domain": domain.get("name"),
        "id": user.get("id"),
        "params": {p.get("name"): p.get("value") for p in user.findall("./params/param")},
        "variables": {v.get("name"): v.get("value") for v in user.findall("./variables/variable")},
    }


def a1(user: str, realm: str, password: str) -> str:
    return hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()


@pytest.fixture
def phones(bridge):
    """Account acme.test with 2001 (static presence id, caller ids, an owner) and 2002."""
    account_id, key, admin_id = make_account(realm="acme.test", dialplan_context="acme-ctx")
    api = client_for(bridge.url, account_id, key, admin_id)
    owner = api.create_user(first_name="Alice", caller_id={"external": {"name": "Acme Main", "number": "+15550100"}})
    d2001 = api.create_device(name="alice desk", owner_id=owner["id"], presence_id="alice-static",
                              sip={"username": "2001", "password": PASSWORDS["2001"]},
                              caller_id={"internal": {"name": "Alice", "number": "2001"}})
    d2002 = api.create_device(name="bob desk", sip={"username": "2002", "password": PASSWORDS["2002"]})
    return {"api": api, "owner": owner, "2001": d2001, "2002": d2002, "account_id": account_id}


@pytest.mark.parametrize("path", recorded_directory_requests(), ids=lambda p: p.name[:40])
def test_each_recorded_request_gets_the_right_answer(bridge, phones, path):
    decoded = dict(line.split("=", 1) for line in
                   path.with_name(path.name[:-4] + ".decoded.txt").read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
    response = ask(bridge, raw_body(path))
    if "purpose" in decoded or "realm_injection" in path.name:
        assert response.text == NOT_FOUND
        return
    user = user_of(response)
    name = decoded["user"]
    assert (user["id"], user["domain"]) == (name, "acme.test")
    assert user["params"]["a1-hash"] == a1(name, "acme.test", PASSWORDS[name])
    if name == "2001":
        assert "presence_id=alice-static@acme.test}" in user["params"]["dial-string"]
        assert user["variables"]["presence_id"] == "alice-static@acme.test"
        assert user["variables"]["esl_bridge_device_id"] == phones["2001"]["id"]
    else:
        assert "presence_id=2002@acme.test}" in user["params"]["dial-string"]
        assert user["variables"]["presence_id"] == "2002@acme.test"


def test_user_document_carries_context_caller_ids_and_ids(bridge, phones):
    user = user_of(ask(bridge, {"section": "directory", "action": "sip_auth", "key": "id", "user": "2001",
                                "domain": "acme.test", "key_value": "acme.test", "sip_auth_realm": "acme.test"}))
    assert user["params"]["dial-string"] == (
        "{^^:sip_invite_domain=${dialed_domain}:presence_id=alice-static@acme.test}"
        "${sofia_contact(*/${dialed_user}@${dialed_domain})}")
    assert user["variables"] == {
        "user_context": "acme-ctx",
        "presence_id": "alice-static@acme.test",
        "effective_caller_id_name": "Alice",
        "effective_caller_id_number": "2001",
        # the device has no external caller id: the owner's applies
        "outbound_caller_id_name": "Acme Main",
        "outbound_caller_id_number": "+15550100",
        "esl_bridge_account_id": phones["account_id"],
        "esl_bridge_device_id": phones["2001"]["id"],
        "esl_bridge_owner_id": phones["owner"]["id"],
    }


def lookup(user: str = "2001", realm: str = "acme.test", **extra: str) -> dict:
    return {"hostname": "vm", "section": "directory", "tag_name": "domain", "key_name": "name",
            "key_value": realm, "action": "sip_auth", "sip_auth_username": user,
            "sip_auth_realm": realm, "key": "id", "user": user, "domain": realm, **extra}


def test_disabled_deleted_unknown_and_other_realm_users_are_not_found(bridge, phones):
    api = phones["api"]
    assert user_of(ask(bridge, lookup("2001")))["id"] == "2001"
    assert ask(bridge, lookup("2001", "other.test")).text == NOT_FOUND
    assert ask(bridge, lookup("4242")).text == NOT_FOUND
    assert api.patch(f"devices/{phones['2001']['id']}", {"enabled": False}).status_code == 200
    assert ask(bridge, lookup("2001")).text == NOT_FOUND
    assert api.delete(f"devices/{phones['2002']['id']}").status_code == 200
    assert ask(bridge, lookup("2002")).text == NOT_FOUND


def test_a_device_without_password_is_never_answered(bridge, phones):
    api = phones["api"]
    api.create_device(name="no secret", sip={"username": "2003"})
    assert ask(bridge, lookup("2003")).text == NOT_FOUND


def test_a_call_forwarded_device_is_dialled_at_its_number_with_its_presence_id(bridge, phones):
    api = phones["api"]
    cell = api.create_device(name="alice cell", device_type="cellphone", presence_id="alice-static",
                             sip={"username": "2005"},
                             call_forward={"enabled": True, "number": "+1 (555) 010-2000"})
    for action in ("user_call", "sip_auth"):
        user = user_of(ask(bridge, lookup("2005", action=action)))
        # through the account's dialplan (its outbound routes), with the device's presence id
        assert user["params"]["dial-string"] == (
            "{^^:execute_on_originate=set presence_id=alice-static@acme.test"
            ":esl_bridge_forwarded_for=alice-static@acme.test}loopback/+15550102000/acme-ctx")
        # no password: a credential nobody knows, never an empty one
        secret_password = hmac.new(FREESWITCH_SECRET.encode(), cell["id"].encode(), hashlib.sha256).hexdigest()
        assert user["params"]["a1-hash"] == a1("2005", "acme.test", secret_password)
    # a phone that forwards without being replaced (substitute: false) rings too
    api.patch(f"devices/{phones['2002']['id']}", {"call_forward": {"enabled": True, "number": "5550109999",
                                                                   "substitute": False}})
    user = user_of(ask(bridge, lookup("2002")))
    assert user["params"]["dial-string"] == (
        "{^^:sip_invite_domain=${dialed_domain}:execute_on_originate=set presence_id=2002@acme.test"
        ":esl_bridge_forwarded_for=2002@acme.test}"
        "${sofia_contact(*/${dialed_user}@${dialed_domain})},loopback/5550109999/acme-ctx")
    assert user["params"]["a1-hash"] == a1("2002", "acme.test", PASSWORDS["2002"])
    # forwarding off (or to a number that is not dialable): a device without password is not found
    api.patch(f"devices/{cell['id']}", {"call_forward": {"enabled": False}})
    assert ask(bridge, lookup("2005")).text == NOT_FOUND
    api.patch(f"devices/{cell['id']}", {"call_forward": {"enabled": True, "number": "1+2"}})
    assert ask(bridge, lookup("2005")).text == NOT_FOUND


RECORDED3 = Path(__file__).parent / "data" / "xml_curl3"


def test_user_exists_user_data_and_user_call_lookups_are_answered(bridge, phones):
    """The forms FreeSWITCH 1.10 posts for ``user_exists``, ``user_data`` (``type=var`` and
    ``type=param``; no ``purpose``, no ``action``) and a ``user/`` leg (``action=user_call`` with
    the originate's ``origination_uuid``), exactly as recorded (xml_curl3): the device's user
    document, or the not-found document for an unknown user."""
    ids = {user: phones["api"].create_device(name=f"phone {user}", sip={
        "username": user, "password": f"pw-{user}"})["id"] for user in ("2005", "2006", "2007", "2009")}
    paths = [p for p in sorted(RECORDED3.glob("*.txt")) if not p.name.endswith(".decoded.txt")
             and p.read_text().startswith("POST /freeswitch/directory")]
    assert len(paths) == 9
    for path in paths:
        user = dict(line.split("=", 1) for line in path.with_name(path.name[:-4] + ".decoded.txt")
                    .read_text().splitlines() if "=" in line and not line.startswith("#"))["user"]
        response = ask(bridge, raw_body(path))
        if user == "2099":
            assert response.text == NOT_FOUND, path.name
            continue
        found = user_of(response)
        assert (found["id"], found["domain"]) == (user, "acme.test"), path.name
        assert found["variables"]["esl_bridge_device_id"] == ids[user]
        assert found["params"]["a1-hash"] == a1(user, "acme.test", f"pw-{user}")


def test_the_test_freeswitch_asks_the_directory_as_freeswitch_does(bridge, phones,
                                                                   fake_freeswitch_factory):
    """A test FreeSWITCH bound to esl-bridge's directory: ``user_exists``, ``user_data``, their
    ``${...}`` forms and an originate's user lookup find the devices, and nothing else."""
    fake = fake_freeswitch_factory(directory_url=f"{bridge.url}/freeswitch/directory",
                                   directory_auth=AUTH)
    client = Client(fake.port).login()

    def answer(command: str) -> bytes:
        return client.ask(command).partition(b"\n\n")[2]

    assert answer("api user_exists id 2001 acme.test") == b"true"
    assert answer("api user_exists id 2099 acme.test") == b"false"
    assert answer("api user_data 2001@acme.test var esl_bridge_device_id") == \
        phones["2001"]["id"].encode()
    assert answer("api eval ${user_data(2002@acme.test var presence_id)}") == b"2002@acme.test"
    assert answer("api user_data 2001@acme.test param dial-string").startswith(
        b"{^^:sip_invite_domain=${dialed_domain}:presence_id=alice-static@acme.test}")
    assert answer("api expand echo ${user_exists(id 2002 acme.test)}") == b"true"
    assert answer("api originate user/2099@acme.test &echo") == b"-ERR SUBSCRIBER_ABSENT\n"
    assert answer("api originate user/2001@acme.test &echo") == b"-ERR USER_NOT_REGISTERED\n"
    assert all("&key=id&user=" in form for form in fake.directory_requests)


def test_lookups_are_case_insensitive_on_user_and_realm(bridge, phones):
    user = user_of(ask(bridge, lookup("2001", "ACME.test")))
    assert user["params"]["a1-hash"] == a1("2001", "ACME.test", "password")


@pytest.mark.parametrize("form", [
    {"key_value": "other.test"},
    {"sip_auth_realm": "evil.test"},
    {"sip_auth_username": "2002"},
    {"key": "mailbox"},
    {"section": "dialplan"},
    {"action": "reverse-auth-lookup"},
    {"purpose": "gateways"},
])
def test_inconsistent_or_foreign_lookups_are_not_found(bridge, phones, form):
    assert ask(bridge, lookup("2001", **form)).text == NOT_FOUND


def test_repeated_keys_are_refused(bridge, phones):
    body = urlencode(lookup("2001")) + "&user=2002"
    assert ask(bridge, body).text == NOT_FOUND


HOSTILE = [
    "2001&user=9999", "2001\r\nX: y", "2001%0A", "2001\"/><user id=\"x", "2001'", "<2001>",
    "acme.test&domain=evil.test", "acme.test\"", "acme.test<", "a%26b", "2001=", "${x}", "2001 ",
    "acme.test/..", "\x00", "é2001", "2001;x", "2001@acme.test", "x" * 300,
]


# The injection table of the ESL side (URL-decoded: a form carries them as any other value).
HOSTILE += [unquote(value) for value in HOSTILE_CID_NAME + HOSTILE_CID_NUMBER + HOSTILE_NUMBER
            + HOSTILE_PRESENCE_ID if value]


def recorded_directory_fields() -> list[str]:
    """Every form field name FreeSWITCH put in a recorded directory request."""
    names = set()
    for path in RECORDED.glob("*directory*.decoded.txt"):
        for line in path.read_text().splitlines():
            name, equals, _ = line.partition("=")
            if equals and re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name):
                names.add(name)
    return sorted(names)


@pytest.mark.parametrize("field", sorted(set(recorded_directory_fields()) | {"X-Custom", "sip_auth_username"}))
def test_hostile_values_are_refused_or_escaped(bridge, phones, field):
    baseline = ask(bridge, lookup("2001")).text
    for value in HOSTILE:
        response = ask(bridge, urlencode({**lookup("2001"), field: value}))
        assert response.status_code == 200, value
        if response.text == NOT_FOUND:
            continue
        # A field that does not select the user may carry anything: the answer is exactly the
        # answer without it (2001 at acme.test), never something the value shaped.
        assert response.text == baseline, value
        assert user_of(response)["id"] == "2001"


HOSTILE_HEADERS = [
    ("User-Agent", "freeswitch-xml/1.0\"/><x"), ("X-Forwarded-For", "127.0.0.1"), ("Host", "evil.test"),
    ("Content-Type", "application/x-www-form-urlencoded; charset=latin-1"),
    ("Content-Type", "multipart/form-data; boundary=x"), ("Content-Type", "text/xml"),
    ("X-ESL-Bridge-Secret", ""), ("X-ESL-Bridge-Secret", FREESWITCH_SECRET[:-1]),
    ("X-ESL-Bridge-Secret", FREESWITCH_SECRET.upper()), ("X-ESL-Bridge-Secret", "x" + FREESWITCH_SECRET),
    ("Authorization", "Basic " + "A" * 5000), ("Authorization", "Basic ZnJlZXN3aXRjaA=="),
    ("Authorization", "Basic %%%"), ("Transfer-Encoding", "chunked"),
]


@pytest.mark.parametrize("header, value", HOSTILE_HEADERS)
def test_hostile_headers_are_refused_or_change_nothing(bridge, phones, header, value):
    baseline = ask(bridge, lookup("2001")).text
    bears_secret = header in ("Authorization", "X-ESL-Bridge-Secret")
    response = ask(bridge, urlencode(lookup("2001")), auth=None if bears_secret else AUTH, headers={header: value})
    if bears_secret:
        assert response.status_code == 403, (header, value)
        return
    # Anything else is read as before, or the body is not a form (not found), or the request is
    # malformed (Transfer-Encoding: chunked without chunks): never a 5xx, never another answer.
    assert response.status_code in (200, 400), (header, value, response.status_code)
    if response.status_code == 200:
        assert response.text in (baseline, NOT_FOUND), (header, value)


def test_refused_without_the_secret_or_from_another_address(start_bridge, database_url):
    bridge = start_bridge()
    account_id, key, admin_id = make_account()
    client_for(bridge.url, account_id, key, admin_id).create_device(sip={"username": "2001", "password": "password"})
    assert ask(bridge, lookup()).status_code == 200
    assert ask(bridge, lookup(), auth=None).status_code == 403
    assert ask(bridge, lookup(), auth=("freeswitch", "wrong")).status_code == 403
    assert ask(bridge, lookup(), auth=("user", FREESWITCH_SECRET)).status_code == 403
    ok = ask(bridge, lookup(), auth=None, headers={"X-ESL-Bridge-Secret": FREESWITCH_SECRET})
    assert ok.status_code == 200 and "a1-hash" in ok.text
    elsewhere = start_bridge(freeswitch_allow=("10.0.0.0/8",))
    assert ask(elsewhere, lookup()).status_code == 403
    unset = start_bridge(freeswitch_secret=None)
    assert ask(unset, lookup()).status_code == 403
    assert ask(unset, lookup(), auth=("freeswitch", "")).status_code == 403


def test_get_is_not_allowed(bridge, phones):
    response = requests.get(f"{bridge.url}/freeswitch/directory?" + urlencode(lookup()), auth=AUTH, timeout=10)
    assert response.status_code == 405


@pytest.mark.parametrize("method, path", [("POST", "/freeswitch/nothing"), ("GET", "/freeswitch/directory"),
                                          ("GET", "/freeswitch/hotdesk/login"), ("POST", "/freeswitch")])
def test_unknown_paths_and_methods_without_the_secret_are_refused_and_logged(bridge, phones, caplog, method, path):
    # Without the secret nothing under /freeswitch/ says whether a path or a method exists.
    with caplog.at_level("WARNING", logger="web.callouts.guard"):
        response = requests.request(method, bridge.url + path, timeout=10)
    assert response.status_code == 403
    assert any(path in r.getMessage() and "missing or wrong secret" in r.getMessage() for r in caplog.records)
    # With it, the usual answers.
    known = requests.request(method, bridge.url + path, auth=AUTH, timeout=10)
    assert known.status_code == (404 if path.endswith(("nothing", "/freeswitch")) else 405)


def test_xml_special_characters_in_documents_are_escaped(bridge, phones):
    api = phones["api"]
    # caller id names allow parentheses and dots, never markup; the name of the device is free text
    device = api.create_device(name="<b>&\"quotes\"</b>", sip={"username": "2009", "password": "p&<>\"'x"},
                               caller_id={"internal": {"name": "O.Brien (desk)", "number": "+12"}})
    user = user_of(ask(bridge, lookup("2009")))
    assert user["params"]["a1-hash"] == a1("2009", "acme.test", "p&<>\"'x")
    assert user["variables"]["effective_caller_id_name"] == "O.Brien (desk)"
    assert user["variables"]["esl_bridge_device_id"] == device["id"]


def test_form_values_are_decoded_once(bridge, phones):
    body = urlencode(lookup("2001")).replace("user=2001", "user=" + quote("2001"))
    assert user_of(ask(bridge, body))["id"] == "2001"
