"""Fixtures of the hotdesk Lua script tests: an office (an account with two phones and three
hotdesk users) whose phones place calls that run the script, and the prompts a caller hears."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fixtures_web import FREESWITCH_SECRET, ApiClient
from lua_harness import FreeSwitch, Session, lua_argv, run_script

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
