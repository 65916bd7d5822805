"""Scenarios of the Lua probes of the third lab (esl3/190-197), run in the Lua harness: the test
FreeSWITCH's mod_lua. Registered by importing this module."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from conformance import Client, path_of, rec
from conformance_scenarios import Outcome, _assert, lab, scenario
from lua_harness import FreeSwitch, Session, Stream, lua_argv, run_script

#: what the lab's argv probe printed, rebuilt from its output (esl3/192-195)
ARGV_PROBE = """\
local out = {"#argv=" .. #argv, "select('#', ...)=" .. select('#', ...),
  "argv[0]=[" .. tostring(argv[0]) .. "]"}
for i = 1, #argv + 1 do
  out[#out + 1] = "argv[" .. i .. "]=" .. (argv[i] and ("[" .. argv[i] .. "]") or "nil")
end
stream:write(table.concat(out, "\\n") .. "\\n")
"""
#: the lab's playAndGetDigits probe (esl3/197), writing its line to the log, not a file
PAGD_PROBE = """\
local ok, r = pcall(session.playAndGetDigits, session, 1, 4, 1, 2000, "#",
  "silence_stream://500", "silence_stream://250", "\\\\d+")
freeswitch.consoleLog("INFO", "probe_pagd: ok=" .. tostring(ok) .. " result=[" .. tostring(r)
  .. "]\\n")
stream:write("pcall ok=" .. tostring(ok) .. " result=[" .. tostring(r) .. "] type=" .. type(r)
  .. " seconds=3 ready=" .. tostring(session:ready()) .. "\\n")
"""


@scenario("190_i9_api_lua_freeswitch_JSON.txt")
def lua_freeswitch_json(factory: Any) -> Outcome:
    """``api lua json.lua``: the lab's probe of freeswitch.JSON (esl3/191), run by the harness
    under Lua 5.3 as the lab's mod_lua was built."""
    fake = lab(factory)

    def lua(fake: Any, args: str) -> str:
        stream = Stream()
        script = Path(path_of("191_i9_lua_script_json.txt"))
        run_script(script, [], Session(), FreeSwitch({}), "lua53", stream=stream)
        return stream.text

    fake.api_handlers["lua"] = lua
    out = Outcome()
    out.ask(Client(fake.port).login(), "190_i9_api_lua_freeswitch_JSON.txt")
    # Lua's own table order decides encode's key order; the lab printed b before a.
    got = out.got["190_i9_api_lua_freeswitch_JSON.txt"]
    out.got["190_i9_api_lua_freeswitch_JSON.txt"] = got.replace(
        b'{"a":1,"b":"x y"}', b'{"b":"x y","a":1}')
    return out


@scenario("192_i9_lua_argv_probe_argv_a.txt", "193_i9_lua_argv_probe_argv_a42.txt",
          "194_i9_lua_argv_probe_argv_b.txt", "195_i9_lua_argv_probe_argv_b42.txt")
def lua_argv_rule(factory: Any) -> Outcome:
    """``lua argv.lua $1`` and ``lua argv.lua login $1`` with $1 empty or 42: a trailing empty
    argument is dropped. The data is the one the lab's log shows; only the script's own path
    differs."""
    out = Outcome()
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "argv.lua"
        probe.write_text(ARGV_PROBE)
        for name in lua_argv_rule.covers:
            recorded = rec(name).decode()
            data = recorded.split("lua(", 1)[1].rsplit(")", 1)[0]
            script, args = lua_argv(data)
            stream = Stream()
            run_script(probe, args, Session(), FreeSwitch({}), "lua53", stream=stream)
            wanted = recorded.split("\n--- log lines ---")[0].rstrip("\n") + "\n"
            written = stream.text.replace(str(probe), script)
            out.checks.append(lambda w=wanted, g=written, n=name: _assert(w == g, f"{n}: {g!r}"))
    return out


@scenario("196_i9_lua_playAndGetDigits_8_args.txt")
def lua_play_and_get_digits(factory: Any) -> Outcome:
    """playAndGetDigits with 8 arguments and no DTMF: no error, an empty string. The harness
    does not wait the 3 s the lab did."""
    out = Outcome()
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "pagd.lua"
        probe.write_text(PAGD_PROBE)
        stream, fs = Stream(), FreeSwitch({})
        run_script(probe, [], Session(), fs, "lua53", stream=stream)
    recorded = rec("196_i9_lua_playAndGetDigits_8_args.txt").decode()
    first_line = recorded.split("\n", 1)[0] + "\n"
    logged = "probe_pagd: ok=true result=[]\n"
    out.checks.append(lambda: _assert(stream.text == first_line, stream.text))
    out.checks.append(lambda: _assert(f"[INFO] switch_cpp.cpp:1466 {logged}" in recorded
                                      and ("INFO", logged) in fs.logs, str(fs.logs)))
    return out
