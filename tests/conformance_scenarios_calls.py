"""Scenarios of the later labs (esl2, esl3), registered by importing this module.

The esl2 lab served 2001 (static presence id ``alice-static``) and 2002 at ``acme.test``; the esl3
lab served 2001-2009 from a capture server that answered the directory lookups
(``tests/data/xml_curl3/``), which ``directory`` plays here.
"""
from __future__ import annotations

from typing import Any

from conformance import Client, sent
from conformance_scenarios import Outcome, _assert, _until_closed, lab, scenario

REALM = "acme.test"
DEVICE_ID = "0123456789abcdef0123456789abcdef"
ACCOUNT_ID = "fedcba9876543210fedcba9876543210"
CHANNEL_EVENTS = "30_event_plain_channel_events_reply.txt"


def phone(fake: Any, user: str, port: int, call_id: str = "", **kwargs: Any) -> None:
    fake.register(user, REALM, network_port=port, call_id=call_id or f"lab-{user}-{port}",
                  user_agent=kwargs.pop("user_agent", f"SIPp-lab01-phone{user}"), event=False,
                  **kwargs)


def esl3_lab(factory: Any, **settings: Any) -> Any:
    """The third lab's node: its profile offered more codecs."""
    return lab(factory, codec_prefs="OPUS,G722,PCMU,PCMA,H264,VP8", **settings)


def listener(fake: Any, subscription: str = CHANNEL_EVENTS) -> Client:
    client = Client(fake.port).login()
    client.ask(sent(subscription))
    return client


# ------------------------------------------------------------------------------- esl2


@scenario("101_event_CUSTOM_sofia_register_2001_plain.txt",
          "102_event_CUSTOM_sofia_expire_flush_inbound_reg_2001_plain.txt",
          "103_api_sofia_profile_internal_flush_inbound_reg_2001.txt",
          "104_event_CUSTOM_sofia_unregister_2002_plain.txt",
          "105_api_sofia_xmlstatus_profile_internal_user_at_realm_2001_2002_registered.txt",
          "106_api_sofia_xmlstatus_profile_internal_user_at_realm_none_registered.txt",
          "107_api_sofia_xmlstatus_profile_internal_user_2001_registered.txt",
          "108_api_sofia_xmlstatus_profile_internal_user_2001_not_registered.txt",
          "109_api_sofia_xmlstatus_profile_nosuchprofile_user_at_realm.txt",
          "110_api_xml_flush_cache_id_2001_cached.txt", "111_api_xml_flush_cache_id_2001_empty.txt",
          "112_sendevent_PRESENCE_IN_reset_no_unique_id_reply.txt",
          "123_sendevent_NOTIFY_check_sync_reboot_false_reply.txt")
def registrations_of_the_bridge(factory: Any) -> Outcome:
    """The commands esl-bridge sends about registrations, and the events it reads (esl2)."""
    fake = lab(factory)
    events = listener(fake, "100_event_plain_CUSTOM_sofia_register_unregister_expire_reply.txt")
    client = Client(fake.port).login()
    out = Outcome()
    out.ask(client, "106_api_sofia_xmlstatus_profile_internal_user_at_realm_none_registered.txt",
            "108_api_sofia_xmlstatus_profile_internal_user_2001_not_registered.txt",
            "109_api_sofia_xmlstatus_profile_nosuchprofile_user_at_realm.txt")
    fake.register("2001", REALM, network_port=50541, call_id="lab01-5b4b2ad167-1",
                  user_agent="SIPp-lab01-phone2001",
                  variables={"esl_bridge_device_id": DEVICE_ID, "esl_bridge_account_id": ACCOUNT_ID})
    out.got["101_event_CUSTOM_sofia_register_2001_plain.txt"] = events.frame()
    phone(fake, "2002", 50549, "lab01-2c65931b5f-1")
    out.ask(client,
            "105_api_sofia_xmlstatus_profile_internal_user_at_realm_2001_2002_registered.txt",
            "107_api_sofia_xmlstatus_profile_internal_user_2001_registered.txt",
            "110_api_xml_flush_cache_id_2001_cached.txt",
            "111_api_xml_flush_cache_id_2001_empty.txt",
            "112_sendevent_PRESENCE_IN_reset_no_unique_id_reply.txt",
            "123_sendevent_NOTIFY_check_sync_reboot_false_reply.txt")
    fake.registrations[0].variables = {}  # the flushed phone had registered again, without them
    out.ask(client, "103_api_sofia_profile_internal_flush_inbound_reg_2001.txt")
    out.got["102_event_CUSTOM_sofia_expire_flush_inbound_reg_2001_plain.txt"] = events.frame()
    fake.unregister("2002", REALM)
    out.got["104_event_CUSTOM_sofia_unregister_2002_plain.txt"] = events.frame()
    return out


@scenario("113_bgapi_originate_quickcall_2001_job_uuid_reply.txt",
          "114_event_CHANNEL_CREATE_quickcall_plain.txt",
          "115_event_CHANNEL_ANSWER_quickcall_plain.txt",
          "116_event_BACKGROUND_JOB_quickcall_ok_plain.txt", "117_api_uuid_kill_quickcall.txt",
          "118_event_CHANNEL_HANGUP_COMPLETE_quickcall_plain.txt",
          "119_session_quickcall_event_connection_full_rx.txt")
def quickcall(factory: Any) -> Outcome:
    """The QuickCall of SPEC §6.1 to a phone that answers, then hung up, on one connection that
    is also subscribed to the events (esl2/113-119)."""
    fake = lab(factory)
    phone(fake, "2001", 50557, presence_id="alice-static@acme.test")
    client = listener(fake)
    stream = b""
    out = Outcome()
    names = ("113_bgapi_originate_quickcall_2001_job_uuid_reply.txt",
             "114_event_CHANNEL_CREATE_quickcall_plain.txt",
             "115_event_CHANNEL_ANSWER_quickcall_plain.txt",
             "116_event_BACKGROUND_JOB_quickcall_ok_plain.txt")
    client.send(sent(names[0]))
    for name in names:
        out.got[name] = client.frame()
        stream += out.got[name]
    for name in ("117_api_uuid_kill_quickcall.txt",
                 "118_event_CHANNEL_HANGUP_COMPLETE_quickcall_plain.txt"):
        out.got[name] = client.ask(sent("117_api_uuid_kill_quickcall.txt")) \
            if name.startswith("117") else client.frame()
        stream += out.got[name]
    out.got["119_session_quickcall_event_connection_full_rx.txt"] = stream
    return out


@scenario("120a_bgapi_originate_unregistered_2004_reply.txt",
          "120b_event_BACKGROUND_JOB_unregistered_2004_plain.txt",
          "121a_bgapi_originate_ring_only_2005_timeout5_reply.txt",
          "121b_event_BACKGROUND_JOB_ring_only_2005_timeout5_plain.txt",
          "122a_bgapi_originate_busy_2006_reply.txt",
          "122b_event_BACKGROUND_JOB_busy_2006_plain.txt")
def quickcall_failures(factory: Any) -> Outcome:
    """A QuickCall to a phone not registered, one that only rings, one that is busy."""
    fake = lab(factory)
    phone(fake, "2005", 50561)
    phone(fake, "2006", 50563)
    fake.set_behaviour("2005", REALM, "no_answer")
    fake.set_behaviour("2006", REALM, "busy")
    events = listener(fake)
    client = Client(fake.port).login()
    out = Outcome()
    for first, second in (("120a_bgapi_originate_unregistered_2004_reply.txt",
                           "120b_event_BACKGROUND_JOB_unregistered_2004_plain.txt"),
                          ("121a_bgapi_originate_ring_only_2005_timeout5_reply.txt",
                           "121b_event_BACKGROUND_JOB_ring_only_2005_timeout5_plain.txt"),
                          ("122a_bgapi_originate_busy_2006_reply.txt",
                           "122b_event_BACKGROUND_JOB_busy_2006_plain.txt")):
        out.ask(client, first)
        out.got[second] = events.event("BACKGROUND_JOB")
    return out


# ------------------------------------------------------------------------------- esl3: calls


@scenario("125_i1_event_plain_channel_events_reply.txt",
          "126_i1_bgapi_originate_ring_only_LOSE_RACE_reply.txt",
          "127_i1_api_hupall_LOSE_RACE_esl_bridge_call_id_ringing.txt",
          "128_i1_event_BACKGROUND_JOB_after_hupall_LOSE_RACE.txt",
          "129_i1_event_CHANNEL_HANGUP_COMPLETE_after_hupall_LOSE_RACE.txt",
          "130_i1_api_hupall_LOSE_RACE_esl_bridge_call_id_no_channel.txt",
          "131_i1_bgapi_originate_ring_only_ORIGINATOR_CANCEL_reply.txt",
          "132_i1_api_hupall_ORIGINATOR_CANCEL_esl_bridge_call_id_ringing.txt",
          "133_i1_event_BACKGROUND_JOB_after_hupall_ORIGINATOR_CANCEL.txt",
          "134_i1_event_CHANNEL_HANGUP_COMPLETE_after_hupall_ORIGINATOR_CANCEL.txt",
          "135_i1_api_hupall_ORIGINATOR_CANCEL_esl_bridge_call_id_no_channel.txt",
          "136_i1_api_hupall_LOSE_RACE_unknown_value.txt")
def hang_up_a_ringing_call(factory: Any) -> Outcome:
    """hupall by esl_bridge_call_id while the phone rings, and again when nothing matches."""
    fake = esl3_lab(factory)
    phone(fake, "2001", 43878)
    fake.set_behaviour("2001", REALM, "hang")
    client = Client(fake.port).login()
    out = Outcome()
    out.ask(client, "125_i1_event_plain_channel_events_reply.txt")
    for reply, hupall, hangup, job, again in (
            ("126_i1_bgapi_originate_ring_only_LOSE_RACE_reply.txt",
             "127_i1_api_hupall_LOSE_RACE_esl_bridge_call_id_ringing.txt",
             "129_i1_event_CHANNEL_HANGUP_COMPLETE_after_hupall_LOSE_RACE.txt",
             "128_i1_event_BACKGROUND_JOB_after_hupall_LOSE_RACE.txt",
             "130_i1_api_hupall_LOSE_RACE_esl_bridge_call_id_no_channel.txt"),
            ("131_i1_bgapi_originate_ring_only_ORIGINATOR_CANCEL_reply.txt",
             "132_i1_api_hupall_ORIGINATOR_CANCEL_esl_bridge_call_id_ringing.txt",
             "134_i1_event_CHANNEL_HANGUP_COMPLETE_after_hupall_ORIGINATOR_CANCEL.txt",
             "133_i1_event_BACKGROUND_JOB_after_hupall_ORIGINATOR_CANCEL.txt",
             "135_i1_api_hupall_ORIGINATOR_CANCEL_esl_bridge_call_id_no_channel.txt")):
        out.ask(client, reply)
        client.event("CHANNEL_CREATE")
        out.ask(client, hupall)
        out.got[hangup] = client.frame()
        out.got[job] = client.frame()
        out.ask(client, again)
    out.ask(client, "136_i1_api_hupall_LOSE_RACE_unknown_value.txt")
    return out


@scenario("137_i2_event_plain_channel_events_reply.txt",
          "138_i2_bgapi_originate_two_legs_reply.txt", "139_i2_event_CHANNEL_CREATE_leg1.txt",
          "140_i2_api_show_channels_two_legs.txt", "141_i2_api_hupall_LOSE_RACE_two_legs.txt",
          "142_i2_event_BACKGROUND_JOB_two_legs_after_hupall.txt",
          "144_i2_bgapi_originate_two_legs_reply.txt", "145_i2_event_CHANNEL_CREATE_leg1.txt",
          "146_i2_event_CHANNEL_CREATE_leg2.txt", "147_i2_api_show_channels_two_legs.txt",
          "148_i2_api_hupall_LOSE_RACE_two_legs.txt",
          "149_i2_event_BACKGROUND_JOB_two_legs_after_hupall.txt")
def two_phones(factory: Any) -> Outcome:
    """One originate to two phones: the uuid in {} rings only the first (the second leg is a
    Duplicate UUID), the uuid in the first leg's [] rings both."""
    fake = esl3_lab(factory)
    phone(fake, "2001", 41998)
    phone(fake, "2002", 42006)
    for user in ("2001", "2002"):
        fake.set_behaviour(user, REALM, "hang")
    client = Client(fake.port).login()
    out = Outcome()
    out.ask(client, "137_i2_event_plain_channel_events_reply.txt",
            "138_i2_bgapi_originate_two_legs_reply.txt")
    out.got["139_i2_event_CHANNEL_CREATE_leg1.txt"] = client.event("CHANNEL_CREATE")
    out.ask(client, "140_i2_api_show_channels_two_legs.txt",
            "141_i2_api_hupall_LOSE_RACE_two_legs.txt")
    out.got["142_i2_event_BACKGROUND_JOB_two_legs_after_hupall.txt"] = \
        client.event("BACKGROUND_JOB")
    out.ask(client, "144_i2_bgapi_originate_two_legs_reply.txt")
    out.got["145_i2_event_CHANNEL_CREATE_leg1.txt"] = client.event("CHANNEL_CREATE")
    out.got["146_i2_event_CHANNEL_CREATE_leg2.txt"] = client.event("CHANNEL_CREATE")
    out.ask(client, "147_i2_api_show_channels_two_legs.txt",
            "148_i2_api_hupall_LOSE_RACE_two_legs.txt")
    hangups = [client.event("CHANNEL_HANGUP_COMPLETE") for _ in range(2)]
    out.got["149_i2_event_BACKGROUND_JOB_two_legs_after_hupall.txt"] = \
        client.event("BACKGROUND_JOB")
    out.checks.append(lambda: _assert(all(b"LOSE_RACE" in h for h in hangups),
                                      "one hupall ends both legs"))
    return out


@scenario("185_i8_event_plain_reply.txt", "186_i8_bgapi_originate_quickcall_reply.txt",
          "187_i8_api_uuid_dump_quickcall_a_leg.txt",
          "188_i8_api_uuid_dump_quickcall_a_leg_json.txt", "189_i8_api_uuid_kill.txt")
def dump_an_answered_quickcall(factory: Any) -> Outcome:
    fake = esl3_lab(factory)
    phone(fake, "2001", 42022)
    client = Client(fake.port).login()
    out = Outcome()
    out.ask(client, "185_i8_event_plain_reply.txt", "186_i8_bgapi_originate_quickcall_reply.txt")
    client.event("BACKGROUND_JOB")
    out.ask(client, "187_i8_api_uuid_dump_quickcall_a_leg.txt",
            "188_i8_api_uuid_dump_quickcall_a_leg_json.txt", "189_i8_api_uuid_kill.txt")
    return out


@scenario("202_i11_api_uuid_kill_unknown.txt", "203_i11_api_uuid_kill_unknown_LOSE_RACE.txt",
          "204_i11_api_uuid_kill_no_argument.txt", "205_i11_api_uuid_kill_not_a_uuid.txt")
def uuid_kill_refusals(factory: Any) -> Outcome:
    client = Client(esl3_lab(factory).port).login()
    out = Outcome()
    out.ask(client, *uuid_kill_refusals.covers)
    return out


@scenario("206_i12_0_connect_banner.txt", "207_i12_api_status_before_auth.txt",
          "209_i12_event_plain_before_auth.txt", "210_i12_bgapi_before_auth.txt",
          "212_i12_garbage_before_auth.txt", "208_i12_auth_after_refused_command.txt",
          "211_i12_exit_before_auth.txt")
def before_auth(factory: Any) -> Outcome:
    """Commands before ``auth`` are refused and the connection stays usable."""
    fake = esl3_lab(factory)
    client = Client(fake.port)
    out = Outcome({"206_i12_0_connect_banner.txt": client.frame()})
    out.ask(client, "207_i12_api_status_before_auth.txt", "209_i12_event_plain_before_auth.txt",
            "210_i12_bgapi_before_auth.txt", "212_i12_garbage_before_auth.txt",
            "208_i12_auth_after_refused_command.txt")
    other = Client(fake.port)
    other.frame()
    other.send(sent("211_i12_exit_before_auth.txt"))
    out.got["211_i12_exit_before_auth.txt"] = other.frame() + other.frame()
    out.checks.append(lambda: _assert(other.at_eof(), "exit closes the connection"))
    out.checks.append(lambda: _assert(fake.received("bgapi") == ["bgapi status"] and
                                      not fake.channels, "nothing ran before auth"))
    return out


@scenario("213_i13_event_plain_reply.txt", "215_i13_event_CHANNEL_CREATE_other_connection.txt",
          "216_i13_event_BACKGROUND_JOB_other_connection.txt", "217_i13_api_uuid_kill.txt")
def bgapi_of_a_closed_connection(factory: Any) -> Outcome:
    """A bgapi whose sender closed at once still runs; its job reaches the other connection."""
    fake = esl3_lab(factory)
    phone(fake, "2001", 42014)
    watcher = Client(fake.port).login()
    out = Outcome()
    out.ask(watcher, "213_i13_event_plain_reply.txt")
    sender = Client(fake.port).login()
    sender.send(sent("214_i13_bgapi_then_close.txt"))
    sender.close()
    out.got["215_i13_event_CHANNEL_CREATE_other_connection.txt"] = watcher.event("CHANNEL_CREATE")
    out.got["216_i13_event_BACKGROUND_JOB_other_connection.txt"] = watcher.event("BACKGROUND_JOB")
    out.ask(Client(fake.port).login(), "217_i13_api_uuid_kill.txt")
    return out


@scenario("218_i14_api_sofia_xmlstatus_user_2003_odd_callid_agent.txt",
          "219_i14_api_sofia_status_user_2003_odd_callid_agent.txt")
def odd_call_id(factory: Any) -> Outcome:
    """A Call-ID and a user agent holding XML's special characters, in xmlstatus and status."""
    fake = esl3_lab(factory)
    phone(fake, "2003", 45596, "cid<with>/slash'q\"-1",
          user_agent="SIPp 'quoted' agent <x> & y")
    out = Outcome()
    out.ask(Client(fake.port).login(), *odd_call_id.covers)
    return out


@scenario("220_i15_event_plain_ALL_reply.txt", "221_i15_shutdown_event_plain_ALL_full_rx.txt")
def shutdown_seen_by_all(factory: Any) -> Outcome:
    fake = esl3_lab(factory)
    watcher = Client(fake.port).login()
    out = Outcome()
    out.ask(watcher, "220_i15_event_plain_ALL_reply.txt")
    Client(fake.port).login().send("api shutdown")
    out.got["221_i15_shutdown_event_plain_ALL_full_rx.txt"] = _until_closed(watcher)
    return out
