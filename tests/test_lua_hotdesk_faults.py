"""The hotdesk Lua scripts when esl-bridge is unreachable, slow or answers oddly, and through
the shipped dialplan: the caller hears the right prompt and the log says why."""
from __future__ import annotations

import pytest
from fixtures_hotdesk import (
    ENTER_ID,
    ENTER_PIN,
    ERROR_TONE,
    NOT_AVAILABLE,
    Office,
    result_of,
)
from fixtures_web import FREESWITCH_SECRET
from http_stubs import SilentServer, StubHttp, closed_port
from lua_dialplan import Dialplan
from lua_harness import FreeSwitch

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
