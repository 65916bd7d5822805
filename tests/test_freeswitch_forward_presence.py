"""BLF of a call-forwarded device: a watcher of its presence id sees one dialog per call.

A call to such a device dials ``loopback/<number>/<context>`` (its directory dial-string).
Recorded on FreeSWITCH 1.10 (esl3/151-156), a presence id in that dial-string's ``{...}`` put the
call on both loopback legs: two dialogs per call. ``loopback_legs`` models, from FreeSWITCH's
source, which leg gets which variable; it is checked against that recording first, then used on
the dial-strings esl-bridge's directory now answers.
"""
from __future__ import annotations

import re

import pytest
from conformance import rec
from fixtures_web import client_for, make_account
from loopback_legs import dial_loopback
from lua_dialplan import Dialplan
from lua_harness import Session
from test_freeswitch_directory import ask, lookup, user_of

pytestmark = pytest.mark.store

RECORDED_DIAL_STRING = "{^^:presence_id=alice@acme.test}loopback/1234/default"


def recorded_dialogs() -> set[str]:
    """The dialog ids the BLF watcher of alice@acme.test was told about (esl3/156)."""
    return set(re.findall(r'<dialog id="([^"]+)"',
                          rec("156_i3_blf_watcher_alice_notify_bodies.txt").decode()))


def test_the_model_reproduces_the_recorded_two_dialogs():
    """The recorded dial-string: both loopback legs carry the presence id (show channels lists
    alice@acme.test on loopback/1234-a and -b, esl3/153), and the watcher saw one dialog for
    each leg of the originate and one for each leg of the bridge (esl3/156)."""
    call = dial_loopback(RECORDED_DIAL_STRING, {"origination_uuid": "u"})
    assert call.with_presence("alice@acme.test") == ["a", "b"]
    rows = rec("153_i3_api_show_channels_during.txt").decode().splitlines()[4:6]
    assert [row.split(",")[4] for row in rows] == ["loopback/1234-a", "loopback/1234-b"]
    assert [row.split(",")[22] for row in rows] == ["alice@acme.test"] * 2
    assert len(recorded_dialogs()) == 4  # two calls, two dialogs each


@pytest.fixture
def forwarded(bridge):
    """A cellphone device forwarded to +1 555 010 2000, and a phone forwarding without being
    replaced (it rings too)."""
    account_id, key, admin_id = make_account(realm="acme.test", dialplan_context="acme-ctx")
    api = client_for(bridge.url, account_id, key, admin_id)
    api.create_device(name="alice cell", device_type="cellphone", presence_id="alice-static",
                      sip={"username": "2005"},
                      call_forward={"enabled": True, "number": "+1 (555) 010-2000"})
    api.create_device(name="bob desk", sip={"username": "2006", "password": "pw-2006"},
                      call_forward={"enabled": True, "number": "5550109999", "substitute": False})
    return {user: user_of(ask(bridge, lookup(user, action="user_call")))["params"]["dial-string"]
            for user in ("2005", "2006")}


def test_a_forwarded_device_shows_on_one_loopback_leg(forwarded):
    """The directory's dial-string: the presence id on the a-leg alone (the b-leg gets the
    variables of the dial-string, and execute_on_originate runs on the a-leg after they were
    copied), for a device that only forwards and for one that rings too."""
    call = dial_loopback(forwarded["2005"], {"origination_uuid": "u"}, user="2005")
    assert call.with_presence("alice-static@acme.test") == ["a"]
    assert "presence_id" not in call.b_leg
    call = dial_loopback(forwarded["2006"], user="2006")
    assert call.with_presence("2006@acme.test") == ["a"]


def test_the_loopback_leg_does_not_add_the_presence_id_to_the_outgoing_call(forwarded):
    """The b-leg meets the shipped dialplan at the forward number: it does not look the number
    up to give the outgoing leg the presence id again (a third dialog)."""
    b_leg = dial_loopback(forwarded["2005"], user="2005").b_leg
    session = Session({**b_leg, "destination_number": "+15550102000", "domain_name": "acme.test"})
    actions = Dialplan(apis={"user_exists": lambda args: "false"}).hunt(session)
    assert ("lua", "esl_bridge_presence.lua number") not in actions
    # a call from a phone to the same number still gets it (esl_bridge_presence.lua number)
    phone = Session({"destination_number": "+15550102000", "domain_name": "acme.test",
                     "sip_auth_username": "2001", "presence_id": "2001@acme.test"})
    assert ("lua", "esl_bridge_presence.lua number") in \
        Dialplan(apis={"user_exists": lambda args: "false"}).hunt(phone)
