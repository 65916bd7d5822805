"""esl_bridge_hotdesk.lua (*11, *12, *13) running under a real Lua against the real esl-bridge.

Each test places a "call" from a registered phone: the script runs in lupa with a FreeSWITCH
session stand-in, its mod_curl requests go over HTTP to the running server, and the outcome is
checked both in what the caller heard and in esl-bridge's own API
(`GET /users/{U}/devices`, `hotdesked`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fixtures_web import FREESWITCH_SECRET, ApiClient
from http_stubs import SilentServer, StubHttp, closed_port
from lua_dialplan import Dialplan
from lua_harness import HANGUP, LUA_VERSIONS, FreeSwitch, Session, lua_argv, run_script

LOGGED_IN = "ivr/ivr-you_are_now_logged_in.wav"
LOGGED_OUT = "ivr/ivr-you_are_now_logged_out.wav"
INVALID = "ivr/ivr-that_was_an_invalid_entry.wav"
ENTER_ID = "ivr/ivr-please_enter_extension_followed_by_pound.wav"
ENTER_PIN = "ivr/ivr-please_enter_pin_followed_by_pound.wav"
ERROR_TONE = "tone_stream://%(274,0,913.8);%(274,0,1370.6);%(380,0,1776.7)"
NOT_AVAILABLE = "ivr/ivr-not_available.wav"
CALL_UUID = "36376d7e-038c-44a3-9b48-5f53ff7cadac"


@dataclass
class Office:
    """An account with two phones and three hotdesk users, and a way to call from a phone."""

    api: ApiClient
    url: str
    desk: dict[str, Any]
    lobby: dict[str, Any]
    alice: dict[str, Any]  # hotdesk id 1234, no PIN
    bob: dict[str, Any]  # hotdesk id 5678, PIN 9999 required
    carol: dict[str, Any]  # hotdesk id 4444, hotdesking disabled

    def phone(self, sip_user: str = "2001", digits: tuple[str, ...] = ()) -> Session:
        """A call from a registered phone, with the variables FreeSWITCH gives it."""
        device = {"2001": self.desk, "2002": self.lobby}.get(sip_user, {"id": "unknown"})
        return Session({
            "sip_auth_username": sip_user, "sip_auth_realm": "acme.test",
            "user_name": sip_user, "domain_name": "acme.test", "sip_from_user": sip_user,
            "esl_bridge_device_id": device["id"], "user_context": "default",
            "presence_id": f"{sip_user}@acme.test", "uuid": CALL_UUID,
        }, digits)

    def freeswitch(self, **global_vars: str) -> FreeSwitch:
        settings = {"esl_bridge_url": self.url, "esl_bridge_secret": FREESWITCH_SECRET}
        settings.update(global_vars)
        return FreeSwitch(settings)

    def call(self, action: str, hotdesk_id: str | None = None, *, digits: tuple[str, ...] = (),
             sip_user: str = "2001", lua_version: str = "lua54",
             fs: FreeSwitch | None = None, session: Session | None = None,
             ) -> tuple[Session, FreeSwitch]:
        session = session or self.phone(sip_user, digits)
        fs = fs or self.freeswitch()
        # The lua application's data as the dialplan writes it ("login $1", $1 maybe empty),
        # turned into argv as mod_lua does.
        data = f"esl_bridge_hotdesk.lua {action}" + \
            (f" {hotdesk_id}" if hotdesk_id is not None else "")
        script, args = lua_argv(data)
        run_script(script, args, session, fs, lua_version)
        return session, fs

    def devices_of(self, user: dict[str, Any]) -> dict[str, bool]:
        """device id -> hotdesked, from GET /users/{U}/devices."""
        response = self.api.get(f"users/{user['id']}/devices")
        assert response.status_code == 200, response.text
        return {row["id"]: row["hotdesked"] for row in response.json()["data"]}


@pytest.fixture
def office(api: ApiClient, bridge: Any) -> Office:
    desk = api.create_device(name="desk", sip={"username": "2001", "password": "secret-2001"})
    lobby = api.create_device(name="lobby", sip={"username": "2002", "password": "secret-2002"})
    alice = api.create_user(first_name="Alice", hotdesk={"enabled": True, "id": "1234"})
    bob = api.create_user(first_name="Bob", username="bob", hotdesk={
        "enabled": True, "id": "5678", "pin": "9999", "require_pin": True})
    carol = api.create_user(first_name="Carol", username="carol", hotdesk={
        "enabled": False, "id": "4444"})
    return Office(api, bridge.url, desk, lobby, alice, bob, carol)


def result_of(session: Session) -> str | None:
    return session.variables.get("esl_bridge_hotdesk_result")


# --- login --------------------------------------------------------------------------------------


@pytest.mark.parametrize("lua_version", LUA_VERSIONS)
def test_star11_with_an_id_logs_the_user_into_the_calling_phone(office: Office,
                                                               lua_version: str) -> None:
    assert office.devices_of(office.alice) == {}
    session, fs = office.call("login", "1234", lua_version=lua_version)
    assert result_of(session) == "ok"
    assert session.answered_
    assert session.played == [LOGGED_IN]
    assert office.devices_of(office.alice) == {office.desk["id"]: True}
    # Exactly the request of the contract.
    (call,) = fs.curl_calls
    assert call.url == f"{office.url}/freeswitch/hotdesk/login"
    assert call.method == "post"
    assert call.header("X-ESL-Bridge-Secret") == FREESWITCH_SECRET
    assert call.options == {"connect-timeout": "2", "timeout": "3"}
    assert call.form == {"sip_user": ["2001"], "realm": ["acme.test"], "hotdesk_id": ["1234"],
                         "call_uuid": [CALL_UUID]}
    assert call.output["status_code"] == "200"  # type: ignore[index]


def test_star11_alone_asks_for_the_id(office: Office) -> None:
    """``*11`` with nothing after: the data is ``login `` and mod_lua gives no argv[2]."""
    session, fs = office.call("login", "", digits=("1234#",))
    assert [p.file for p in session.prompts] == [ENTER_ID]
    assert session.prompts[0].regex == r"^\d{1,15}$"
    assert result_of(session) == "ok"
    assert fs.curl_calls[0].form["hotdesk_id"] == ["1234"]
    assert office.devices_of(office.alice) == {office.desk["id"]: True}


def test_no_id_keyed_in_is_an_error_without_asking_esl_bridge(office: Office) -> None:
    session, fs = office.call("login", digits=("", "#", "12a"))
    assert result_of(session) == "error"
    assert fs.curl_calls == []
    assert session.played[-1] == ERROR_TONE


def test_the_pin_is_asked_only_when_esl_bridge_wants_it(office: Office) -> None:
    session, fs = office.call("login", "5678", digits=("9999#",))
    assert result_of(session) == "ok"
    first, second = fs.curl_calls
    assert "pin" not in first.form
    assert first.output and '"pin_required"' in first.output["body"]  # type: ignore[index]
    assert second.form == {"sip_user": ["2001"], "realm": ["acme.test"], "hotdesk_id": ["5678"],
                           "pin": ["9999"], "call_uuid": [CALL_UUID]}
    assert [p.file for p in session.prompts] == [ENTER_PIN]
    assert session.prompts[0].regex == r"^\d{4,15}$"
    assert session.played[-1] == LOGGED_IN
    assert office.devices_of(office.bob) == {office.desk["id"]: True}


def test_the_pin_never_leaves_the_post_body(office: Office) -> None:
    session, fs = office.call("login", "5678", digits=("9999#",))
    assert result_of(session) == "ok"
    for call in fs.curl_calls:
        assert "9999" not in call.url
    assert "9999" not in fs.log_text()
    assert "9999" not in session.variables.values()
    assert all(p.var_name is None for p in session.prompts)


def test_a_wrong_pin_is_asked_again_then_the_right_one_logs_in(office: Office) -> None:
    session, fs = office.call("login", "5678", digits=("0000#", "9999#"))
    assert result_of(session) == "ok"
    assert [c.form.get("pin") for c in fs.curl_calls] == [None, ["0000"], ["9999"]]
    assert session.played == [ENTER_PIN, INVALID, ENTER_PIN, LOGGED_IN]
    assert office.devices_of(office.bob) == {office.desk["id"]: True}


def test_three_wrong_pins_end_with_an_error_and_no_login(office: Office) -> None:
    session, fs = office.call("login", "5678", digits=("0000#", "1111#", "2222#", "9999#"))
    assert result_of(session) == "invalid_pin"
    assert len(fs.curl_calls) == 4  # without PIN, then three PINs; the fourth is never asked
    assert session.played[-1] == INVALID
    assert office.devices_of(office.bob) == {}


def test_repeated_wrong_pins_are_locked_out_and_the_caller_told(office: Office) -> None:
    office.call("login", "5678", digits=("0000#", "1111#", "2222#"))
    session, _ = office.call("login", "5678", digits=("3333#", "4444#", "5555#"))
    assert result_of(session) == "too_many_attempts"
    # Even the right PIN is not asked for any more.
    session, fs = office.call("login", "5678", digits=("9999#",))
    assert result_of(session) == "too_many_attempts"
    assert len(fs.curl_calls) == 1 and session.prompts == []
    assert session.played == [INVALID]
    assert office.devices_of(office.bob) == {}


def test_hanging_up_at_the_pin_prompt_stops_quietly(office: Office) -> None:
    session, fs = office.call("login", "5678", digits=(HANGUP,))
    assert len(fs.curl_calls) == 1
    assert session.hangup_cause is not None
    assert session.played == [ENTER_PIN]  # nothing is played to a hung-up channel
    assert result_of(session) == "error"
    assert office.devices_of(office.bob) == {}


def test_a_caller_gone_before_the_script_runs_causes_no_request(office: Office) -> None:
    session = office.phone()
    session.hangup_cause = "ORIGINATOR_CANCEL"
    session, fs = office.call("login", "1234", session=session)
    assert fs.curl_calls == [] and session.played == []
    assert office.devices_of(office.alice) == {}


# --- answers that are not "ok" ----------------------------------------------------------------


def test_an_unknown_id_is_an_answer_not_a_crash(office: Office) -> None:
    session, fs = office.call("login", "4242")
    assert result_of(session) == "unknown_id"
    assert session.played == [INVALID]
    assert len(fs.curl_calls) == 1
    assert office.devices_of(office.alice) == {}


def test_a_user_with_hotdesking_disabled_is_refused(office: Office) -> None:
    session, _ = office.call("login", "4444")
    assert result_of(session) == "disabled"
    assert session.played == [INVALID]
    assert office.devices_of(office.carol) == {}


def test_a_caller_that_is_no_known_device_is_refused(office: Office) -> None:
    session, fs = office.call("login", "1234", sip_user="9999")
    assert result_of(session) == "unknown_device"
    assert fs.curl_calls[0].form["sip_user"] == ["9999"]
    assert office.devices_of(office.alice) == {}


def test_a_caller_without_a_digest_or_directory_user_never_reaches_esl_bridge(office: Office) -> None:
    session = Session({"sip_from_user": "2001", "sip_from_host": "acme.test", "uuid": CALL_UUID})
    session, fs = office.call("login", "1234", session=session)
    assert result_of(session) == "error"
    assert fs.curl_calls == []
    assert session.played == [ERROR_TONE]


# --- toggle and logout ------------------------------------------------------------------------


def test_toggle_logs_in_then_out(office: Office) -> None:
    session, _ = office.call("toggle", "1234")
    assert result_of(session) == "ok" and session.played == [LOGGED_IN]
    assert office.devices_of(office.alice) == {office.desk["id"]: True}
    session, fs = office.call("toggle", "1234")
    assert result_of(session) == "ok" and session.played == [LOGGED_OUT]
    assert fs.curl_calls[0].url.endswith("/freeswitch/hotdesk/toggle")
    assert office.devices_of(office.alice) == {}


def test_star13_alone_asks_for_the_id(office: Office) -> None:
    session, _ = office.call("toggle", digits=("1234#",))
    assert [p.file for p in session.prompts] == [ENTER_ID]
    assert office.devices_of(office.alice) == {office.desk["id"]: True}


def test_logout_with_an_id_logs_that_user_out(office: Office) -> None:
    office.call("login", "1234")
    office.call("login", "5678", digits=("9999#",))
    session, fs = office.call("logout", "1234")
    assert result_of(session) == "ok" and session.played == [LOGGED_OUT]
    assert fs.curl_calls[0].form["hotdesk_id"] == ["1234"]
    assert office.devices_of(office.alice) == {}
    assert office.devices_of(office.bob) == {office.desk["id"]: True}


def test_star12_alone_logs_everyone_out_of_the_calling_phone_without_a_prompt(office: Office) -> None:
    office.call("login", "1234")
    office.call("login", "5678", digits=("9999#",))
    office.call("login", "1234", sip_user="2002")  # alice moves to the lobby phone
    office.call("login", "5678", digits=("9999#",))  # and bob back to the desk
    session, fs = office.call("logout")
    assert session.prompts == []
    assert "hotdesk_id" not in fs.curl_calls[0].form
    assert result_of(session) == "ok"
    assert office.devices_of(office.bob) == {}
    assert office.devices_of(office.alice) == {office.lobby["id"]: True}


def test_a_quickcall_leg_is_identified_by_its_directory_user(office: Office) -> None:
    # FreeSWITCH originated this channel to user/2002@acme.test: no digest, dialed_* only.
    session = Session({"dialed_user": "2002", "dialed_domain": "acme.test", "uuid": CALL_UUID})
    session, fs = office.call("login", "1234", session=session)
    assert result_of(session) == "ok"
    assert fs.curl_calls[0].form["sip_user"] == ["2002"]
    assert office.devices_of(office.alice) == {office.lobby["id"]: True}


# --- esl-bridge unreachable, slow or odd --------------------------------------------------------


def test_esl_bridge_down_says_not_available_and_ends_cleanly(office: Office) -> None:
    fs = office.freeswitch(esl_bridge_url=f"http://127.0.0.1:{closed_port()}")
    session, fs = office.call("login", "1234", fs=fs)
    assert fs.curl_calls[0].output == {"exit_code": "7", "status_code": "0", "headers": []}
    assert result_of(session) == "unavailable"
    assert session.played == [NOT_AVAILABLE]
    assert any(level == "WARNING" and "curl exit code 7 (connection refused)" in text
               for level, text in fs.logs)


def test_esl_bridge_hanging_times_out_and_says_not_available(office: Office) -> None:
    with SilentServer() as url:
        fs = office.freeswitch(esl_bridge_url=url, esl_bridge_timeout="1",
                               esl_bridge_connect_timeout="1")
        session, fs = office.call("login", "5678", fs=fs)
    assert fs.curl_calls[0].output["exit_code"] == "28"  # type: ignore[index]
    assert result_of(session) == "unavailable"
    assert session.played == [NOT_AVAILABLE]
    assert any("curl exit code 28 (no answer within the timeout, 1 s)" in text
               for _, text in fs.logs)


@pytest.mark.parametrize(("output", "logged"), [
    ("", "mod_curl gave no reply"),
    ("-ERR no reply\n", "mod_curl answered '-ERR no reply'"),
    ("INVALID COMMAND!\n", "mod_curl answered 'INVALID COMMAND!'"),
])
def test_no_reply_from_mod_curl_says_not_available(office: Office, output: str,
                                                   logged: str) -> None:
    """What Lua gets when the call failed without ``json`` or mod_curl is missing."""
    fs = office.freeswitch()
    fs.curl = lambda args: output  # type: ignore[method-assign]
    session, fs = office.call("login", "1234", fs=fs)
    assert result_of(session) == "unavailable"
    assert session.played == [NOT_AVAILABLE]
    assert any(level == "WARNING" and logged in text for level, text in fs.logs)


@pytest.mark.parametrize(("status", "result", "heard"), [
    ("503 Service Unavailable", "unavailable", NOT_AVAILABLE),
    ("500 Internal Server Error", "error", ERROR_TONE),
])
def test_an_esl_bridge_that_cannot_serve_says_not_available(office: Office, status: str,
                                                           result: str, heard: str) -> None:
    with StubHttp(status=status, body=b'{"error": "x"}') as url:
        session, fs = office.call("login", "1234", fs=office.freeswitch(esl_bridge_url=url))
    assert (result_of(session), session.played) == (result, [heard])
    assert any(f"HTTP {status[:3]}" in text for _, text in fs.logs)


def test_a_wrong_secret_is_refused_by_esl_bridge_and_the_caller_hears_the_error(office: Office) -> None:
    fs = office.freeswitch(esl_bridge_secret="not-the-secret")
    session, fs = office.call("login", "1234", fs=fs)
    assert fs.curl_calls[0].output["status_code"] == "403"  # type: ignore[index]
    assert result_of(session) == "error"
    assert session.played == [ERROR_TONE]
    assert office.devices_of(office.alice) == {}


@pytest.mark.parametrize("body", [b"", b"<html>busy</html>", b'{"result": 42}', b"[]",
                                  b'{"result": "ok", "prompt": "../../../etc/passwd"}'])
def test_odd_answers_never_crash_the_script(office: Office, body: bytes) -> None:
    with StubHttp(body=body) as url:
        session, _ = office.call("login", "1234", fs=office.freeswitch(esl_bridge_url=url))
    if b"passwd" in body:
        assert result_of(session) == "ok"
        assert session.played == ["tone_stream://%(200,0,500,600,700)"]  # not the odd prompt
    else:
        assert result_of(session) == "error"
        assert session.played == [ERROR_TONE]


def test_the_shipped_placeholder_secret_is_never_sent(office: Office) -> None:
    fs = office.freeswitch(esl_bridge_secret="change-me-to-a-long-random-secret")
    session, fs = office.call("login", "1234", fs=fs)
    assert fs.curl_calls == []
    assert session.played == [ERROR_TONE]
    assert "placeholder" in fs.log_text()


def test_freeswitch_json_decoder_gives_the_same_outcome(office: Office) -> None:
    fs = FreeSwitch({"esl_bridge_url": office.url, "esl_bridge_secret": FREESWITCH_SECRET},
                    json_class=True)
    session, _ = office.call("login", "5678", digits=("9999#",), fs=fs)
    assert result_of(session) == "ok"
    assert office.devices_of(office.bob) == {office.desk["id"]: True}


# --- through the shipped dialplan ------------------------------------------------------------


def test_dialling_star11_id_through_the_dialplan_hotdesks_the_user(office: Office) -> None:
    session, fs = office.phone(), office.freeswitch()
    dialplan = Dialplan(apis={"user_exists": lambda args: "false"})
    actions = dialplan.dial("*111234", session, fs)
    assert [app for app, _ in actions] == ["answer", "lua", "hangup"]
    assert result_of(session) == "ok"
    assert session.hangup_cause == "NORMAL_CLEARING"
    assert office.devices_of(office.alice) == {office.desk["id"]: True}

    session = office.phone()
    dialplan.dial("*12", session, fs)
    assert result_of(session) == "ok"
    assert office.devices_of(office.alice) == {}


def test_dialling_star13_alone_through_the_dialplan_prompts_then_toggles(office: Office) -> None:
    session, fs = office.phone(digits=("5678#", "9999#")), office.freeswitch()
    Dialplan(apis={"user_exists": lambda args: "false"}).dial("*13", session, fs)
    assert [p.file for p in session.prompts] == [ENTER_ID, ENTER_PIN]
    assert result_of(session) == "ok"
    assert office.devices_of(office.bob) == {office.desk["id"]: True}


def test_an_esl_bridge_that_keeps_asking_for_the_pin_gets_three_and_an_error(office: Office) -> None:
    body = b'{"result": "pin_required", "action": "login", "prompt": ""}'
    with StubHttp(body=body) as url:
        session, fs = office.call("login", "5678", digits=("1111#", "2222#", "3333#", "4444#"),
                                  fs=office.freeswitch(esl_bridge_url=url))
    assert len(fs.curl_calls) == 4
    assert result_of(session) == "error"
    assert session.played[-1] == ERROR_TONE
