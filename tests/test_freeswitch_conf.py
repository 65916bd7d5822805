"""The shipped FreeSWITCH configuration (freeswitch-conf/): it parses, says what it must, routes
the feature codes to the scripts, and the scripts compile on every Lua mod_lua may use."""
from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from lua_dialplan import Dialplan, preprocess
from lua_harness import (
    CONF_DIR,
    FREESWITCH_CONF,
    LUA_VERSIONS,
    ROOT,
    SCRIPTS_DIR,
    FreeSwitch,
    Session,
    load_lib,
    lua_runtime,
)

XML_FILES = sorted(FREESWITCH_CONF.rglob("*.xml"))
LUA_SCRIPTS = sorted(SCRIPTS_DIR.glob("*.lua"))

# Global variables FreeSWITCH's core defines before any configuration file is read, which the
# shipped files may use as $${name}.
CORE_VARIABLES = {
    "base_dir": "/usr/local/freeswitch", "conf_dir": "/etc/freeswitch",
    "script_dir": "/usr/share/freeswitch/scripts", "sounds_dir": "/usr/share/freeswitch/sounds",
    "domain": "192.0.2.2", "local_ip_v4": "192.0.2.2", "hostname": "vm",
}


def pre_process_sets(path: Path) -> dict[str, str]:
    """name -> value of every X-PRE-PROCESS set in the file."""
    root = ElementTree.fromstring(path.read_text())
    found = {}
    for element in root.iter("X-PRE-PROCESS"):
        if element.get("cmd") == "set":
            name, _, value = element.get("data", "").partition("=")
            found[name] = value
    return found


def shipped_variables() -> dict[str, str]:
    return {**CORE_VARIABLES, **pre_process_sets(CONF_DIR / "esl_bridge.xml")}


def params(element: ElementTree.Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in element.iter("param")}


def test_the_layout_mirrors_a_freeswitch_install() -> None:
    shipped = {str(p.relative_to(FREESWITCH_CONF)) for p in FREESWITCH_CONF.rglob("*") if p.is_file()}
    assert shipped >= {
        "README.md",
        "conf/esl_bridge.xml",
        "conf/vars_fragment.xml",
        "conf/autoload_configs/event_socket.conf.xml",
        "conf/autoload_configs/xml_curl.conf.xml",
        "conf/autoload_configs/lua.conf.xml",
        "conf/dialplan/default.xml",
        "conf/dialplan/default/00_esl_bridge.xml",
        "conf/directory/default.xml",
        "scripts/esl_bridge_lib.lua",
        "scripts/esl_bridge_hotdesk.lua",
        "scripts/esl_bridge_presence.lua",
    }


@pytest.mark.parametrize("path", XML_FILES, ids=lambda p: str(p.relative_to(FREESWITCH_CONF)))
def test_every_xml_file_parses_after_pre_processing(path: Path) -> None:
    raw = path.read_text()
    used = set(re.findall(r"\$\$\{([A-Za-z0-9_]+)\}", raw))
    unknown = used - set(shipped_variables())
    assert not unknown, f"$${{...}} that nothing defines: {unknown}"
    # As FreeSWITCH reads it: includes resolved, $${var} replaced, then parsed.
    ElementTree.fromstring(preprocess(path, shipped_variables()))
    # And as an XML file on its own (editors, linters).
    ElementTree.parse(path)


@pytest.mark.parametrize("path", XML_FILES, ids=lambda p: str(p.relative_to(FREESWITCH_CONF)))
def test_no_pre_processor_directive_hides_in_a_comment(path: Path) -> None:
    # FreeSWITCH's pre-processor is line based and runs X-PRE-PROCESS even inside comments.
    for comment in re.findall(r"<!--(.*?)-->", path.read_text(), flags=re.S):
        assert "X-PRE-PROCESS" not in comment


def test_the_settings_file_defines_the_url_and_the_secret_once() -> None:
    sets = pre_process_sets(CONF_DIR / "esl_bridge.xml")
    assert set(sets) == {"esl_bridge_url", "esl_bridge_secret"}
    assert sets["esl_bridge_url"] == "http://127.0.0.1:8000"
    # The shipped secret is the placeholder the scripts refuse to use.
    lib = load_lib(FreeSwitch()).module
    assert sets["esl_bridge_secret"] == lib.PLACEHOLDER_SECRET
    for path in XML_FILES:
        if path.name != "esl_bridge.xml":
            assert not re.search(r'data="esl_bridge_(url|secret)=', path.read_text()), path


def test_the_vars_fragment_includes_the_settings_and_disables_system_commands() -> None:
    root = ElementTree.parse(CONF_DIR / "vars_fragment.xml").getroot()
    directives = [(e.get("cmd"), e.get("data")) for e in root.iter("X-PRE-PROCESS")]
    assert ("include", "esl_bridge.xml") in directives
    assert (CONF_DIR / "esl_bridge.xml").is_file()
    assert ("set", "disable_system_api_commands=true") in directives
    assert ("set", "disable_system_app_commands=true") in directives
    # The include comes first: everything after it may use the settings.
    assert directives[0] == ("include", "esl_bridge.xml")


def test_xml_curl_binds_the_directory_to_esl_bridge_with_credentials_and_a_timeout() -> None:
    root = ElementTree.parse(CONF_DIR / "autoload_configs" / "xml_curl.conf.xml").getroot()
    assert root.get("name") == "xml_curl.conf"
    bindings = root.findall("./bindings/binding")
    assert len(bindings) == 1
    url = [p for p in bindings[0].iter("param") if p.get("name") == "gateway-url"]
    assert len(url) == 1
    assert url[0].get("value") == "$${esl_bridge_url}/freeswitch/directory"
    assert url[0].get("bindings") == "directory"
    values = params(bindings[0])
    assert values["gateway-credentials"] == "freeswitch:$${esl_bridge_secret}"
    assert values["auth-scheme"] == "basic"
    assert 1 <= int(values["timeout"]) <= 10


def test_the_event_socket_listens_on_loopback_with_an_acl_and_no_default_password() -> None:
    root = ElementTree.parse(CONF_DIR / "autoload_configs" / "event_socket.conf.xml").getroot()
    assert root.get("name") == "event_socket.conf"
    values = params(root)
    assert values["listen-ip"] == "127.0.0.1"
    assert values["listen-port"] == "8021"
    assert values["apply-inbound-acl"] == "loopback.auto"
    assert values["password"] not in ("", "ClueCon")
    assert "change" in values["password"].lower()


def test_lua_conf_finds_the_scripts() -> None:
    root = ElementTree.parse(CONF_DIR / "autoload_configs" / "lua.conf.xml").getroot()
    assert root.get("name") == "lua.conf"
    assert params(root)["script-directory"] == "$${script_dir}/?.lua"


def test_the_static_directory_holds_no_user_and_includes_none() -> None:
    text = (CONF_DIR / "directory" / "default.xml").read_text()
    root = ElementTree.fromstring(preprocess(CONF_DIR / "directory" / "default.xml",
                                             shipped_variables()))
    assert root.find(".//domain") is not None
    assert list(root.iter("user")) == []
    assert "X-PRE-PROCESS" not in text  # the stock one includes directory/default/*.xml


# --- the dialplan -----------------------------------------------------------------------------

PHONE = {"sip_auth_username": "2001", "sip_auth_realm": "acme.test", "user_name": "2001",
         "domain_name": "acme.test", "presence_id": "alice-static@acme.test",
         "uuid": "36376d7e-038c-44a3-9b48-5f53ff7cadac"}


def hunt(destination: str, variables: dict[str, str] | None = None,
         devices: tuple[str, ...] = ("2001", "2002")) -> tuple[list[tuple[str, str]], list[str]]:
    """The actions of a call from a phone to `destination`, and the user_exists lookups made."""
    lookups: list[str] = []

    def user_exists(args: str) -> str:
        lookups.append(args)
        key, user, domain = (args.split(" ") + ["", "", ""])[:3]
        return "true" if key == "id" and user in devices and domain == "acme.test" else "false"

    session = Session(dict(PHONE if variables is None else variables))
    session.variables["destination_number"] = destination
    return Dialplan(apis={"user_exists": user_exists}).hunt(session), lookups


def lua_calls(actions: list[tuple[str, str]]) -> list[list[str]]:
    return [data.split() for app, data in actions if app == "lua"]


@pytest.mark.parametrize(("dialled", "expected"), [
    ("*11", ["esl_bridge_hotdesk.lua", "login"]),
    ("*111234", ["esl_bridge_hotdesk.lua", "login", "1234"]),
    ("*12", ["esl_bridge_hotdesk.lua", "logout"]),
    ("*125", ["esl_bridge_hotdesk.lua", "logout", "5"]),
    ("*13", ["esl_bridge_hotdesk.lua", "toggle"]),
    ("*13123456789012345", ["esl_bridge_hotdesk.lua", "toggle", "123456789012345"]),
])
def test_feature_codes_run_the_hotdesk_script(dialled: str, expected: list[str]) -> None:
    actions, lookups = hunt(dialled)
    assert actions[0] == ("answer", "")
    assert lua_calls(actions) == [expected]
    assert actions[-1] == ("hangup", "")
    assert lookups == []


@pytest.mark.parametrize("dialled", ["*14", "*11a", "*1312345678901234567", "*1", "11"])
def test_other_codes_are_not_hotdesk(dialled: str) -> None:
    actions, _ = hunt(dialled)
    assert not any(call[0] == "esl_bridge_hotdesk.lua" for call in lua_calls(actions))


def test_a_call_to_a_device_bridges_to_its_directory_user_without_a_lookup_script() -> None:
    actions, lookups = hunt("2002")
    assert lookups == ["id 2002 acme.test"]
    assert ("bridge", "user/${destination_number}@${domain_name}") in actions
    assert lua_calls(actions) == []


def test_a_call_to_another_number_looks_up_the_forward_presence_and_continues() -> None:
    actions, lookups = hunt("+15551234567")
    assert lookups == ["id +15551234567 acme.test"]
    assert lua_calls(actions) == [["esl_bridge_presence.lua", "number"]]
    assert not any(app == "bridge" for app, _ in actions)  # the site's outbound route does it


@pytest.mark.parametrize("dialled", ["2001,sofia/gateway/x/900", "2001|x", "{a=b}2001",
                                     "x" * 40, "20 01"])
def test_odd_destinations_never_reach_a_bridge_or_a_lookup(dialled: str) -> None:
    actions, lookups = hunt(dialled, devices=(dialled,))
    assert lookups == []
    assert not any(app == "bridge" for app, _ in actions)


def test_a_phone_channel_without_presence_id_asks_for_it_first() -> None:
    variables = {k: v for k, v in PHONE.items() if k != "presence_id"}
    actions, _ = hunt("2002", variables)
    assert lua_calls(actions)[0] == ["esl_bridge_presence.lua", "caller"]
    actions, _ = hunt("2002")
    assert lua_calls(actions) == []


def test_a_quickcall_leg_gets_the_domain_name_of_its_phone() -> None:
    # FreeSWITCH originated this channel to user/2001@acme.test: no digest, no domain_name.
    leg = {"dialed_user": "2001", "dialed_domain": "acme.test", "presence_id": "alice@acme.test"}
    session = Session(dict(leg, destination_number="2002"))
    lookups: list[str] = []
    actions = Dialplan(apis={"user_exists": lambda a: lookups.append(a) or "true"}).hunt(session)
    assert session.variables["domain_name"] == "acme.test"
    assert lookups == ["id 2002 acme.test"]
    assert ("bridge", "user/${destination_number}@${domain_name}") in actions


def test_every_lua_action_names_a_shipped_script() -> None:
    text = (CONF_DIR / "dialplan" / "default" / "00_esl_bridge.xml").read_text()
    scripts = re.findall(r'application="lua" data="([^ "]+)', text)
    assert scripts
    for script in scripts:
        assert (SCRIPTS_DIR / script).is_file(), script


def test_the_default_context_includes_the_esl_bridge_file_before_anything_else_routes() -> None:
    extensions = Dialplan().extensions
    names = [e.name for e in extensions]
    assert names[0] == "unloop"
    assert names[1:7] == ["esl_bridge_domain_name", "esl_bridge_hotdesk_login",
                          "esl_bridge_hotdesk_logout", "esl_bridge_hotdesk_toggle",
                          "esl_bridge_caller_presence", "esl_bridge_device"]


# --- the Lua scripts compile ------------------------------------------------------------------


def luac() -> str | None:
    return shutil.which("luac5.4") or shutil.which("luac")


@pytest.mark.parametrize("script", LUA_SCRIPTS, ids=lambda p: p.name)
def test_every_lua_script_passes_luac_or_compiles_in_lupa(script: Path) -> None:
    compiler = luac()
    if compiler:
        result = subprocess.run([compiler, "-p", str(script)], capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 0, result.stderr
    else:
        lua = lua_runtime("lua54")
        ok, error = lua.eval("function(text, name) local f, e = load(text, name) "
                             "return f ~= nil, e end")(script.read_text(), script.name)
        assert ok, error


@pytest.mark.parametrize("lua_version", LUA_VERSIONS)
@pytest.mark.parametrize("script", LUA_SCRIPTS, ids=lambda p: p.name)
def test_every_lua_script_compiles_on_each_lua_mod_lua_may_be_built_with(
        script: Path, lua_version: str) -> None:
    lua = lua_runtime(lua_version)
    compile_chunk = lua.eval("function(text, name) local f, e = (loadstring or load)(text, name) "
                             "return f ~= nil, e end")
    ok, error = compile_chunk(script.read_text(), script.name)
    assert ok, error


# --- the documentation ------------------------------------------------------------------------


def test_the_conf_readme_says_where_every_file_goes_and_what_to_remove() -> None:
    readme = (FREESWITCH_CONF / "README.md").read_text()
    for path in FREESWITCH_CONF.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert str(path.relative_to(FREESWITCH_CONF)) in readme, path
    for module in ("mod_event_socket", "mod_sofia", "mod_xml_curl", "mod_lua", "mod_curl",
                   "mod_dptools", "mod_commands", "mod_dialplan_xml"):
        assert module in readme
    assert re.search(r"1000.{1,3}1019", readme)
    assert "directory/default/" in readme
    assert "DEBUG" in readme
    assert "default_password" in readme
    assert "esl_bridge_url" in readme and "esl_bridge_secret" in readme


def test_the_project_readme_has_the_freeswitch_side() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## FreeSWITCH side\n", 1)[1].split("\n## ", 1)[0]
    for needle in ("*11", "*12", "*13", "esl_bridge_url", "esl_bridge_secret",
                   "freeswitch-conf/README.md", "ESL_BRIDGE_FREESWITCH_SECRET"):
        assert needle in section
