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

The stand-ins live in `lua_session` (`session`), `lua_json` (`freeswitch.JSON`, `stream`) and
here (`freeswitch`); `lua_dialplan.Dialplan` hunts the shipped dialplan like mod_dialplan_xml
(conditions, `$1` captures, `continue`, `inline`), so a test can "dial" `*11` and have the
actions run, the `lua` ones through `run_script`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fake_freeswitch import curl
from fake_freeswitch.curl import CurlCall
from lua_json import CJson, Stream
from lua_session import HANGUP, HarnessError, Prompt, Session

ROOT = Path(__file__).resolve().parent.parent
FREESWITCH_CONF = ROOT / "freeswitch-conf"
SCRIPTS_DIR = FREESWITCH_CONF / "scripts"
CONF_DIR = FREESWITCH_CONF / "conf"

LUA_VERSIONS = ("lua51", "lua52", "lua53", "lua54")


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


__all__ = ["CONF_DIR", "HANGUP", "LUA_VERSIONS", "ROOT", "SCRIPTS_DIR", "CJson", "CurlCall",
           "FreeSwitch", "HarnessError", "LoadedLib", "Prompt", "Session", "Stream", "load_lib",
           "lua_argv", "lua_runtime", "lua_to_python", "run_script"]
