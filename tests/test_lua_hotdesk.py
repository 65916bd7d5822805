"""esl_bridge_hotdesk.lua (*11, *12, *13) running under a real Lua against the real esl-bridge.

Each test places a "call" from a registered phone: the script runs in lupa with a FreeSWITCH
session stand-in, its mod_curl requests go over HTTP to the running server, and the outcome is
checked both in what the caller heard and in esl-bridge's own API
(`GET /users/{U}/devices`, `hotdesked`).
"""
from __future__ import annotations

import pytest
from fixtures_hotdesk import (
    CALL_UUID,
    ENTER_ID,
    ENTER_PIN,
    ERROR_TONE,
    INVALID,
    LOGGED_IN,
    LOGGED_OUT,
    Office,
    result_of,
)
from fixtures_web import FREESWITCH_SECRET
from lua_harness import HANGUP, LUA_VERSIONS, Session

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
