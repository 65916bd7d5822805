"""Run the FreeSWITCH Lua scripts of `freeswitch-conf/scripts/` under a real Lua interpreter.

The scripts run in lupa (Lua 5.1 to 5.4) with stand-ins for what mod_lua gives them:

- `session` (`Session`): channel variables, answer/ready/hangup, `playAndGetDigits` fed from a
  list of what the caller keys in, `streamFile`, `execute` (export/set), recording everything.
- `freeswitch` (`FreeSwitch`): `getGlobalVariable`, `consoleLog`, `API():execute("curl", args)`
  and, optionally, `JSON()`. `curl` parses its argument string the way mod_curl does (split on
  spaces, `post` data URL-decoded once), really sends the request over HTTP (to the running
  esl-bridge in the tests) and returns what mod_curl returns to Lua: the JSON document recorded
  in `../shared/freeswitch/xml_curl/lua_curl_json_output.txt` (`exit_code` and `status_code`
  as strings, no `body` when it is empty, exit code 7 for a refused connection, 28 on timeout).
- `argv`: `argv[0]` the script name, `argv[1..]` its arguments, as mod_lua sets it.

The stand-ins are strict where FreeSWITCH would silently misbehave: a curl argument mod_curl
would not understand, a quote or doubled space in the arguments, a method called with `.`
instead of `:`, a dialplan application the stand-in does not know: each raises `HarnessError`,
which fails the test.

`Dialplan` reads the shipped dialplan XML and hunts a destination number like
mod_dialplan_xml (conditions, `$1` captures, `continue`, `inline`), so a test can "dial" `*11`
and have the actions run, the `lua` ones through `run_script`.
"""
from __future__ import annotations

import glob
import json
import re
import socket
import xml.etree.ElementTree as ElementTree
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import gevent
import requests
from gevent.pywsgi import WSGIServer
from gevent.server import StreamServer

ROOT = Path(__file__).resolve().parent.parent
FREESWITCH_CONF = ROOT / "freeswitch-conf"
SCRIPTS_DIR = FREESWITCH_CONF / "scripts"
CONF_DIR = FREESWITCH_CONF / "conf"

LUA_VERSIONS = ("lua51", "lua52", "lua53", "lua54")

# A caller hanging up during a prompt, as an entry of Session(digits=[...]).
HANGUP = "<hangup>"

# The curl options of mod_curl 1.10 that take a value, and those that do not.
CURL_VALUE_OPTIONS = {"content-type", "connect-timeout", "timeout", "append_headers", "proxy"}
CURL_FLAGS = {"headers", "json", "get", "head", "delete", "insecure", "secure"}
CURL_METHODS_WITH_DATA = {"post", "put"}
# mod_curl keeps its arguments in a fixed array; a command with more would be cut.
CURL_MAX_ARGUMENTS = 10


class HarnessError(AssertionError):
    """The script used FreeSWITCH's API in a way the real one would not accept."""


def switch_url_decode(text: str) -> bytes:
    """FreeSWITCH's switch_url_decode: each %XX becomes a byte, '+' stays, a NUL ends the C string."""
    raw = text.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25 and i + 2 < len(raw) and re.fullmatch(rb"[0-9A-Fa-f]{2}", raw[i + 1:i + 3]):
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return bytes(out).split(b"\0", 1)[0]


# ---------------------------------------------------------------------------------------------
# freeswitch.*
# ---------------------------------------------------------------------------------------------


@dataclass
class CurlCall:
    """One `api:execute("curl", args)` of a script, as mod_curl would have run it."""

    args: str
    url: str
    method: str
    options: dict[str, str]
    headers: list[tuple[str, str]]
    body: bytes | None
    output: dict[str, Any] | str = ""

    @property
    def form(self) -> dict[str, list[str]]:
        """The POST body as the server parses it."""
        return parse_qs((self.body or b"").decode("utf-8"), keep_blank_values=True)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class FreeSwitch:
    """The `freeswitch` module of mod_lua, as far as the scripts use it."""

    def __init__(self, global_vars: dict[str, str] | None = None, *, json_class: bool = False,
                 http_timeout_cap: float | None = None) -> None:
        self.global_vars: dict[str, str] = {"script_dir": str(SCRIPTS_DIR)}
        self.global_vars.update(global_vars or {})
        self.json_class = json_class
        self.http_timeout_cap = http_timeout_cap
        self.logs: list[tuple[str, str]] = []
        self.api_calls: list[tuple[str, str]] = []
        self.curl_calls: list[CurlCall] = []
        self.http = requests.Session()

    # -- what Lua calls -----------------------------------------------------------------------
    def get_global(self, name: str) -> str | None:
        return self.global_vars.get(name)

    def console_log(self, level: str, message: str) -> None:
        self.logs.append((str(level), str(message)))

    def api(self, command: str, args: str | None) -> str:
        if not isinstance(command, str):
            raise HarnessError(f"API execute: command must be a string, got {command!r}")
        self.api_calls.append((command, args or ""))
        if command == "curl":
            return self.curl(args or "")
        raise HarnessError(f"API command {command!r} is not part of this stand-in")

    # -- mod_curl -----------------------------------------------------------------------------
    def curl(self, args: str) -> str:
        """mod_curl's `curl` API: parse like it does, send, answer like it does."""
        if any(c in args for c in "'\"\\\t\r\n") or "  " in args or args != args.strip():
            raise HarnessError(f"mod_curl would split or mangle these arguments: {args!r}")
        tokens = args.split(" ")
        if len(tokens) > CURL_MAX_ARGUMENTS:
            raise HarnessError(f"{len(tokens)} curl arguments; mod_curl keeps {CURL_MAX_ARGUMENTS}")
        url, method, body = tokens[0], "get", None
        options: dict[str, str] = {}
        headers: list[tuple[str, str]] = []
        do_json = False
        i = 1
        while i < len(tokens):
            token = tokens[i].lower()
            if token in CURL_VALUE_OPTIONS:
                if i + 1 >= len(tokens):
                    raise HarnessError(f"curl option {token} without a value")
                value = tokens[i + 1]
                if token == "append_headers":
                    name, sep, header_value = value.partition(":")
                    if not sep or not name:
                        raise HarnessError(f"append_headers wants Name:value, got {value!r}")
                    headers.append((name, header_value.lstrip()))
                else:
                    options[token] = value
                i += 2
            elif token in CURL_FLAGS:
                if token == "json":
                    do_json = True
                elif token in ("get", "head", "delete"):
                    method = token
                i += 1
            elif token in CURL_METHODS_WITH_DATA:
                method = token
                body = switch_url_decode(tokens[i + 1]) if i + 1 < len(tokens) else b""
                i += 2
            else:
                raise HarnessError(f"mod_curl does not know the argument {tokens[i]!r}")
        for name in ("connect-timeout", "timeout"):
            if name in options and not options[name].isdigit():
                raise HarnessError(f"curl {name} must be whole seconds, got {options[name]!r}")
        call = CurlCall(args=args, url=url, method=method, options=options, headers=headers,
                        body=body)
        self.curl_calls.append(call)
        outcome = self._perform(call)
        call.output = outcome
        if do_json:
            return json.dumps(outcome, separators=(",", ":"))
        return str(outcome.get("body", ""))

    def _perform(self, call: CurlCall) -> dict[str, Any]:
        send = {"User-Agent": "freeswitch-curl/1.0", "Accept": "*/*"}
        if call.body is not None:
            send["Content-Type"] = call.options.get("content-type",
                                                    "application/x-www-form-urlencoded")
        for name, value in call.headers:
            send[name] = value
        connect = float(call.options.get("connect-timeout", 300))
        total = float(call.options.get("timeout", 300))
        if self.http_timeout_cap is not None:
            connect, total = min(connect, self.http_timeout_cap), min(total, self.http_timeout_cap)
        try:
            response = self.http.request(call.method.upper(), call.url, data=call.body,
                                         headers=send, timeout=(connect, total),
                                         allow_redirects=True)
        except (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout):
            return {"exit_code": "28", "status_code": "0", "headers": []}
        except requests.exceptions.ConnectionError:
            return {"exit_code": "7", "status_code": "0", "headers": []}
        outcome: dict[str, Any] = {"exit_code": "0", "status_code": str(response.status_code)}
        if response.content:
            outcome["body"] = response.content.decode("utf-8", "replace")
        outcome["version"] = "HTTP/1.1" if response.raw.version == 11 else "HTTP/1.0"
        outcome["phrase"] = response.reason
        outcome["headers"] = [{"key": k, "value": v} for k, v in response.raw.headers.items()]
        return outcome

    # -- helpers for tests --------------------------------------------------------------------
    def log_text(self) -> str:
        return "".join(message for _level, message in self.logs)


# ---------------------------------------------------------------------------------------------
# session:*
# ---------------------------------------------------------------------------------------------


@dataclass
class Prompt:
    """One playAndGetDigits call."""

    file: str
    invalid_file: str
    regex: str | None
    var_name: str | None
    entries: list[str]
    result: str


class Session:
    """A FreeSWITCH session (`session` in Lua) on a call from a registered phone."""

    METHODS = ("answer", "answered", "ready", "hangup", "getVariable", "setVariable",
               "playAndGetDigits", "streamFile", "sleep", "execute", "get_uuid")

    def __init__(self, variables: dict[str, str] | None = None,
                 digits: Iterable[str] = ()) -> None:
        self.variables: dict[str, str] = dict(variables or {})
        self.digits: deque[str] = deque(digits)
        self.answered_ = False
        self.hangup_cause: str | None = None
        self.played: list[str] = []
        self.prompts: list[Prompt] = []
        self.executed: list[tuple[str, str]] = []
        self.exported: dict[str, str] = {}
        self.bridges: list[dict[str, Any]] = []
        self.slept_ms = 0

    def call(self, name: str, *args: Any) -> Any:
        if name not in self.METHODS:
            raise HarnessError(f"session:{name} is not part of this stand-in")
        return getattr(self, "_" + name)(*args)

    def _answer(self) -> None:
        if self.hangup_cause is None:
            self.answered_ = True

    def _answered(self) -> bool:
        return self.answered_

    def _ready(self) -> bool:
        return self.hangup_cause is None

    def _hangup(self, cause: str | None = None) -> None:
        if self.hangup_cause is None:
            self.hangup_cause = cause or "NORMAL_CLEARING"

    def _getVariable(self, name: str) -> str | None:  # noqa: N802 - FreeSWITCH's name
        if not isinstance(name, str):
            raise HarnessError(f"getVariable wants a name, got {name!r}")
        return self.variables.get(name)

    def _setVariable(self, name: str, value: Any = None) -> None:  # noqa: N802
        if not isinstance(name, str) or not name:
            raise HarnessError(f"setVariable wants a name, got {name!r}")
        if value is None:
            self.variables.pop(name, None)
        else:
            self.variables[name] = str(value)

    def _get_uuid(self) -> str | None:
        return self.variables.get("uuid")

    def _streamFile(self, path: str, sample_count: int = 0) -> None:  # noqa: N802
        if not isinstance(path, str) or not path:
            raise HarnessError(f"streamFile wants a file, got {path!r}")
        if self.hangup_cause is None:
            self.played.append(path)

    def _sleep(self, ms: int, sync: int = 0) -> None:
        self.slept_ms += int(ms)

    def _playAndGetDigits(self, min_digits: int, max_digits: int, max_tries: int, timeout: int,  # noqa: N802
                          terminators: str, file: str, invalid_file: str,
                          regex: str | None = None, var_name: str | None = None,
                          digit_timeout: int | None = None,
                          transfer_on_failure: str | None = None) -> str:
        for name, value in (("min_digits", min_digits), ("max_digits", max_digits),
                            ("max_tries", max_tries), ("timeout", timeout)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise HarnessError(f"playAndGetDigits {name} must be an integer, got {value!r}")
        if not isinstance(terminators, str) or not isinstance(file, str) \
                or not isinstance(invalid_file, str):
            raise HarnessError("playAndGetDigits: terminators, file and invalid_file are strings")
        entries: list[str] = []
        result = ""
        for _ in range(max_tries):
            if self.hangup_cause is not None:
                break
            self.played.append(file)
            entry = self.digits.popleft() if self.digits else ""
            entries.append(entry)
            if entry == HANGUP:
                self._hangup("NORMAL_CLEARING")
                break
            typed = entry
            for i, c in enumerate(entry):
                if c in terminators:
                    typed = entry[:i]
                    break
            typed = typed[:max_digits]
            if len(typed) >= max(min_digits, 1) and (not regex or re.search(regex, typed)):
                result = typed
                break
            if invalid_file:
                self.played.append(invalid_file)
        if result and var_name:
            self.variables[var_name] = result
        self.prompts.append(Prompt(file, invalid_file, regex, var_name, entries, result))
        return result

    def _execute(self, app: str, data: str | None = None) -> None:
        if not isinstance(app, str):
            raise HarnessError(f"session:execute wants an application name, got {app!r}")
        data = "" if data is None else str(data)
        self.executed.append((app, data))
        if app == "export":
            local = True
            if data.startswith("nolocal:"):
                local, data = False, data[len("nolocal:"):]
            name, sep, value = data.partition("=")
            if not sep or not name:
                raise HarnessError(f"export wants name=value, got {data!r}")
            self.exported[name] = value
            if local:
                self.variables[name] = value
        elif app == "set":
            name, sep, value = data.partition("=")
            if not sep or not name:
                raise HarnessError(f"set wants name=value, got {data!r}")
            self._setVariable(name, value)
        else:
            raise HarnessError(f"application {app!r} is not part of this stand-in")


# ---------------------------------------------------------------------------------------------
# Running a script
# ---------------------------------------------------------------------------------------------

_PRELUDE = r"""
return function(py, script_path, args)
  -- session: a userdata in mod_lua, whose methods must be called with ':'
  session = {}
  for _, name in ipairs(py.session_methods) do
    session[name] = function(self, ...)
      if self ~= session then
        error("session." .. name .. " called without ':'", 2)
      end
      return py.session(name, ...)
    end
  end

  freeswitch = {}
  function freeswitch.consoleLog(level, message)
    if type(level) ~= "string" or type(message) ~= "string" then
      error("freeswitch.consoleLog(level, message) wants two strings", 2)
    end
    py.log(level, message)
  end
  function freeswitch.getGlobalVariable(name)
    return py.global(name)
  end
  function freeswitch.API()
    local api = {}
    function api.execute(self, command, arguments)
      if self ~= api then
        error("api.execute called without ':'", 2)
      end
      return py.api(command, arguments)
    end
    return api
  end
  if py.json_class then
    function freeswitch.JSON()
      local json = {}
      function json.decode(self, text)
        if self ~= json then
          error("json.decode called without ':'", 2)
        end
        return py.json_decode(text)
      end
      return json
    end
  end

  argv = args
  return dofile(script_path)
end
"""


def lua_runtime(lua_version: str = "lua54") -> Any:
    """A Lua runtime of that version without access to Python."""
    import importlib

    module = importlib.import_module(f"lupa.{lua_version}")
    return module.LuaRuntime(register_eval=False, register_builtins=False, unpack_returned_tuples=True)


def run_script(script: str, args: Iterable[str], session: Session, fs: FreeSwitch,
               lua_version: str = "lua54", lua: Any = None) -> Any:
    """Run freeswitch-conf/scripts/<script> as mod_lua's `lua` application would.

    Returns what the chunk returns (the module table, for esl_bridge_lib.lua). A Lua error
    that escapes the script is raised as `lupa.LuaError`, and a `HarnessError` raised inside a
    stand-in is raised again after the script even if the script caught it with pcall: either
    way the test fails.
    """
    path = SCRIPTS_DIR / script
    if not path.is_file():
        raise HarnessError(f"no script {script}")
    lua = lua if lua is not None else lua_runtime(lua_version)
    harness_errors: list[HarnessError] = []

    def guarded(function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            try:
                return function(*args)
            except HarnessError as error:
                harness_errors.append(error)
                raise
        return call

    def json_decode(text: Any) -> Any:
        if not isinstance(text, str):
            raise HarnessError(f"JSON:decode wants a string, got {text!r}")
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return lua.table_from(value, recursive=True) if isinstance(value, dict | list) else value

    py = lua.table_from({
        "session_methods": lua.table_from(list(Session.METHODS)),
        "session": guarded(session.call),
        "log": guarded(fs.console_log),
        "global": guarded(fs.get_global),
        "api": guarded(fs.api),
        "json_class": fs.json_class,
        "json_decode": guarded(json_decode),
    })
    argv = lua.table_from({0: script, **{i + 1: a for i, a in enumerate(args)}})
    result = lua.execute(_PRELUDE)(py, str(path), argv)
    if harness_errors:
        raise harness_errors[0]
    return result


def lua_to_python(value: Any) -> Any:
    """A Lua value as plain Python: tables with keys 1..n become lists, other tables dicts."""
    if hasattr(value, "items") and callable(value.items):
        items = {k: lua_to_python(v) for k, v in value.items()}
        if items and all(isinstance(k, int) for k in items) and \
                sorted(items) == list(range(1, len(items) + 1)):
            return [items[i] for i in range(1, len(items) + 1)]
        return items
    return value


@dataclass
class LoadedLib:
    """esl_bridge_lib.lua loaded in a runtime of its own."""

    module: Any
    lua: Any

    def pairs(self, pairs: Iterable[tuple[str, str]]) -> Any:
        """A Lua list of {name, value} pairs, as the scripts pass to post()."""
        return self.lua.table_from([self.lua.table_from(list(p)) for p in pairs])


def load_lib(fs: FreeSwitch, lua_version: str = "lua54") -> LoadedLib:
    """The esl_bridge_lib module table, in a runtime with the `freeswitch` stand-in."""
    lua = lua_runtime(lua_version)
    return LoadedLib(run_script("esl_bridge_lib.lua", [], Session(), fs, lua=lua), lua)


# ---------------------------------------------------------------------------------------------
# The dialplan
# ---------------------------------------------------------------------------------------------


@dataclass
class Extension:
    name: str
    continue_: bool
    conditions: list[ElementTree.Element]


@dataclass
class Dialplan:
    """The shipped `default` context, hunted like mod_dialplan_xml does."""

    apis: dict[str, Callable[[str], str]] = field(default_factory=dict)
    extensions: list[Extension] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.extensions:
            self.extensions = load_context(CONF_DIR / "dialplan" / "default.xml", "default")

    def expand(self, text: str, session: Session) -> str:
        """${var} and ${api(args)} expansion, innermost first."""
        for _ in range(20):
            new = re.sub(r"\$\{([A-Za-z0-9_]+)\}",
                         lambda m: session.variables.get(m.group(1), ""), text)
            new = re.sub(r"\$\{([a-z_]+)\(([^(){}]*)\)\}", lambda m: self._api(m, session), new)
            if new == text:
                return new
            text = new
        raise HarnessError(f"cannot expand {text!r}")

    def _api(self, match: re.Match[str], session: Session) -> str:
        name, args = match.group(1), match.group(2)
        if name not in self.apis:
            raise HarnessError(f"dialplan calls the API {name}() that the test did not provide")
        return self.apis[name](args)

    def hunt(self, session: Session) -> list[tuple[str, str]]:
        """The actions the call would execute, in order (inline ones already done).

        Mirrors mod_dialplan_xml's parse_exten: conditions are tried in order, the actions of
        each condition that matches are added (inline ones run at once), the first one that
        does not match ends the extension and makes it "not proceed"; an extension that
        proceeds ends the hunt unless it has continue="true".
        """
        actions: list[tuple[str, str]] = []
        for extension in self.extensions:
            proceed = False
            for condition in extension.conditions:
                field_name = condition.get("field")
                expression = condition.get("expression")
                if field_name is None or expression is None or condition.find("anti-action") \
                        is not None or condition.get("break") is not None:
                    raise HarnessError(f"{extension.name}: only field/expression conditions "
                                       "without anti-actions or break are modelled")
                value = (self.expand(field_name, session) if "$" in field_name
                         else session.variables.get(field_name, ""))
                m = re.search(expression, value)
                if not m:
                    proceed = False
                    break
                proceed = True
                captures = tuple(g or "" for g in m.groups())
                for action in condition.findall("action"):
                    app = action.get("application", "")
                    data = re.sub(r"\$(\d)", lambda m, c=captures: _capture(c, int(m.group(1))),
                                  action.get("data", ""))
                    if action.get("inline") == "true":
                        self.run_action(app, data, session, None)
                    else:
                        actions.append((app, data))
            if proceed and not extension.continue_:
                break
        return actions

    def run_action(self, app: str, data: str, session: Session, fs: FreeSwitch | None,
                   lua_version: str = "lua54") -> None:
        data = self.expand(data, session)
        if app == "answer":
            session.call("answer")
        elif app == "hangup":
            session.call("hangup", data or None)
        elif app in ("set", "export"):
            session.call("execute", app, data)
        elif app == "lua":
            if fs is None:
                raise HarnessError("lua cannot run inline")
            script, *args = data.split()
            run_script(script, args, session, fs, lua_version)
        elif app == "bridge":
            session.bridges.append({"target": data, "b_leg": dict(session.exported)})
        else:
            raise HarnessError(f"dialplan application {app!r} is not part of this stand-in")

    def dial(self, destination: str, session: Session, fs: FreeSwitch,
             lua_version: str = "lua54") -> list[tuple[str, str]]:
        """Route a call to `destination` and run the actions; returns them."""
        session.variables["destination_number"] = destination
        actions = self.hunt(session)
        for app, data in actions:
            if session.hangup_cause is not None:
                break
            self.run_action(app, data, session, fs, lua_version)
        return actions


def _capture(captures: tuple[str, ...], n: int) -> str:
    return captures[n - 1] if 0 < n <= len(captures) else ""


def parse_extensions(xml: str) -> list[Extension]:
    """Extensions from an XML snippet (a site's own route, in tests)."""
    root = ElementTree.fromstring(f"<include>{xml}</include>")
    return [Extension(e.get("name", ""), e.get("continue") == "true", e.findall("condition"))
            for e in root.iter("extension")]


def load_context(path: Path, name: str) -> list[Extension]:
    """The extensions of context `name`, after resolving X-PRE-PROCESS includes."""
    root = ElementTree.fromstring(preprocess(path))
    for context in root.iter("context"):
        if context.get("name") == name:
            return [Extension(e.get("name", ""), e.get("continue") == "true",
                              e.findall("condition")) for e in context.iter("extension")]
    raise HarnessError(f"no context {name} in {path}")


def preprocess(path: Path, variables: dict[str, str] | None = None) -> str:
    """The file's text with X-PRE-PROCESS include resolved (relative to its directory, as the
    dialplan's own includes are written) and $${var} replaced from `variables`."""
    text = path.read_text()
    text = re.sub(r"<\?xml[^>]*\?>", "", text)

    def include(m: re.Match[str]) -> str:
        # FreeSWITCH inserts the children of an included file's <include> root.
        parts = []
        for included in sorted(glob.glob(str(path.parent / m.group(1)))):
            root = ElementTree.fromstring(preprocess(Path(included), variables))
            children = list(root) if root.tag == "include" else [root]
            parts.extend(ElementTree.tostring(child, encoding="unicode") for child in children)
        return "\n".join(parts)

    text = re.sub(r'<X-PRE-PROCESS\s+cmd="include"\s+data="([^"]+)"\s*/>', include, text)
    if variables is not None:
        text = re.sub(r"\$\$\{([A-Za-z0-9_]+)\}", lambda m: variables[m.group(1)], text)
    return text


# ---------------------------------------------------------------------------------------------
# Servers that misbehave
# ---------------------------------------------------------------------------------------------


class StubHttp:
    """A tiny HTTP server answering every request with a fixed status and body."""

    def __init__(self, status: str = "200 OK", body: bytes = b"",
                 content_type: str = "application/json") -> None:
        self.status, self.body, self.content_type = status, body, content_type
        self.requests: list[dict[str, Any]] = []
        self.server = WSGIServer(("127.0.0.1", 0), self._app, log=None, error_log=None)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        self.requests.append({"path": environ["PATH_INFO"],
                              "body": environ["wsgi.input"].read(length)})
        start_response(self.status, [("Content-Type", self.content_type)])
        return [self.body]

    def __enter__(self) -> str:
        self.server.start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def __exit__(self, *exc: Any) -> None:
        self.server.stop(timeout=1)


class SilentServer:
    """Accepts connections and never answers: a hung esl-bridge."""

    def __init__(self) -> None:
        self.connections = 0
        self.server = StreamServer(("127.0.0.1", 0), self._handle)

    def _handle(self, sock: socket.socket, _address: Any) -> None:
        self.connections += 1
        gevent.sleep(30)

    def __enter__(self) -> str:
        self.server.start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def __exit__(self, *exc: Any) -> None:
        self.server.stop(timeout=0)


def closed_port() -> int:
    """A local port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
