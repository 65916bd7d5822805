"""The lab exchanges, replayed against the test FreeSWITCH (``test_freeswitch_conformance.py``).

Each scenario sets the test FreeSWITCH up as the lab was for a group of recordings (the phones
registered with the recorded ports, Call-IDs and user agents; the same users known), sends the
recorded ``.sent`` bytes and returns what came back, by recording. ``EXCEPTIONS`` lists, with the
reason, each recording no scenario replays.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
from conformance import Client, sent
from fake_freeswitch.templates import SHUTDOWN_EVENTS_ESL


@dataclass
class Outcome:
    """What a scenario got back, by recording, and what it chose to let differ."""

    got: dict[str, bytes] = field(default_factory=dict)
    #: header names whose values this lab set differently from the test FreeSWITCH
    allowed: set[str] = field(default_factory=set)
    allowed_for: dict[str, set[str]] = field(default_factory=dict)
    #: further checks of the scenario, run after the comparison
    checks: list[Callable[[], None]] = field(default_factory=list)

    def ask(self, client: Client, *names: str) -> None:
        for name in names:
            self.got[name] = client.ask(sent(name))


SCENARIOS: list[Callable[..., Outcome]] = []


def scenario(*covers: str, http: tuple[str, ...] = ()
             ) -> Callable[[Callable[..., Outcome]], Callable[..., Outcome]]:
    """Register a scenario replaying the recordings ``covers`` (and checking the recorded HTTP
    requests ``http`` of tests/data/xml_curl3 that it makes)."""
    def register(fn: Callable[..., Outcome]) -> Callable[..., Outcome]:
        fn.covers = covers  # type: ignore[attr-defined]
        fn.http = http  # type: ignore[attr-defined]
        SCENARIOS.append(fn)
        return fn
    return register


# ------------------------------------------------------------------------------- the first lab

ESL_REALM = "127.0.0.1"
#: the vanilla directory's variables of user 1000 (esl/11)
VANILLA_1000 = {
    "record_stereo": "true", "default_gateway": "example.com", "default_areacode": "918",
    "transfer_fallback_extension": "operator", "toll_allow": "domestic,international,local",
    "accountcode": "1000", "user_context": "default", "effective_caller_id_name": "Extension 1000",
    "effective_caller_id_number": "1000", "outbound_caller_id_name": "FreeSWITCH",
    "outbound_caller_id_number": "0000000000", "callgroup": "techsupport"}


def lab(factory: Any, **settings: Any) -> Any:
    """A test FreeSWITCH named as the lab's node was (``vm``)."""
    return factory(switchname="vm", **settings)


def esl_lab(factory: Any) -> Any:
    """The first lab: users 1000 and 1005 of the vanilla directory, nobody else."""
    return lab(factory, directory=lambda user, realm: realm == ESL_REALM
               and user in ("1000", "1005"))


def register_1000(fake: Any, event: bool = True) -> None:
    fake.register("1000", ESL_REALM, network_port=5070, call_id="1-25361@127.0.0.1",
                  user_agent="SIPp-lab01-phone1000", variables=VANILLA_1000, event=event)


@scenario("01_connect_banner.txt", "02_auth_ok.txt", "04_api_status.txt",
          "05_api_nosuchcmd.txt", "08_api_version.txt",
          "10_event_plain_custom_sofia_register_reply.txt",
          "30_event_plain_channel_events_reply.txt", "31_event_json_channel_events_reply.txt",
          "70_exit_disconnect_notice.txt", "124_api_msleep_50.txt",
          "100_event_plain_CUSTOM_sofia_register_unregister_expire_reply.txt")
def session_basics(factory: Any) -> Outcome:
    fake = lab(factory)
    client = Client(fake.port)
    out = Outcome({"01_connect_banner.txt": client.frame()})
    out.ask(client, "02_auth_ok.txt", "04_api_status.txt", "05_api_nosuchcmd.txt",
            "08_api_version.txt", "10_event_plain_custom_sofia_register_reply.txt",
            "30_event_plain_channel_events_reply.txt", "31_event_json_channel_events_reply.txt",
            "100_event_plain_CUSTOM_sofia_register_unregister_expire_reply.txt",
            "124_api_msleep_50.txt")
    client.send(sent("70_exit_disconnect_notice.txt"))
    out.got["70_exit_disconnect_notice.txt"] = client.frame() + client.frame()
    out.checks.append(lambda: _assert(client.at_eof(), "the socket closes after exit"))
    return out


@scenario("03_auth_wrong_password.txt")
def wrong_password(factory: Any) -> Outcome:
    client = Client(lab(factory).port)
    client.frame()
    client.send(sent("03_auth_wrong_password.txt"))
    out = Outcome({"03_auth_wrong_password.txt": client.frame() + client.frame()})
    out.checks.append(lambda: _assert(client.at_eof(), "the socket closes after a wrong password"))
    return out


@scenario("06_api_sofia_status_profile_internal_reg_empty.txt",
          "07_api_sofia_contact_not_registered_1000.txt",
          "14_api_show_registrations_as_json_immediately.txt",
          "11_event_sofia_register_plain.txt", "12_api_sofia_status_profile_internal_reg.txt",
          "13_api_sofia_xmlstatus_profile_internal_reg.txt",
          "14b_api_show_registrations_as_json_after_1500ms.txt",
          "15_api_sofia_contact_registered_1000.txt",
          "16_api_sofia_contact_not_registered_1005.txt",
          "17_api_sofia_contact_nonexistent_user_4242.txt",
          "20_api_sofia_profile_internal_check_sync.txt",
          "21_sendevent_NOTIFY_check_sync_reply.txt", "18_event_sofia_unregister_plain.txt",
          "22_api_sofia_contact_after_unregister_1000.txt",
          "09_api_sofia_profile_internal_check_sync_noarg_purge.txt",
          "19_session_register_monitor_full_rx.txt", "60_sendevent_PRESENCE_IN_reply.txt")
def registrations(factory: Any) -> Outcome:
    """A phone registers, is looked up every way, is synced, unregisters (esl/06-22)."""
    fake = esl_lab(factory)
    monitor = Client(fake.port)
    stream = monitor.frame()
    stream += monitor.ask(sent("02_auth_ok.txt"))
    stream += monitor.ask(sent("10_event_plain_custom_sofia_register_reply.txt"))
    client = Client(fake.port).login()
    out = Outcome()
    out.ask(client, "06_api_sofia_status_profile_internal_reg_empty.txt",
            "07_api_sofia_contact_not_registered_1000.txt",
            "14_api_show_registrations_as_json_immediately.txt")
    register_1000(fake)
    out.got["11_event_sofia_register_plain.txt"] = monitor.frame()
    stream += out.got["11_event_sofia_register_plain.txt"]
    out.ask(client, "12_api_sofia_status_profile_internal_reg.txt",
            "13_api_sofia_xmlstatus_profile_internal_reg.txt",
            "14b_api_show_registrations_as_json_after_1500ms.txt",
            "15_api_sofia_contact_registered_1000.txt",
            "16_api_sofia_contact_not_registered_1005.txt",
            "17_api_sofia_contact_nonexistent_user_4242.txt",
            "20_api_sofia_profile_internal_check_sync.txt",
            "21_sendevent_NOTIFY_check_sync_reply.txt", "60_sendevent_PRESENCE_IN_reply.txt")
    fake.unregister("1000", ESL_REALM)
    out.got["18_event_sofia_unregister_plain.txt"] = monitor.frame()
    stream += out.got["18_event_sofia_unregister_plain.txt"]
    out.got["19_session_register_monitor_full_rx.txt"] = stream
    out.ask(client, "22_api_sofia_contact_after_unregister_1000.txt")
    register_1000(fake, event=False)
    out.ask(client, "09_api_sofia_profile_internal_check_sync_noarg_purge.txt")
    out.checks.append(lambda: _assert(fake.registrations == [],
                                      "check_sync without an argument forgets the registrations"))
    out.checks.append(lambda: _assert(
        fake.sent_events[0][0] == "NOTIFY" and fake.sent_events[1][0] == "PRESENCE_IN",
        "sendevent keeps what was sent"))
    return out


@scenario("32_bgapi_originate_reply.txt", "35_event_CHANNEL_CREATE_plain.txt",
          "36_event_CHANNEL_ANSWER_plain.txt", "33_event_BACKGROUND_JOB_originate_ok_plain.txt",
          "37_api_uuid_kill.txt", "45_event_CHANNEL_CREATE_json.txt",
          "46_event_CHANNEL_ANSWER_json.txt", "34_event_BACKGROUND_JOB_originate_ok_json.txt",
          "38_event_CHANNEL_HANGUP_COMPLETE_plain.txt", "48_event_CHANNEL_HANGUP_COMPLETE_json.txt")
def originate_to_echo(factory: Any) -> Outcome:
    """``bgapi originate {…}user/1000@127.0.0.1 &echo``, seen by a plain and a json listener."""
    fake = esl_lab(factory)
    register_1000(fake, event=False)
    plain = Client(fake.port).login()
    plain.ask(sent("30_event_plain_channel_events_reply.txt"))
    as_json = Client(fake.port).login()
    as_json.ask(sent("31_event_json_channel_events_reply.txt"))
    client = Client(fake.port).login()
    out = Outcome()
    out.ask(client, "32_bgapi_originate_reply.txt")
    for listener, names in ((plain, ("35_event_CHANNEL_CREATE_plain.txt",
                                     "36_event_CHANNEL_ANSWER_plain.txt",
                                     "33_event_BACKGROUND_JOB_originate_ok_plain.txt")),
                            (as_json, ("45_event_CHANNEL_CREATE_json.txt",
                                       "46_event_CHANNEL_ANSWER_json.txt",
                                       "34_event_BACKGROUND_JOB_originate_ok_json.txt"))):
        for name in names:
            out.got[name] = listener.frame()
    (call_uuid,) = fake.channels
    out.got["37_api_uuid_kill.txt"] = client.ask(f"api uuid_kill {call_uuid}")
    out.got["38_event_CHANNEL_HANGUP_COMPLETE_plain.txt"] = plain.frame()
    out.got["48_event_CHANNEL_HANGUP_COMPLETE_json.txt"] = as_json.frame()
    return out


@scenario("50_bgapi_originate_nonexistent_4242_reply.txt",
          "50_bgapi_originate_unknown_domain_reply.txt",
          "50_bgapi_originate_unregistered_1005_reply.txt",
          "51_event_BACKGROUND_JOB_originate_nonexistent_4242_plain.txt",
          "51_event_BACKGROUND_JOB_originate_unknown_domain_plain.txt",
          "51_event_BACKGROUND_JOB_originate_unregistered_1005_plain.txt",
          "52_api_originate_nonexistent_4242.txt", "52_api_originate_unknown_domain.txt",
          "52_api_originate_unregistered_1005.txt")
def originate_failures(factory: Any) -> Outcome:
    """Originates to an unknown user, an unknown domain and a user not registered."""
    fake = esl_lab(factory)
    listener = Client(fake.port).login()
    listener.ask(sent("30_event_plain_channel_events_reply.txt"))
    client = Client(fake.port).login()
    out = Outcome()
    for who in ("nonexistent_4242", "unknown_domain", "unregistered_1005"):
        out.ask(client, f"50_bgapi_originate_{who}_reply.txt", f"52_api_originate_{who}.txt")
        out.got[f"51_event_BACKGROUND_JOB_originate_{who}_plain.txt"] = \
            listener.event("BACKGROUND_JOB")
    return out


@scenario("80_shutdown_client_authed_no_events.txt", "81_shutdown_client_event_plain_ALL.txt",
          "82_shutdown_client_unauthenticated.txt", "83_shutdown_issuer_api_shutdown.txt")
def shutdown(factory: Any) -> Outcome:
    """``api shutdown`` as every kind of connection sees it (the first lab's modules)."""
    fake = lab(factory, shutdown_events=SHUTDOWN_EVENTS_ESL)
    quiet = Client(fake.port).login()
    anonymous = Client(fake.port)
    anonymous.frame()
    everything = Client(fake.port).login()
    everything.ask("event plain ALL")
    issuer = Client(fake.port).login()
    out = Outcome()
    issuer.send(sent("83_shutdown_issuer_api_shutdown.txt"))
    out.got["83_shutdown_issuer_api_shutdown.txt"] = issuer.frame() + issuer.frame()
    out.got["80_shutdown_client_authed_no_events.txt"] = quiet.frame()
    out.got["82_shutdown_client_unauthenticated.txt"] = anonymous.frame()
    out.got["81_shutdown_client_event_plain_ALL.txt"] = _until_closed(everything)
    out.checks.append(lambda: _assert(all(c.at_eof() for c in (quiet, anonymous, issuer)),
                                      "every connection closes"))
    return out


# ------------------------------------------------------------------------------- helpers


def _until_closed(client: Client) -> bytes:
    """Every frame until the peer closes."""
    data = b""
    with gevent.Timeout(5):
        while True:
            try:
                data += client.frame()
            except AssertionError:
                return data


def _assert(condition: bool, what: str) -> None:
    assert condition, what


EXCEPTIONS: dict[str, str] = {
    "143_i2_freeswitch_log.txt": "a FreeSWITCH log extract, not event-socket bytes; what it shows "
    "(the second leg refused as a Duplicate UUID, never rung) is replayed by 138-142",
    "150_i2_freeswitch_log.txt": "a FreeSWITCH log extract, not event-socket bytes; what it shows "
    "(both legs created and hung up) is replayed by 144-149",
    "153_i3_api_show_channels_during.txt": "show channels of the two loopback legs of a "
    "call-forwarded device: the test FreeSWITCH runs neither mod_loopback nor a dialplan "
    "(tests/loopback_legs.py models which leg gets which variable)",
    "156_i3_blf_watcher_alice_notify_bodies.txt": "SIP NOTIFY bodies a BLF watcher received, not "
    "event-socket bytes (tests/loopback_legs.py reproduces their two dialogs per call)",
    "191_i9_lua_script_json.txt": "the probe script the lab ran (its input, not FreeSWITCH's "
    "output); the Lua harness runs it for 190",
    "197_i9_lua_script_pagd.txt": "the probe script the lab ran (its input); the Lua harness runs "
    "the same calls for 196",
}

# The scenarios of the later labs live in modules of their own; importing them registers them.
import conformance_scenarios_calls  # noqa: E402, F401
import conformance_scenarios_http  # noqa: E402, F401
import conformance_scenarios_lua  # noqa: E402, F401
