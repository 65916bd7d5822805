"""QuickCall over HTTP (SPEC §6.1), end to end: the real server, a real pool, test FreeSWITCH
nodes; each test asserts on the exact commands the nodes received, and on what they did not."""
from __future__ import annotations

import time
from collections.abc import Iterator

import gevent
import pytest
import requests
from fake_freeswitch.originate import hupall
from fixtures_web import assert_error, assert_invalid, client_for, make_account
from test_actions_support import (
    Bridge,
    bridge_fixture,
    is_uuid,
    originate,
    recorded,
    wait_until,
)
from test_actions_support import expected_originate as expected
from test_actions_support import success_data as ok

CALL_KEYS = {"call_id", "job_id", "endpoint", "number", "cid_name", "cid_number", "timeout",
             "auto_answer", "node"}


@pytest.fixture
def bridge(start_bridge, fake_freeswitch_factory, esl_pool_factory) -> Iterator[Bridge]:
    yield from bridge_fixture(start_bridge, fake_freeswitch_factory, esl_pool_factory)


# --- the originate ------------------------------------------------------------------------------

def test_originate_is_the_recorded_one_byte_for_byte(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    response = bridge.quickcall(device["id"], "9196", "cid-name=Bars%20Test&cid-number=15551112222",
                                headers={"X-Request-ID": "req-113"})
    data = ok(response)
    # The FreeSWITCH recording (esl2/113), with this call's ids, and after the device id the
    # request id SPEC §6.1 adds and the call's own id (its legs can be hung up at once).
    want = recorded("113_")
    want = want.replace("931a5c0a-60a9-4023-96c3-4731911344e2", data["call_id"])
    want = want.replace("a9061ffb-bfdd-4924-8ee7-a8c5ddb85f44", data["job_id"])
    want = want.replace("fedcba9876543210fedcba9876543210", bridge.account_id)
    want = want.replace("esl_bridge_device_id=0123456789abcdef0123456789abcdef",
                        f"esl_bridge_device_id={device['id']},esl_bridge_request_id=req-113,"
                        f"esl_bridge_call_id={data['call_id']}")
    assert bridge.sent() == [want]
    assert data == {"call_id": data["call_id"], "job_id": data["job_id"],
                    "endpoint": "2001@acme.test", "number": "9196", "cid_name": "Bars Test",
                    "cid_number": "15551112222", "timeout": 30, "auto_answer": True,
                    "node": bridge.fs1.name}
    assert is_uuid(data["call_id"]) and is_uuid(data["job_id"]) and data["call_id"] != data["job_id"]
    assert response.headers["X-Request-ID"] == "req-113"


def test_get_answers_at_once_with_the_call_while_the_phone_still_rings(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    bridge.fs1.set_behaviour("2001", "acme.test", "hang")  # rings until FreeSWITCH stops
    bridge.mark()
    response = bridge.quickcall(device["id"], "9196", "cid-name=Bars%20Test&cid-number=15551112222")
    data = ok(response)
    assert set(data) == CALL_KEYS
    assert data["call_id"] in bridge.fs1.channels  # ringing, not answered: GET did not wait
    assert not bridge.fs1.channels[data["call_id"]].answered
    assert bridge.sent() == [expected(bridge, response, device_id=device["id"])]


def test_post_waits_for_the_answer(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    bridge.fs1.answer_delay = 0.1
    bridge.mark()
    started = time.monotonic()
    response = bridge.quickcall(device["id"], "9196", "timeout=10", method="POST")
    elapsed = time.monotonic() - started
    data = ok(response)
    assert data.pop("status") == "answered"
    assert set(data) == CALL_KEYS
    channel = bridge.fs1.channels[data["call_id"]]
    assert channel.answered  # POST answered only once the phone had
    assert 0.1 <= elapsed < 10, elapsed  # within its ring timeout (generous slack)
    assert bridge.sent() == [expected(bridge, response, device_id=device["id"], timeout=10)]


@pytest.mark.parametrize("behaviour, cause", [
    (None, "USER_NOT_REGISTERED"),
    ("busy", "USER_BUSY"),
    ("no_answer", "NO_ANSWER"),
    ("unknown", "SUBSCRIBER_ABSENT"),
])
def test_post_reports_the_freeswitch_cause(bridge: Bridge, behaviour: str | None, cause: str) -> None:
    device = bridge.device("2001")
    if behaviour is not None:
        bridge.register(bridge.fs1, "2001")
        bridge.fs1.set_behaviour("2001", "acme.test", behaviour)
    bridge.mark()
    started = time.monotonic()
    response = bridge.quickcall(device["id"], "9196", "timeout=5", method="POST")
    assert time.monotonic() - started < 5  # no_answer rings 5 s scaled down by the fake
    body = assert_error(response, 500, "quickcall initiation failed")
    data = body["data"]
    assert data["error_message"] == cause
    assert {k: v for k, v in data.items() if k != "error_message"}.keys() == CALL_KEYS
    assert data["endpoint"] == "2001@acme.test" and data["number"] == "9196"
    assert bridge.sent() == [originate(
        call_id=data["call_id"], job_id=data["job_id"], legs="user/2001@acme.test", number="9196",
        cid_name=data["cid_name"], cid_number=data["cid_number"],
        account_id=bridge.account_id, device_id=device["id"], request_id=body["request_id"],
        timeout=5)]


# --- parameters and defaults --------------------------------------------------------------------

@pytest.mark.parametrize("caller_id, query, name, number", [
    ({"external": {"name": "Main Line", "number": "+15550001111"},
      "internal": {"name": "Desk", "number": "2001"}}, "", "Main Line", "+15550001111"),
    ({"internal": {"name": "Desk", "number": "2001"}}, "", "Desk", "2001"),
    ({"external": {"name": "Main Line", "number": "+15550001111"}},
     "cid-name=Asked%20For&cid-number=4445556666", "Asked For", "4445556666"),
    ({"external": {"name": "Main Line", "number": "+15550001111"}},
     "cid-name=Asked", "Asked", "+15550001111"),
    ({"external": {"name": "Main Line", "number": "+15550001111"}},
     "cid-number=%2B4445556666", "Main Line", "+4445556666"),
    ({"external": {"name": "Main Line", "number": "+15550001111"}},
     "cid-name=Jos%C3%A9%20M.%20(Sales)-2_b%2B", "José M. (Sales)-2_b+", "+15550001111"),
])
def test_caller_id_defaults_to_external_then_internal(bridge: Bridge, caller_id: dict, query: str,
                                                     name: str, number: str) -> None:
    device = bridge.device("2001", caller_id=caller_id)
    response = bridge.quickcall(device["id"], "9196", query)
    data = ok(response)
    assert (data["cid_name"], data["cid_number"]) == (name, number)
    assert bridge.sent() == [expected(bridge, response, device_id=device["id"],
                                      cid_name=name, cid_number=number)]


@pytest.mark.parametrize("query, timeout", [
    ("", 30), ("timeout=0", 30), ("timeout=3", 30), ("timeout=4", 4), ("timeout=45", 45),
    ("timeout=120", 120), ("timeout=007", 7),
])
def test_timeout(bridge: Bridge, query: str, timeout: int) -> None:
    device = bridge.device("2001")
    response = bridge.quickcall(device["id"], "9196", query)
    assert ok(response)["timeout"] == timeout
    assert bridge.sent() == [expected(bridge, response, device_id=device["id"], timeout=timeout)]


@pytest.mark.parametrize("query, rule", [
    ("timeout=121", "timeout:maximum"),
    ("timeout=99999999999999999999", "timeout:maximum"),
    ("timeout=" + "9" * 5000, "timeout:maximum"),
    ("timeout=-1", "timeout:type"),
    ("timeout=ten", "timeout:type"),
    ("timeout=3.5", "timeout:type"),
    ("timeout=", "timeout:type"),
    ("timeout=%C2%B2", "timeout:type"),  # '²' is a digit to str.isdigit, not to int()
    ("timeout=%D9%A3%D9%A0", "timeout:type"),  # Arabic-Indic 30
    ("timeout=30,sip_auto_answer=false", "timeout:type"),
    ("auto_answer=yes", "auto_answer:enum"),
    ("number_filter=no", "number_filter:enum"),
    ("ignore-early-media=1", "ignore-early-media:enum"),
    ("media=proxy", "media:enum"),
])
def test_bad_parameters_are_400_and_send_nothing(bridge: Bridge, query: str, rule: str) -> None:
    device = bridge.device("2001")
    response = bridge.quickcall(device["id"], "9196", query)
    assert_invalid(response, rule, exact=True)
    assert bridge.sent() == []


@pytest.mark.parametrize("number, query, dialled", [
    ("9196", "", "9196"),
    ("+1%20(555)%20123-4567", "", "+15551234567"),
    ("555.123.4567", "", "5551234567"),
    ("1,2,3", "", "123"),
    ("*97", "", "*97"),
    ("%2312", "", "#12"),
    ("+15551234567", "number_filter=false", "+15551234567"),
    ("555.123.4567", "number_filter=true", "5551234567"),
    ("9" * 32, "", "9" * 32),
    ("+" + "9" * 32, "", "+" + "9" * 32),
])
def test_number_filter(bridge: Bridge, number: str, query: str, dialled: str) -> None:
    device = bridge.device("2001")
    response = bridge.quickcall(device["id"], number, query)
    assert ok(response)["number"] == dialled
    assert bridge.sent() == [expected(bridge, response, device_id=device["id"], number=dialled)]


@pytest.mark.parametrize("number", ["555.123.4567", "555%201234", "(555)1234", "1-2", "9" * 33])
def test_number_filter_false_keeps_the_number_as_is(bridge: Bridge, number: str) -> None:
    device = bridge.device("2001")
    query = "number_filter=false" if number != "9" * 33 else ""
    response = bridge.quickcall(device["id"], number, query)
    assert_invalid(response, "number:pattern", exact=True)
    assert bridge.sent() == []


@pytest.mark.parametrize("query, flags", [
    ("auto_answer=false", {"auto_answer": False}),
    ("auto_answer=FALSE", {"auto_answer": False}),
    ("auto_answer=true", {}),
    ("media=bypass", {"bypass_media": True}),
    ("media=process", {}),
    ("ignore-early-media=false", {"ignore_early_media": False}),
    ("ignore-early-media=false&media=bypass&auto_answer=false",
     {"ignore_early_media": False, "bypass_media": True, "auto_answer": False}),
])
def test_media_and_answer_flags(bridge: Bridge, query: str, flags: dict[str, bool]) -> None:
    device = bridge.device("2001")
    response = bridge.quickcall(device["id"], "9196", query)
    data = ok(response)
    assert data["auto_answer"] is flags.get("auto_answer", True)
    [command] = bridge.sent()
    assert command == expected(bridge, response, device_id=device["id"], **flags)
    assert ("sip_auto_answer" in command) is flags.get("auto_answer", True)


def test_the_account_dialplan_context_is_used(bridge: Bridge) -> None:
    assert bridge.api.post("", {"name": "acme", "realm": "acme.test",
                                "dialplan_context": "acme-ctx"}).status_code == 200
    device = bridge.device("2001")
    response = bridge.quickcall(device["id"], "9196")
    assert bridge.sent() == [expected(bridge, response, device_id=device["id"], context="acme-ctx")]


# --- checks before anything is sent -------------------------------------------------------------

@pytest.mark.parametrize("doc", [{"enabled": False}, {"do_not_disturb": {"enabled": True}}])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_disabled_or_do_not_disturb_is_400_and_sends_nothing(bridge: Bridge, doc: dict, method: str) -> None:
    device = bridge.device("2001", **doc)
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    data = assert_error(bridge.quickcall(device["id"], "9196", method=method), 400, "invalid request")["data"]
    assert list(data) == ["device"] and "disabled" in data["device"]
    assert bridge.sent() == []


def test_do_not_disturb_off_rings(bridge: Bridge) -> None:
    device = bridge.device("2001", do_not_disturb={"enabled": False})
    ok(bridge.quickcall(device["id"], "9196"))
    assert [c.split(" ", 2)[:2] for c in bridge.sent()] == [["bgapi", "originate"]]


def test_a_device_without_sip_credentials_is_400(bridge: Bridge) -> None:
    device = bridge.device(None, device_type="cellphone")
    assert_invalid(bridge.quickcall(device["id"], "9196"), "sip.username:required")
    assert bridge.sent() == []


def test_unknown_device_is_404_and_sends_nothing(bridge: Bridge) -> None:
    response = bridge.quickcall("0" * 32, "9196")
    assert_error(response, 404, "bad_identifier")
    assert bridge.sent() == []


# --- anonymous quickcalls -----------------------------------------------------------------------

def test_anonymous_quickcall_is_401_unless_allowed(bridge: Bridge) -> None:
    device = bridge.device("2001")
    for method in ("GET", "POST"):
        response = bridge.quickcall(device["id"], "9196", method=method, token=None)
        body = assert_error(response, 401, "invalid_credentials")
        assert body["auth_token"] == "undefined"
    assert bridge.sent() == []


@pytest.mark.parametrize("where", ["account", "device"])
def test_anonymous_device_quickcall_when_allowed(bridge: Bridge, where: str) -> None:
    if where == "account":
        response = bridge.api.patch("", {"allow_anonymous_quickcalls": True})
        assert response.status_code == 200, response.text
        device = bridge.device("2001")
    else:
        device = bridge.device("2001", allow_anonymous_quickcalls=True)
    other = bridge.device("2002")  # allowed too when the account allows, not otherwise
    response = bridge.quickcall(device["id"], "9196", token=None)
    assert ok(response)["endpoint"] == "2001@acme.test"
    assert bridge.sent() == [expected(bridge, response, device_id=device["id"])]
    bridge.mark()
    response = bridge.quickcall(other["id"], "9196", token=None)
    if where == "account":
        assert ok(response)["endpoint"] == "2002@acme.test"
        assert len(bridge.sent()) == 1
    else:
        assert_error(response, 401, "invalid_credentials")
        assert bridge.sent() == []
    # A token that is given must be valid: a wrong one is never taken as anonymous.
    bridge.mark()
    assert_error(bridge.quickcall(device["id"], "9196", "auth_token=" + "0" * 43, token=None),
                 401, "invalid_credentials")
    assert bridge.sent() == []


def test_anonymous_never_reveals_whether_ids_exist(bridge: Bridge) -> None:
    device = bridge.device("2001")  # exists, anonymous not allowed
    user = bridge.user()
    paths = [
        f"devices/{device['id']}/quickcall/9196",
        f"devices/{'0' * 32}/quickcall/9196",
        "devices/not-an-id/quickcall/9196",
        f"users/{user['id']}/quickcall/9196",
        f"users/{'0' * 32}/quickcall/9196",
        f"/v2/accounts/{'0' * 32}/devices/{device['id']}/quickcall/9196",
        "/v2/accounts/nope/users/nope/quickcall/9196",
    ]
    bodies = []
    for path in paths:
        response = bridge.api.get(path, token=None)
        body = assert_error(response, 401, "invalid_credentials")
        bodies.append({k: v for k, v in body.items() if k != "request_id"})
    assert all(body == bodies[0] for body in bodies), bodies
    assert bridge.sent() == []


def test_anonymous_allowed_account_still_validates(bridge: Bridge) -> None:
    assert bridge.api.patch("", {"allow_anonymous_quickcalls": True}).status_code == 200
    device = bridge.device("2001", enabled=False)
    assert_error(bridge.quickcall(device["id"], "9196", token=None), 400, "invalid request")
    assert_error(bridge.quickcall("0" * 32, "9196", token=None), 401, "invalid_credentials")
    good = bridge.device("2002")
    assert_invalid(bridge.quickcall(good["id"], "9196", "cid-name=a%0Ab", token=None), "cid-name:pattern")
    assert bridge.sent() == []


def test_a_token_of_another_account_is_403_and_sends_nothing(bridge: Bridge) -> None:
    device = bridge.device("2001", allow_anonymous_quickcalls=True)
    user = bridge.user(allow_anonymous_quickcalls=True)
    bridge.device("2002", owner_id=user["id"])
    other_id, other_key, _ = make_account("other", "other.test")
    other = client_for(bridge.url, other_id, other_key, realm="other.test")
    bridge.mark()
    for path in (f"devices/{device['id']}/quickcall/9196", f"users/{user['id']}/quickcall/9196"):
        for method in ("GET", "POST"):
            response = bridge.api.request(method, path, token=other.token)
            assert_error(response, 403, "forbidden")
    assert bridge.sent() == []
    other.session.close()


def test_calls_waiting_for_their_answer_leave_the_database_to_other_requests(bridge: Bridge) -> None:
    """A POST QuickCall waits for the call's outcome, as long as the phone rings: one database
    connection held by each waiting call would, once calls outnumber the connection pool (64 on
    SQLite, 32 on PostgreSQL per worker), leave every other request (FreeSWITCH's directory
    lookups too) waiting for one and then answered 500."""
    calls = 70
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    bridge.fs1.set_behaviour("2001", "acme.test", "hang")  # rings until hung up
    url = bridge.api.url(f"devices/{device['id']}/quickcall/9196?timeout=120")
    headers = {"X-Auth-Token": bridge.api.token}
    ringing = [gevent.spawn(requests.post, url, headers=headers, timeout=60) for _ in range(calls)]
    try:
        assert wait_until(lambda: len(bridge.fs1.channels) == calls, timeout=30)
        response = bridge.api.get(f"devices/{device['id']}")
        assert response.status_code == 200, response.text
    finally:
        hupall(bridge.fs1, "NORMAL_CLEARING")  # as FreeSWITCH runs `hupall`: every call ends
        gevent.joinall(ringing, timeout=30)
    assert [call.value.status_code for call in ringing] == [500] * calls  # hung up: NORMAL_CLEARING
