"""Run the FreeSWITCH Lua scripts of `freeswitch-conf/scripts/` under a real Lua interpreter.

The scripts run in lupa (Lua 5.1 to 5.4) with stand-ins for what mod_lua gives them:

- `session` (`Session`): channel variables, answer/ready/hangup, `playAndGetDigits` fed from a
  list of what the caller keys in, `streamFile`, `execute` (export/set), recording everything.
- `freeswitch` (`FreeSwitch`): `getGlobalVariable`, `consoleLog`, `API():execute("curl", args)`
  and `JSON` (`CJson`). `curl` is mod_curl as the test FreeSWITCH runs it
  (`fake_freeswitch.curl`: arguments split on spaces, `post` data URL-decoded once, a real HTTP
  request, the recorded JSON with codes as strings; exit code 7 for a refused connection, 28 on
  timeout; without `json` the body alone, so nothing when the connection failed, esl3/163-172).
  `freeswitch.JSON` behaves as mod_lua's cJSON bridge was recorded (esl3/190): a table whose
  call gives a userdata with `decode` and `encode`; numbers come back as floats, null leaves the
  key out, an array inside an array is dropped, text that is not JSON gives nil, a bare string or
  number an empty table; `FreeSwitch(json_class=False)` models a mod_lua without it.
- `argv`: as mod_lua builds it from the `lua` application's data (`lua_argv`): `argv[0]` the
  script, then the words after it, a trailing empty one dropped (`login ` gives one argument;
  esl3/192-195).

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

import gevent
from fake_freeswitch import curl
from fake_freeswitch.curl import CurlCall
from gevent.pywsgi import WSGIServer
from gevent.server import StreamServer

ROOT = Path(__file__).resolve().parent.parent
FREESWITCH_CONF = ROOT / "freeswitch-conf"
SCRIPTS_DIR = FREESWITCH_CONF / "scripts"
CONF_DIR = FREESWITCH_CONF / "conf"

LUA_VERSIONS = ("lua51", "lua52", "lua53", "lua54")

# A caller hanging up during a prompt, as an entry of Session(digits=[...]).
HANGUP = "<hangup>"

class HarnessError(AssertionError):
    """The script used FreeSWITCH's API in a way the real one would not accept."""


# ---------------------------------------------------------------------------------------------
# freeswitch.*
# ---------------------------------------------------------------------------------------------


class FreeSwitch:
    """The `freeswitch` module of mod_lua, as far as the scripts use it."""

    def __init__(self, global_vars: dict[str, str] | None = None, *, json_class: bool = True,
                 http_timeout_cap: float | None = None) -> None:
        self.global_vars: dict[str, str] = {"script_dir": str(SCRIPTS_DIR)}
        self.global_vars.update(global_vars or {})
        self.json_class = json_class
        self.http_timeout_cap = http_timeout_cap
        self.logs: list[tuple[str, str]] = []
        self.api_calls: list[tuple[str, str]] = []
        self.curl_calls: list[CurlCall] = []
        self.http = curl.bare_session()

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
        """mod_curl's `curl` API: strict about what mod_curl would mangle, then as it runs."""
        if any(c in args for c in "'\"\\\t\r\n") or "  " in args or args != args.strip():
            raise HarnessError(f"mod_curl would split or mangle these arguments: {args!r}")
        try:
            call = curl.parse(args)
        except ValueError as error:
            raise HarnessError(str(error)) from None
        self.curl_calls.append(call)
        return curl.perform(call, self.http, self.http_timeout_cap)

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
    -- mod_lua's JSON class: a table, called to make the (userdata) object
    freeswitch.JSON = setmetatable({}, { __call = function() return py.json() end })
  end
  stream = py.stream

  argv = args
  return dofile(script_path)
end
"""


def lua_runtime(lua_version: str = "lua54") -> Any:
    """A Lua runtime of that version without access to Python."""
    import importlib

    module = importlib.import_module(f"lupa.{lua_version}")
    return module.LuaRuntime(register_eval=False, register_builtins=False, unpack_returned_tuples=True)


def lua_argv(data: str) -> tuple[str, list[str]]:
    """The script and ``argv[1..]`` mod_lua makes of a ``lua`` application's data
    (``lua_parse_and_execute`` with ``switch_separate_string`` on spaces): the script is what
    comes before the first space; the rest is split on runs of spaces, so a trailing empty
    argument is dropped (``login `` gives ``["login"]``, esl3/194); ``'...'`` groups words and
    a backslash escapes the next character."""
    script, _, rest = data.lstrip(" \r\n").partition(" ")
    args: list[str] = []
    word: list[str] | None = None
    quoted = escaped = False
    for char in rest:
        if word is None:
            if char == " ":
                continue
            word = []
        if escaped:
            word.append({"s": " ", "n": "\n", "r": "\r", "t": "\t"}.get(char, char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "'":
            quoted = not quoted
        elif char == " " and not quoted:
            args.append("".join(word))
            word = None
        else:
            word.append(char)
    if word is not None:
        args.append("".join(word))
    return script, args


class CJson:
    """``freeswitch.JSON()`` of mod_lua (cJSON underneath): ``decode`` and ``encode``, as recorded
    on FreeSWITCH 1.10 (esl3/190) and read in ``freeswitch_lua.cpp``. A userdata to Lua, as
    there; lupa passes ``j:decode(text)`` and ``j.decode(j, text)`` alike, so unlike the session
    stand-in it cannot insist on ``:``."""

    def __init__(self, lua: Any) -> None:
        self.lua = lua

    def decode(self, text: Any) -> Any:
        if not isinstance(text, str):
            raise HarnessError(f"JSON:decode wants a string, got {text!r}")
        try:  # cJSON_Parse: leading blanks skipped, anything after the value ignored
            value, _ = json.JSONDecoder(parse_int=float, parse_constant=_no_constant) \
                .raw_decode(text.lstrip(" \t\r\n"))
        except ValueError:
            return None
        return self._table(value)

    def _table(self, value: Any) -> Any:
        """cJSON2LuaTable: only an object or an array fills the table."""
        table = self.lua.table()
        if isinstance(value, dict):
            for key, item in value.items():
                if item is not None:
                    table[key] = self._item(item)
        elif isinstance(value, list):
            index = 1
            for item in value:
                if item is None or isinstance(item, list):
                    continue  # null, and an array inside an array, are dropped
                table[index] = self._item(item)
                index += 1
        return table

    def _item(self, value: Any) -> Any:
        if isinstance(value, bool | str):
            return value
        if isinstance(value, int | float):
            return float(value)
        return self._table(value)

    def encode(self, table: Any) -> str:
        value = _cjson_value(table)
        return json.dumps({} if value is None else value, ensure_ascii=False,
                          separators=(",", ":"))


def _no_constant(name: str) -> None:
    raise ValueError(name)


_LUA_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?|0[xX][0-9a-fA-F]+)\s*$")


def _cjson_value(value: Any) -> Any:
    """LuaTable2cJSON: the first key decides array (1) or object; a number, or a string Lua
    reads as one, becomes a number; an empty table an object."""
    if not (hasattr(value, "items") and callable(value.items)):
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) or (isinstance(value, str) and _LUA_NUMBER.match(value)):
            number = float(value) if not str(value).strip().lower().startswith(("0x", "-0x")) \
                else float(int(str(value), 16))
            return int(number) if number.is_integer() and abs(number) < 1e15 else number
        return value
    items = list(value.items())
    if not items:
        return None
    as_array = isinstance(items[0][0], int | float) and items[0][0] == 1
    converted = [(key, _cjson_value(item)) for key, item in items]
    if as_array:
        return [{} if item is None else item for _, item in converted]
    return {str(key): {} if item is None else item for key, item in converted}


class Stream:
    """The ``stream`` an ``api lua`` script writes its answer to."""

    def __init__(self) -> None:
        self.data: list[str] = []

    def write(self, text: Any) -> None:
        self.data.append(str(text))

    @property
    def text(self) -> str:
        return "".join(self.data)


def run_script(script: str | Path, args: Iterable[str], session: Session, fs: FreeSwitch,
               lua_version: str = "lua54", lua: Any = None, stream: Stream | None = None) -> Any:
    """Run freeswitch-conf/scripts/<script> (or the file ``script``) as mod_lua would, with
    ``argv[1..]`` = ``args`` (``lua_argv`` makes them from the application's data).

    Returns what the chunk returns (the module table, for esl_bridge_lib.lua). A Lua error
    that escapes the script is raised as `lupa.LuaError`, and a `HarnessError` raised inside a
    stand-in is raised again after the script even if the script caught it with pcall: either
    way the test fails.
    """
    path = script if isinstance(script, Path) else SCRIPTS_DIR / script
    if not path.is_file():
        raise HarnessError(f"no script {script}")
    args = list(args)
    if any(arg == "" for arg in args):
        raise HarnessError(f"mod_lua never passes an empty argument: {args!r} (see lua_argv)")
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

    py = lua.table_from({
        "session_methods": lua.table_from(list(Session.METHODS)),
        "session": guarded(session.call),
        "log": guarded(fs.console_log),
        "global": guarded(fs.get_global),
        "api": guarded(fs.api),
        "json_class": fs.json_class,
        "json": guarded(lambda: CJson(lua)),
        "stream": stream,
    })
    argv = lua.table_from({0: str(script), **{i + 1: a for i, a in enumerate(args)}})
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
            script, args = lua_argv(data)
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
