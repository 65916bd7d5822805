"""esl_bridge_presence.lua under a real Lua against the real esl-bridge: the static presence id
of a cellphone device reaches the leg that rings its call-forward number, and a phone's channel
without a presence id gets its device's."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import requests
from fixtures_web import FREESWITCH_SECRET, ApiClient
from http_stubs import SilentServer, closed_port
from lua_dialplan import Dialplan, parse_extensions
from lua_harness import LUA_VERSIONS, FreeSwitch, Session, run_script

# What a site adds after 00_esl_bridge.xml: its route to the outside world.
OUTBOUND_ROUTE = """
<extension name="outbound">
  <condition field="destination_number" expression="^\\+?(\\d{7,15})$">
    <action application="bridge" data="sofia/gateway/provider/$1"/>
  </condition>
</extension>
"""


@dataclass
class Lines:
    api: ApiClient
    url: str
    desk: dict[str, Any]
    cell: dict[str, Any]

    def freeswitch(self, **global_vars: str) -> FreeSwitch:
        settings = {"esl_bridge_url": self.url, "esl_bridge_secret": FREESWITCH_SECRET}
        settings.update(global_vars)
        return FreeSwitch(settings)

    def phone(self, **overrides: str) -> Session:
        variables = {"sip_auth_username": "2001", "sip_auth_realm": "acme.test",
                     "user_name": "2001", "domain_name": "acme.test",
                     "presence_id": "alice-desk@acme.test", "uuid": "c0ffee00-0000-4000-8000-000000000001"}
        variables.update(overrides)
        return Session({k: v for k, v in variables.items() if v})

    def dial(self, number: str, session: Session, fs: FreeSwitch,
             lua_version: str = "lua54") -> list[tuple[str, str]]:
        dialplan = Dialplan(apis={"user_exists": lambda args: "false"})
        dialplan.extensions += parse_extensions(OUTBOUND_ROUTE)
        return dialplan.dial(number, session, fs, lua_version)


@pytest.fixture
def lines(api: ApiClient, bridge: Any) -> Lines:
    desk = api.create_device(name="desk", sip={"username": "2001", "password": "secret-2001"},
                             presence_id="alice-desk")
    cell = api.create_device(name="alice mobile", device_type="cellphone",
                             presence_id="alice-cell",
                             call_forward={"enabled": True, "number": "+1 555 123 4567"})
    return Lines(api, bridge.url, desk, cell)


@pytest.mark.parametrize("lua_version", LUA_VERSIONS)
def test_a_call_to_a_cellphone_forward_number_carries_the_cellphone_presence_id(
        lines: Lines, lua_version: str) -> None:
    session, fs = lines.phone(), lines.freeswitch()
    lines.dial("+15551234567", session, fs, lua_version)
    (call,) = fs.curl_calls
    assert call.url == f"{lines.url}/freeswitch/presence"
    assert call.header("X-ESL-Bridge-Secret") == FREESWITCH_SECRET
    assert call.options == {"connect-timeout": "2", "timeout": "3"}
    assert call.form == {"realm": ["acme.test"], "number": ["+15551234567"]}
    # Set before the bridge, for the leg the bridge creates; the caller keeps its own id.
    assert session.executed == [("export", "nolocal:presence_id=alice-cell@acme.test")]
    assert session.variables["esl_bridge_presence_id"] == "alice-cell@acme.test"
    assert session.variables["presence_id"] == "alice-desk@acme.test"
    assert session.bridges == [{"target": "sofia/gateway/provider/15551234567",
                                "b_leg": {"presence_id": "alice-cell@acme.test"}}]


def test_any_other_number_gets_no_presence_id(lines: Lines) -> None:
    session, fs = lines.phone(), lines.freeswitch()
    lines.dial("+15559999999", session, fs)
    assert len(fs.curl_calls) == 1
    assert session.executed == []
    assert "esl_bridge_presence_id" not in session.variables
    assert session.bridges == [{"target": "sofia/gateway/provider/15559999999", "b_leg": {}}]
    assert not any(level == "WARNING" for level, _ in fs.logs)


def test_a_forward_that_is_switched_off_is_no_longer_found(lines: Lines) -> None:
    response = lines.api.patch(f"devices/{lines.cell['id']}", {"call_forward": {
        "enabled": False, "number": "+1 555 123 4567"}})
    assert response.status_code == 200, response.text
    session, fs = lines.phone(), lines.freeswitch()
    lines.dial("+15551234567", session, fs)
    assert session.bridges[0]["b_leg"] == {}


def test_a_phone_channel_without_presence_id_gets_its_device_static_one(lines: Lines) -> None:
    session, fs = lines.phone(presence_id=""), lines.freeswitch()
    run_script("esl_bridge_presence.lua", ["caller"], session, fs)
    (call,) = fs.curl_calls
    assert call.form == {"realm": ["acme.test"], "sip_user": ["2001"]}
    assert session.variables["presence_id"] == "alice-desk@acme.test"


def test_through_the_dialplan_the_caller_lookup_runs_before_the_call_is_routed(lines: Lines) -> None:
    session, fs = lines.phone(presence_id=""), lines.freeswitch()
    lines.dial("+15551234567", session, fs)
    assert [c.form.get("sip_user", c.form.get("number")) for c in fs.curl_calls] == [
        ["2001"], ["+15551234567"]]
    assert session.variables["presence_id"] == "alice-desk@acme.test"
    assert session.bridges[0]["b_leg"] == {"presence_id": "alice-cell@acme.test"}


def test_esl_bridge_down_lets_the_call_go_on_without_the_presence_id(lines: Lines) -> None:
    fs = lines.freeswitch(esl_bridge_url=f"http://127.0.0.1:{closed_port()}")
    session = lines.phone()
    lines.dial("+15551234567", session, fs)
    assert fs.curl_calls[0].output["exit_code"] == "7"  # type: ignore[index]
    assert session.executed == []
    assert session.played == []  # the presence lookup never plays anything
    assert session.bridges == [{"target": "sofia/gateway/provider/15551234567", "b_leg": {}}]
    assert any(level == "WARNING" and "exit code 7" in text for level, text in fs.logs)


def test_esl_bridge_hanging_delays_the_call_by_the_timeout_only(lines: Lines) -> None:
    with SilentServer() as url:
        fs = lines.freeswitch(esl_bridge_url=url, esl_bridge_timeout="1",
                              esl_bridge_connect_timeout="1")
        session = lines.phone()
        lines.dial("+15551234567", session, fs)
    assert fs.curl_calls[0].output["exit_code"] == "28"  # type: ignore[index]
    assert session.bridges[0]["b_leg"] == {}


@pytest.mark.parametrize("number", ["", "12a", "1" * 36, "+1 555", "${x}"])
def test_numbers_no_forward_can_have_are_not_looked_up(lines: Lines, number: str) -> None:
    session, fs = lines.phone(), lines.freeswitch()
    run_script("esl_bridge_presence.lua", ["number", number] if number else ["number"],
               session, fs)
    assert fs.curl_calls == []
    assert session.executed == []


def user_exists_via(url: str) -> Any:
    """`user_exists id <user> <realm>` as FreeSWITCH runs it with the shipped xml_curl binding:
    a directory lookup (switch_xml_locate_user: no `action`, then key, user, domain) POSTed to
    esl-bridge with the binding's basic-auth credentials; "true" when a user comes back."""
    def user_exists(args: str) -> str:
        key, user, realm = args.split(" ")
        fields = [("hostname", "vm"), ("section", "directory"), ("tag_name", "domain"),
                  ("key_name", "name"), ("key_value", realm), ("Event-Name", "REQUEST_PARAMS"),
                  ("Core-UUID", "3fb63e1d-f4dd-4490-b393-41a76f484e4e"),
                  ("FreeSWITCH-Hostname", "vm"), ("Event-Calling-File", "switch_xml.c"),
                  ("Event-Calling-Function", "switch_xml_locate_user"),
                  ("key", key), ("user", user), ("domain", realm)]
        response = requests.post(f"{url}/freeswitch/directory", data=fields, timeout=10,
                                 auth=("freeswitch", FREESWITCH_SECRET),
                                 headers={"User-Agent": "freeswitch-xml/1.0"})
        assert response.status_code == 200, response.text
        return "true" if f'<user id="{user}"' in response.text else "false"
    return user_exists


def test_a_call_to_a_device_is_routed_by_asking_the_directory(lines: Lines) -> None:
    dialplan = Dialplan(apis={"user_exists": user_exists_via(lines.url)})
    dialplan.extensions += parse_extensions(OUTBOUND_ROUTE)
    lines.api.create_device(name="lobby", sip={"username": "2002", "password": "secret-2002"})
    session, fs = lines.phone(), lines.freeswitch()
    dialplan.dial("2002", session, fs)
    assert session.bridges == [{"target": "user/2002@acme.test", "b_leg": {}}]
    assert fs.curl_calls == []  # the dial-string carries the device's presence id
    # Not a device: on to the presence lookup and the outbound route.
    session, fs = lines.phone(), lines.freeswitch()
    dialplan.dial("2003333", session, fs)
    assert [c.url for c in fs.curl_calls] == [f"{lines.url}/freeswitch/presence"]
    assert session.bridges == [{"target": "sofia/gateway/provider/2003333", "b_leg": {}}]
