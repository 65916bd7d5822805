"""The command builders of esl_bridge.commands: exact texts, checked against what esl-bridge
sent a real FreeSWITCH (tests/data/freeswitch/esl2/*.sent.txt), and the options and refusals of
each builder. Hostile values against every slot: tests/test_commands_hostile.py.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from command_models import CALL_ID, VARS, parse_originate, parse_sendevent

from esl_bridge import commands
from esl_bridge.errors import UnsafeValue

DATA = Path(__file__).resolve().parent / "data" / "freeswitch"

JOB_ID = "a9061ffb-bfdd-4924-8ee7-a8c5ddb85f44"


def sent(name: str) -> str:
    """A recorded client frame, as text, without its terminating blank line."""
    raw = (DATA / "esl2" / name).read_text()
    assert raw.endswith("\n\n")
    return raw[:-2]


def recorded_originate(**overrides: object) -> str:
    values: dict = dict(call_id=CALL_ID, endpoints=[("2001", "acme.test")], number="9196",
                        context="default", cid_name="Bars Test", cid_number="15551112222",
                        variables=VARS)
    values.update(overrides)
    return commands.originate(**values)


# ---------------------------------------------------------------------- exact texts


def test_quickcall_originate_is_byte_identical_to_the_recording():
    text = commands.bgapi(recorded_originate(), JOB_ID)
    assert text == sent("113_bgapi_originate_quickcall_2001_job_uuid_reply.sent.txt")


def test_originate_of_the_other_recorded_quickcalls():
    text = commands.bgapi(recorded_originate(call_id="9a931f6f-53b7-4882-bf21-2c96290a6394",
                                             endpoints=[("2004", "acme.test")]),
                          "b4a1a032-13cc-4630-88d4-fc28f94ad8e0")
    assert text == sent("120a_bgapi_originate_unregistered_2004_reply.sent.txt")
    text = commands.bgapi(recorded_originate(call_id="b5ca5303-9a1a-4825-a952-2fdeadc097b0",
                                             endpoints=[("2005", "acme.test")], timeout=5),
                          "48f9d5eb-565a-400c-b026-be2094135aca")
    assert text == sent("121a_bgapi_originate_ring_only_2005_timeout5_reply.sent.txt")


def test_check_sync_notify_is_byte_identical_to_the_recording():
    text = commands.check_sync_notify(profile="internal", user="2001", realm="acme.test",
                                      event_string="check-sync;reboot=false")
    assert text == sent("123_sendevent_NOTIFY_check_sync_reboot_false_reply.sent.txt")


def test_presence_reset_is_byte_identical_to_the_recording():
    text = commands.presence_reset("alice-static@acme.test")
    assert text == sent("112_sendevent_PRESENCE_IN_reset_no_unique_id_reply.sent.txt")


@pytest.mark.parametrize("text, recording", [
    (commands.api(commands.xmlstatus_realm("internal", "acme.test")),
     "105_api_sofia_xmlstatus_profile_internal_user_at_realm_2001_2002_registered.sent.txt"),
    (commands.api(commands.xmlstatus_user("internal", "2001", "acme.test")),
     "107_api_sofia_xmlstatus_profile_internal_user_2001_registered.sent.txt"),
    (commands.api(commands.xml_flush_cache("2001", "acme.test")),
     "110_api_xml_flush_cache_id_2001_cached.sent.txt"),
    (commands.api(commands.flush_inbound_reg("internal", "2001", "acme.test")),
     "103_api_sofia_profile_internal_flush_inbound_reg_2001.sent.txt"),
    (commands.api(commands.uuid_kill(CALL_ID)), "117_api_uuid_kill_quickcall.sent.txt"),
    (commands.EVENT_SUBSCRIPTION.replace(
        "BACKGROUND_JOB CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE ", ""),
     "100_event_plain_CUSTOM_sofia_register_unregister_expire_reply.sent.txt"),
])
def test_api_texts_are_byte_identical_to_the_recordings(text, recording):
    assert text == sent(recording)


def test_event_subscription_puts_custom_last():
    words = commands.EVENT_SUBSCRIPTION.split()
    assert words[:2] == ["event", "plain"]
    assert words[words.index("CUSTOM") + 1:] == ["sofia::register", "sofia::unregister",
                                                   "sofia::expire"]
    assert {"BACKGROUND_JOB", "CHANNEL_CREATE", "CHANNEL_ANSWER",
            "CHANNEL_HANGUP_COMPLETE"} <= set(words[:words.index("CUSTOM")])


def test_xmlstatus_profile_and_uuid_kill_with_cause():
    assert commands.xmlstatus_profile("internal") == "sofia xmlstatus profile internal reg"
    assert commands.uuid_kill(CALL_ID, "USER_BUSY") == f"uuid_kill {CALL_ID} USER_BUSY"


def test_originate_options():
    plain = parse_originate(recorded_originate(auto_answer=False, ignore_early_media=False,
                                               bypass_media=True, variables=None))
    assert "sip_auto_answer" not in plain["vars"]
    assert plain["vars"]["ignore_early_media"] == "false"
    assert plain["vars"]["bypass_media"] == "true"
    two = parse_originate(recorded_originate(endpoints=[("2001", "acme.test"),
                                                        ("2002", "acme.test"),
                                                        ("2001", "ACME.test")]))
    assert two["legs"] == ["user/2001@acme.test", "user/2002@acme.test"]
    # auto answer only when exactly one phone rings
    assert "sip_auto_answer" not in two["vars"]
    assert parse_originate(recorded_originate())["vars"]["sip_auto_answer"] == "true"


def test_originate_refuses_foreign_variable_names_and_bad_endpoints():
    for name in ("execute_on_answer", "api_hangup_hook", "origination_nested_vars",
                 "presence_id", "ESL_BRIDGE_X", "esl_bridge_"):
        with pytest.raises(UnsafeValue) as info:
            recorded_originate(variables={name: "x"})
        assert info.value.field == "variables"
    with pytest.raises(UnsafeValue) as info:
        recorded_originate(endpoints=[])
    assert (info.value.field, info.value.rule) == ("endpoints", "minLength")
    with pytest.raises(UnsafeValue) as info:
        recorded_originate(endpoints=["2001@acme.test"])
    assert info.value.rule == "type"
    with pytest.raises(UnsafeValue):
        recorded_originate(endpoints=[(str(i), "acme.test") for i in range(33)])


def test_presence_set_uses_a_stable_dialog_id_and_the_state():
    early = commands.presence_set("alice@acme.test", "early")
    again = commands.presence_set("Alice@ACME.test", "terminated")
    headers = parse_sendevent(early)[1]
    assert headers["unique-id"] == commands.presence_dialog_id("alice@acme.test")
    assert parse_sendevent(again)[1]["unique-id"] == headers["unique-id"]
    assert uuid.UUID(headers["unique-id"]).version == 5
    assert headers["answer-state"] == "early"
    assert commands.presence_dialog_id("bob@acme.test") != headers["unique-id"]
    reset = parse_sendevent(commands.presence_reset("alice@acme.test"))[1]
    # the set form is the reset event plus unique-id (and its state)
    assert set(headers) == set(reset) | {"unique-id"}
    assert parse_sendevent(commands.presence_set("alice@acme.test", "terminated"))[1][
        "channel-state"] == "CS_HANGUP"
    with pytest.raises(UnsafeValue) as info:
        commands.presence_set("alice@acme.test", "ringing")
    assert info.value.rule == "enum"
