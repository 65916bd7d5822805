"""esl_bridge_lib.lua on its own: settings, mod_curl form encoding, JSON, the HTTP call and its
failures, on every Lua version mod_lua may be built with."""
from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs

import pytest
from fake_freeswitch.curl import switch_url_decode
from http_stubs import SilentServer, StubHttp, closed_port
from lua_harness import LUA_VERSIONS, ROOT, FreeSwitch, LoadedLib, load_lib, lua_to_python

# ../shared/freeswitch/xml_curl/lua_curl_json_output.txt: what a Lua script passed to mod_curl
# on FreeSWITCH 1.10, the body FreeSWITCH then sent (38_k_hotdesk_lua__POST_…login.txt), and
# what mod_curl returned to Lua.
RECORDED_FIELDS = [
    ("sip_user", "2001"), ("realm", "acme.test"), ("device_id", "dev-2001-7f3a"),
    ("hotdesk_id", "1234"), ("pin", "0000"), ("call_uuid", "36376d7e-038c-44a3-9b48-5f53ff7cadac"),
    ("note", "Alice & Bob=1+1 100%"),
]
RECORDED_POST_ARGUMENT = (
    "sip_user=2001&realm=acme.test&device_id=dev-2001-7f3a&hotdesk_id=1234&pin=0000"
    "&call_uuid=36376d7e-038c-44a3-9b48-5f53ff7cadac"
    "&note=Alice%2520%2526%2520Bob%253D1%252B1%2520100%2525"
)
RECORDED_BODY_SENT = (
    b"sip_user=2001&realm=acme.test&device_id=dev-2001-7f3a&hotdesk_id=1234&pin=0000"
    b"&call_uuid=36376d7e-038c-44a3-9b48-5f53ff7cadac&note=Alice%20%26%20Bob%3D1%2B1%20100%25"
)
RECORDED_CURL_OUTPUT = (
    '{"exit_code":"0","status_code":"200","body":"{\\"result\\":\\"ok\\",\\"prompt\\":\\"ivr/'
    'ivr-you_are_now_logged_in.wav\\",\\"device_id\\":\\"dev-2001-7f3a\\"}\\n","version":"HTTP/'
    '1.1","phrase":"OK","headers":[{"key":"Server","value":"lab01-capture/1.0"},{"key":"Content-'
    'Type","value":"application/json"},{"key":"Content-Length","value":"89"},{"key":"Connection",'
    '"value":"close"}]}'
)

SECRET = "0123456789abcdef-secret"

HOSTILE_VALUES = [
    "Alice & Bob=1+1 100%", "%25", "%%", "%2", "a b  c", "'quoted' \"double\"", "back\\slash",
    "new\nline\r\n", "tab\tx", "x=y&z=w", "+", "%00", "ünïcødé ☎", "<script>", "a;b,c|d",
    "${system(rm -rf /)}", "", "0", " ",
]


@pytest.fixture(params=LUA_VERSIONS)
def lua_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_lib(lua_version: str = "lua54", **global_vars: str) -> tuple[LoadedLib, FreeSwitch]:
    fs = FreeSwitch(global_vars)
    return load_lib(fs, lua_version), fs


def configured(url: str, lua_version: str = "lua54", **extra: str) -> tuple[LoadedLib, FreeSwitch, Any]:
    loaded, fs = make_lib(lua_version, esl_bridge_url=url, esl_bridge_secret=SECRET, **extra)
    cfg, problem = loaded.module.config(), None
    if isinstance(cfg, tuple):
        cfg, problem = cfg
    assert cfg is not None, problem
    return loaded, fs, cfg


def post(loaded: LoadedLib, cfg: Any, path: str, pairs: list[tuple[str, str]]) -> tuple[Any, Any]:
    result = loaded.module.post(cfg, path, loaded.pairs(pairs))
    if isinstance(result, tuple):
        return result[0], result[1]
    return result, None


# --- settings ---------------------------------------------------------------------------------


def config(**global_vars: str) -> tuple[dict[str, Any] | None, str | None, FreeSwitch]:
    loaded, fs = make_lib(**global_vars)
    result = loaded.module.config()
    cfg, problem = result if isinstance(result, tuple) else (result, None)
    return (lua_to_python(cfg) if cfg is not None else None), problem, fs


def test_defaults_with_only_a_secret() -> None:
    cfg, problem, _ = config(esl_bridge_secret=SECRET)
    assert problem is None
    assert cfg == {"url": "http://127.0.0.1:8000", "secret": SECRET, "connect_timeout": 2,
                   "timeout": 3}


def test_url_trailing_slashes_are_dropped_and_timeouts_read() -> None:
    cfg, _, _ = config(esl_bridge_url="https://bridge.example:8443/", esl_bridge_secret=SECRET,
                       esl_bridge_connect_timeout="1", esl_bridge_timeout="7")
    assert cfg == {"url": "https://bridge.example:8443", "secret": SECRET, "connect_timeout": 1,
                   "timeout": 7}


@pytest.mark.parametrize("value", ["0", "61", "2.5", "soon", "-1"])
def test_a_bad_timeout_falls_back_to_the_default_with_a_warning(value: str) -> None:
    cfg, _, fs = config(esl_bridge_secret=SECRET, esl_bridge_timeout=value)
    assert cfg is not None and cfg["timeout"] == 3
    assert any(level == "WARNING" and "esl_bridge_timeout" in text for level, text in fs.logs)


@pytest.mark.parametrize(("global_vars", "reason"), [
    ({}, "not set"),
    ({"esl_bridge_secret": ""}, "not set"),
    ({"esl_bridge_secret": "change-me-to-a-long-random-secret"}, "placeholder"),
    ({"esl_bridge_secret": "two words"}, "may only hold"),
    ({"esl_bridge_secret": "quote'd"}, "may only hold"),
    ({"esl_bridge_secret": "new\nline"}, "may only hold"),
    ({"esl_bridge_secret": SECRET, "esl_bridge_url": "ftp://host"}, "not an http"),
    ({"esl_bridge_secret": SECRET, "esl_bridge_url": "http://a b"}, "not an http"),
    ({"esl_bridge_secret": SECRET, "esl_bridge_url": "http://h/x post a=b"}, "not an http"),
])
def test_unusable_settings_are_refused_with_a_reason(global_vars: dict[str, str], reason: str) -> None:
    cfg, problem, _ = config(**global_vars)
    assert cfg is None
    assert problem is not None and reason in problem


# --- form encoding ----------------------------------------------------------------------------


def test_the_encoding_matches_what_was_recorded_on_freeswitch(lua_version: str) -> None:
    loaded, _ = make_lib(lua_version)
    argument = loaded.module.curl_post_data(loaded.pairs(RECORDED_FIELDS))
    assert argument == RECORDED_POST_ARGUMENT
    # mod_curl's one decode gives exactly the body FreeSWITCH sent.
    assert switch_url_decode(argument) == RECORDED_BODY_SENT


def test_hostile_values_survive_mod_curl_and_the_form_parser(lua_version: str) -> None:
    loaded, _ = make_lib(lua_version)
    pairs = [(f"k{i}", value) for i, value in enumerate(HOSTILE_VALUES)]
    pairs.append(("we&ird=name", "v"))
    argument = loaded.module.curl_post_data(loaded.pairs(pairs))
    # Nothing mod_curl would split on or unquote.
    assert set(argument) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "0123456789%&=._~-")
    sent = switch_url_decode(argument)
    parsed = parse_qs(sent.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    assert parsed == {name: [value] for name, value in pairs}


# --- JSON -------------------------------------------------------------------------------------

JSON_ANSWERS = [
    '{"result":"ok","action":"login","prompt":"ivr/ivr-you_are_now_logged_in.wav",'
    '"user_id":"0123456789abcdef0123456789abcdef","device_id":null}',
    '{"presence_id": "alice-cell@acme.test", "device_id": "d"}',
    '{"presence_id": null, "device_id": null}',
    '{"a": [1, 2.5, -3, 1e3, true, false, "x"], "b": {"c": {"d": []}}, "e": {}}',
    r'{"esc": "q\" b\\ s\/ \b\f\n\r\t u\u00e9 \u260e \ud83d\ude00"}',
    RECORDED_CURL_OUTPUT,
]


@pytest.mark.parametrize("text", JSON_ANSWERS)
def test_answers_are_decoded_with_freeswitch_json(text: str, lua_version: str) -> None:
    """mod_lua's freeswitch.JSON gives the object, nulls left out; numbers are floats under Lua
    5.3 and 5.4 (1.0), which the comparison reads as the numbers they are."""
    loaded, _ = make_lib(lua_version)
    value = loaded.module.json_decode(text)
    assert normalise(lua_to_python(value)) == normalise(drop_nulls(json.loads(text)))


@pytest.mark.parametrize("text", ["", "not json", "{", '"just a string"', "0", "[1,]"])
def test_what_is_not_a_json_object_is_refused(text: str) -> None:
    """Not JSON: freeswitch.JSON gives nil. A bare string or number: it gives an empty table,
    which post() still refuses as "not a JSON object"."""
    loaded, _ = make_lib()
    value = loaded.module.json_decode(text)
    value = value[0] if isinstance(value, tuple) else value
    assert value is None or lua_to_python(value) == {}
    with StubHttp(body=text.encode()) as url:
        loaded, _, cfg = configured(url)
        answer, problem = post(loaded, cfg, "/x", [("a", "1")])
    assert answer is None and problem


def test_a_mod_lua_without_freeswitch_json_fails_clearly() -> None:
    fs = FreeSwitch({"esl_bridge_secret": SECRET}, json_class=False)
    loaded = load_lib(fs)
    value, reason = loaded.module.json_decode('{"result":"ok"}')
    assert value is None and "freeswitch.JSON" in reason


def test_codes_sent_as_numbers_read_as_codes(lua_version: str) -> None:
    """freeswitch.JSON turns a number into a float: 7 is 7.0 under Lua 5.3, and must still read
    as exit code "7", 200 as status "200"."""
    loaded, _ = make_lib(lua_version)
    assert loaded.module.code(7.0) == "7" and loaded.module.code(200) == "200"
    assert loaded.module.code("28") == "28" and loaded.module.code(None) is None


def drop_nulls(value: Any) -> Any:
    """JSON null is nil in Lua: a key holding it is absent."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def normalise(value: Any) -> Any:
    """Empty Lua tables read back as {}: make [] and {} compare equal; 1000.0 == 1000."""
    if isinstance(value, dict | list) and not value:
        return {}
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# --- the HTTP call ----------------------------------------------------------------------------


def test_post_sends_one_mod_curl_command_and_decodes_the_answer(lua_version: str) -> None:
    answer = {"result": "ok", "action": "login", "prompt": "", "user_id": "u", "device_id": "d"}
    with StubHttp(body=json.dumps(answer).encode()) as url:
        loaded, fs, cfg = configured(url, lua_version)
        value, problem = post(loaded, cfg, "/freeswitch/hotdesk/login",
                              [("sip_user", "2001"), ("realm", "acme.test"), ("note", "a b&c")])
    assert problem is None
    assert lua_to_python(value) == answer
    assert [command for command, _ in fs.api_calls] == ["curl"]
    (call,) = fs.curl_calls
    tokens = call.args.split(" ")
    assert tokens[:9] == [f"{url}/freeswitch/hotdesk/login", "json", "connect-timeout", "2",
                          "timeout", "3", "append_headers", f"X-ESL-Bridge-Secret:{SECRET}",
                          "post"]
    assert len(tokens) == 10
    assert call.method == "post"
    assert call.header("X-ESL-Bridge-Secret") == SECRET
    assert call.form == {"sip_user": ["2001"], "realm": ["acme.test"], "note": ["a b&c"]}


def test_the_stand_in_answers_in_the_recorded_shape() -> None:
    body = b'{"result":"ok","prompt":"ivr/ivr-you_are_now_logged_in.wav","device_id":"dev-2001-7f3a"}\n'
    with StubHttp(body=body) as url:
        loaded, fs, cfg = configured(url)
        post(loaded, cfg, "/x", [("a", "1")])
    recorded = json.loads(RECORDED_CURL_OUTPUT)
    output = fs.curl_calls[0].output
    assert isinstance(output, dict)
    assert list(output)[:5] == list(recorded)[:5]
    assert output["exit_code"] == "0" and output["status_code"] == "200"
    assert output["body"] == recorded["body"]
    assert {"key": "Content-Type", "value": "application/json"} in output["headers"]


def test_an_older_mod_curl_without_exit_code_and_with_a_numeric_status_still_works() -> None:
    loaded, fs = make_lib(esl_bridge_secret=SECRET)
    fs.curl = lambda args: json.dumps({"status_code": 200, "body": '{"result":"ok"}',  # type: ignore[method-assign]
                                       "headers": []})
    value, problem = post(loaded, loaded.module.config(), "/x", [("a", "1")])
    assert problem is None and lua_to_python(value) == {"result": "ok"}


def test_connection_refused_is_exit_code_7_and_no_exception(lua_version: str) -> None:
    loaded, fs, cfg = configured(f"http://127.0.0.1:{closed_port()}", lua_version)
    value, problem = post(loaded, cfg, "/freeswitch/hotdesk/login", [("pin", "4321")])
    assert value is None
    assert "exit code 7" in problem
    assert fs.curl_calls[0].output == {"exit_code": "7", "status_code": "0", "headers": []}
    assert "4321" not in problem


def test_a_silent_server_times_out_within_the_configured_timeout() -> None:
    with SilentServer() as url:
        loaded, fs, cfg = configured(url, esl_bridge_timeout="1", esl_bridge_connect_timeout="1")
        started = time.monotonic()
        value, problem = post(loaded, cfg, "/freeswitch/presence", [("number", "1")])
        elapsed = time.monotonic() - started
    assert value is None
    assert "exit code 28" in problem
    assert elapsed < 3
    assert fs.curl_calls[0].options == {"connect-timeout": "1", "timeout": "1"}


@pytest.mark.parametrize(("status", "body", "reason"), [
    ("403 Forbidden", b'{"result":"error"}', "HTTP 403"),
    ("500 Internal Server Error", b"oops", "HTTP 500"),
    ("404 Not Found", b"not found\n", "HTTP 404"),
    ("200 OK", b"", "empty body"),
    ("200 OK", b"<html>not json</html>", "not a JSON object"),
    ("200 OK", b'"a string"', "not a JSON object"),
    ("200 OK", b'{"result": "ok"', "not a JSON object"),
])
def test_answers_that_are_not_a_200_json_object_are_failures(
        status: str, body: bytes, reason: str, lua_version: str) -> None:
    with StubHttp(status=status, body=body) as url:
        loaded, _, cfg = configured(url, lua_version)
        value, problem = post(loaded, cfg, "/freeswitch/hotdesk/login", [("pin", "4321")])
    assert value is None
    assert reason in problem
    assert "4321" not in problem


def test_mod_curl_missing_or_failing_is_a_failure_not_a_crash() -> None:
    loaded, fs = make_lib(esl_bridge_secret=SECRET)
    fs.curl = lambda args: "-ERR no such command\n"  # type: ignore[method-assign]
    value, problem = post(loaded, loaded.module.config(), "/x", [("a", "1")])
    assert value is None and "mod_curl" in problem
    fs.curl = lambda args: ""  # type: ignore[method-assign]
    value, problem = post(loaded, loaded.module.config(), "/x", [("a", "1")])
    assert value is None and "mod_curl" in problem


# --- prompts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("prompt", "played"), [
    ("ivr/ivr-you_are_now_logged_in.wav", True),
    ("ivr/ivr-that_was_an_invalid_entry.wav", True),
    ("", False),
    ("../../etc/passwd", False),
    ("/etc/passwd", False),
    ("ivr/../../x.wav", False),
    ("${system(id)}", False),
    ("tone_stream://%(100,0,400)", False),
    ("say:hello world", False),
    ("a" * 300, False),
])
def test_only_plain_sound_paths_from_esl_bridge_are_played(prompt: str, played: bool) -> None:
    loaded, _ = make_lib()
    assert (loaded.module.safe_prompt(prompt) == prompt) is played


def test_the_constants_above_are_the_recording() -> None:
    recorded = (ROOT / "tests" / "data" / "xml_curl" / "lua_curl_json_output.txt").read_text()
    lines = recorded.splitlines()
    assert lines[0].endswith(" post " + RECORDED_POST_ARGUMENT)
    assert lines[1] == RECORDED_CURL_OUTPUT
    sent = (ROOT / "tests" / "data" / "xml_curl"
            / "38_k_hotdesk_lua__POST_freeswitch_hotdesk_login.txt").read_bytes()
    assert sent.endswith(b"\r\n\r\n" + RECORDED_BODY_SENT) or sent.endswith(b"\n\n" + RECORDED_BODY_SENT)
