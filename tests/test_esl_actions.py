"""The actions in FreeSWITCH terms (esl_bridge.actions) against one or more test FreeSWITCHes."""
from __future__ import annotations

import logging

import pytest
from esl_quickcall_support import REALM, quickcall

from esl_bridge import actions, commands
from esl_bridge.errors import (
    FreeSwitchUnavailable,
    NotConnected,
    UnsafeValue,
)

# ---------------------------------------------------------------------- check-sync


def test_check_sync_goes_to_the_registrations_node_and_profile(
        fake_freeswitch_factory, esl_pool_factory):
    fs1, fs2 = fake_freeswitch_factory(), fake_freeswitch_factory()
    pool = esl_pool_factory([fs1, fs2])
    fs2.register("2001", REALM, profile="external")  # a profile learnt from the event
    assert fs2.wait_for(lambda: pool.registrations.lookup("2001", REALM))
    assert actions.check_sync(pool, "2001", REALM, "check-sync;reboot=false") == [fs2.name]
    assert fs2.sent_events == [("NOTIFY", {
        "profile": "external", "event-string": "check-sync;reboot=false", "user": "2001",
        "host": REALM, "content-type": "application/simple-message-summary"})]
    assert fs1.sent_events == []
    # the profile was asked with xmlstatus, not trusted from the cache alone
    assert "api sofia xmlstatus profile external user 2001@acme.test" in fs2.commands


def test_check_sync_of_an_unregistered_phone_sends_nothing(esl_pool, fake_freeswitch, caplog):
    caplog.set_level(logging.INFO, logger="esl_bridge")
    assert actions.check_sync(esl_pool, "2001", REALM) == []
    assert fake_freeswitch.sent_events == []
    assert "not registered" in caplog.text


def test_check_sync_refuses_a_hostile_event_string(esl_pool, fake_freeswitch):
    fake_freeswitch.register("2001", REALM, event=False)
    with pytest.raises(UnsafeValue):
        actions.check_sync(esl_pool, "2001", REALM, "check-sync\ncontent-length: 5")
    assert fake_freeswitch.sent_events == []


# ---------------------------------------------------------------------- presence


def test_presence_of_several_ids_skips_a_hung_node_after_its_first_failure(
        fake_freeswitch_factory, esl_pool_factory):
    fs1, fs2 = fake_freeswitch_factory(), fake_freeswitch_factory()
    pool = esl_pool_factory([fs1, fs2], command_timeout=0.3)
    fs2.hang("sendevent")
    ids = ["2001@acme.test", "2002@acme.test", "2003@acme.test"]
    assert actions.presence_many(pool, ids) == {pid: [fs1.name] for pid in ids}
    assert [h["from"] for name, h in fs1.sent_events] == ids
    # the hung node was asked once, not once per id (each would have cost a timeout)
    assert len(fs2.received("sendevent")) == 1
    fs2.clear_faults()
    assert actions.presence_many(pool, ids[:1], "early") == {ids[0]: [fs1.name, fs2.name]}
    with pytest.raises(UnsafeValue):
        actions.presence_many(pool, ["ok@acme.test", "bad,id@acme.test"])
    assert len(fs1.sent_events) == 4  # the refused batch sent nothing


def test_presence_reset_and_set_go_to_every_node(fake_freeswitch_factory, esl_pool_factory):
    fs1, fs2 = fake_freeswitch_factory(), fake_freeswitch_factory()
    pool = esl_pool_factory([fs1, fs2])
    assert actions.presence_reset(pool, "alice-static", realm=REALM) == [fs1.name, fs2.name]
    expected = ("sendevent PRESENCE_IN\n" + commands.presence_reset("alice-static@acme.test")
                .split("\n", 1)[1])
    assert fs1.received("sendevent") == [expected] == fs2.received("sendevent")
    assert actions.presence_set(pool, "alice-static@acme.test", "early") == [fs1.name, fs2.name]
    name, headers = fs2.sent_events[-1]
    assert name == "PRESENCE_IN" and headers["answer-state"] == "early"
    assert headers["unique-id"] == commands.presence_dialog_id("alice-static@acme.test")
    # one node down: skipped and logged; the other still gets it
    fs1.stop()
    assert fs2.wait_for(lambda: pool.connected_nodes() == [fs2.name])
    assert actions.presence_reset(pool, "bob@acme.test") == [fs2.name]
    fs2.stop()
    assert fs2.wait_for(lambda: not pool.connected_nodes())
    with pytest.raises(FreeSwitchUnavailable):
        actions.presence_reset(pool, "bob@acme.test")
    with pytest.raises(UnsafeValue):
        actions.presence_reset(pool, "bob")  # no realm: nothing would be sent by FreeSWITCH


# ---------------------------------------------------------------------- registrations


def test_registered_and_registrations_across_nodes(fake_freeswitch_factory, esl_pool_factory):
    fs1, fs2 = fake_freeswitch_factory(), fake_freeswitch_factory()
    pool = esl_pool_factory([fs1, fs2], command_timeout=0.3)
    fs1.register("2001", REALM, event=False, call_id="c1")
    fs2.register("2001", REALM, event=False, call_id="c2")
    fs2.register("2002", REALM, event=False)
    fs2.register("2002", "other.test", event=False)
    found = actions.registered(pool, "2001", REALM)
    assert {(r.node, r.call_id, r.host) for r in found} == {
        (fs1.name, "c1", "fs1"), (fs2.name, "c2", "fs2")}
    assert [r.node for r in found] == [fs1.name, fs2.name]  # in configuration order
    assert all(r.profile == "internal" and r.contact.startswith('"" <sip:2001@') for r in found)
    listing = actions.registrations(pool, REALM)
    assert sorted((r.user, r.host) for r in listing) == [
        ("2001", "fs1"), ("2001", "fs2"), ("2002", "fs2")]
    # a node that hangs is skipped (and logged); the listing says what it knows
    fs1.hang("api sofia xmlstatus")
    assert sorted(r.user for r in actions.registrations(pool, REALM)) == ["2001", "2002"]
    fs2.hang("api sofia xmlstatus")
    with pytest.raises(FreeSwitchUnavailable) as info:
        actions.registrations(pool, REALM)
    assert info.value.node is None
    assert actions.registered(pool, "2001", REALM, cached=True)  # the cache still answers


# A phone's Call-ID may hold tags (RFC 3261 allows <, > and /) and xmlstatus writes it as it is.
FORGING_CALL_ID = "x</call-id></registration><registration><user>2001@acme.test</user><agent>"


# Only LF ends a line of xmlstatus: other line breaks in a value must not start a new field.
BREAKING_CALL_IDS = [f"y{brk}        <user>2001@acme.test</user>{brk}z"
                     for brk in ("\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\r")]


@pytest.mark.parametrize("call_id", [FORGING_CALL_ID, "a&amp;b<c>", "plain@10.0.0.1",
                                     *BREAKING_CALL_IDS])
def test_xmlstatus_values_cannot_forge_another_registration(esl_pool, fake_freeswitch, call_id):
    """Only 2002 is registered: however its Call-ID and user agent read, nothing makes 2001 look
    registered, and every value comes back as the phone sent it."""
    agent = "Phone </agent><user>2001@acme.test</user> & 'co'"
    fake_freeswitch.register("2002", REALM, event=False, call_id=call_id, user_agent=agent)
    assert actions.registered(esl_pool, "2001", REALM) == []
    [reg] = actions.registrations(esl_pool, REALM)
    assert (reg.user, reg.realm, reg.call_id, reg.agent) == ("2002", REALM, call_id, agent)
    [mine] = actions.registered(esl_pool, "2002", REALM)
    assert mine.call_id == call_id and mine.contact.startswith('"" <sip:2002@')


def test_registrations_when_the_only_node_is_down(fake_freeswitch, esl_pool_factory):
    pool = esl_pool_factory([fake_freeswitch])
    fake_freeswitch.stop()
    assert fake_freeswitch.wait_for(lambda: not pool.connected_nodes())
    with pytest.raises(NotConnected) as info:
        actions.registrations(pool, REALM)
    assert info.value.node == fake_freeswitch.name


ACTIONS = {
    "quickcall": lambda pool: quickcall(pool),
    "check_sync": lambda pool: actions.check_sync(pool, "2001", REALM),
    "presence_reset": lambda pool: actions.presence_reset(pool, "2001@acme.test"),
    "presence_set": lambda pool: actions.presence_set(pool, "2001@acme.test", "early"),
    "registered": lambda pool: actions.registered(pool, "2001", REALM),
    "registrations": lambda pool: actions.registrations(pool, REALM),
    "flush_directory_cache": lambda pool: actions.flush_directory_cache(pool, "2001", REALM),
    "retire_registration": lambda pool: actions.retire_registration(pool, "2001", REALM),
    "hangup": lambda pool: actions.hangup(pool, "931a5c0a-60a9-4023-96c3-4731911344e2",
                                          node=pool.node_names()[0]),
}


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_unavailable_names_the_only_node(action, fake_freeswitch_factory, esl_pool_factory,
                                         monkeypatch):
    # A FreeSwitchUnavailable raised where no node had been chosen yet carries node=None (as
    # the pool's pick among connected nodes did); with one node configured, the actions name
    # it, so that the web's 503 does not say "all". With several, None stays.
    fs1, fs2 = fake_freeswitch_factory(), fake_freeswitch_factory()
    one, two = esl_pool_factory([fs1]), esl_pool_factory([fs1, fs2])
    for pool in (one, two):
        def unnamed(*args, **kwargs):
            raise NotConnected("no FreeSWITCH node is connected")

        monkeypatch.setattr(pool, "execute", unnamed)
    with pytest.raises(FreeSwitchUnavailable) as info:
        ACTIONS[action](one)
    assert info.value.node == fs1.name and f"(node {fs1.name})" in str(info.value)
    if action != "hangup":  # with two nodes, several failed: no single node to name
        with pytest.raises(FreeSwitchUnavailable) as info:
            ACTIONS[action](two)
        assert info.value.node is None


def test_the_cache_follows_register_unregister_expire_events(esl_pool, fake_freeswitch):
    fake_freeswitch.register("2001", REALM, profile="internal", call_id="a")
    fake_freeswitch.register("2002", REALM, profile="internal")
    assert fake_freeswitch.wait_for(lambda: len(esl_pool.registrations.realm(REALM)) == 2)
    reg = esl_pool.registrations.lookup("2001", REALM)[0]
    assert (reg.node, reg.profile, reg.host, reg.call_id, reg.source) == (
        fake_freeswitch.name, "internal", "fs1", "a", "event")
    fake_freeswitch.unregister("2001", REALM)
    assert fake_freeswitch.wait_for(lambda: not esl_pool.registrations.lookup("2001", REALM))
    fake_freeswitch.expire("2002", REALM)
    assert fake_freeswitch.wait_for(lambda: not esl_pool.registrations.realm(REALM))
    assert esl_pool.registrations.events == 4


def test_the_cache_is_refreshed_in_full(fake_freeswitch, esl_pool_factory):
    fake_freeswitch.register("2001", REALM, event=False)  # registered before we connected
    pool = esl_pool_factory([fake_freeswitch], registration_refresh=0.05)
    assert fake_freeswitch.wait_for(lambda: pool.registrations.lookup("2001", REALM))
    fake_freeswitch.register("2002", REALM, event=False)  # its event was missed
    fake_freeswitch.expire("2001", REALM, event=False)
    assert fake_freeswitch.wait_for(
        lambda: [r.user for r in pool.registrations.realm(REALM)] == ["2002"])
    assert fake_freeswitch.received("api sofia xmlstatus profile internal reg")


# ---------------------------------------------------------------------- SPEC 6.5


def test_flush_directory_cache_on_every_node(fake_freeswitch_factory, esl_pool_factory):
    fs1, fs2 = fake_freeswitch_factory(), fake_freeswitch_factory()
    pool = esl_pool_factory([fs1, fs2])
    fs2.register("2001", REALM, event=False)
    assert actions.flush_directory_cache(pool, "2001", REALM) == [fs1.name, fs2.name]
    assert fs1.received("api xml_flush_cache") == ["api xml_flush_cache id 2001 acme.test"]
    assert fs2.received("api xml_flush_cache") == ["api xml_flush_cache id 2001 acme.test"]
    assert fs2.directory_cache == set()


def test_retire_registration(fake_freeswitch_factory, esl_pool_factory):
    fs1, fs2 = fake_freeswitch_factory(), fake_freeswitch_factory()
    pool = esl_pool_factory([fs1, fs2])
    fs2.register("2001", REALM)
    assert fs2.wait_for(lambda: pool.registrations.lookup("2001", REALM))
    assert actions.retire_registration(pool, "2001", REALM, "check-sync;reboot=false") == \
        [fs2.name]
    notify = commands.check_sync_notify(profile="internal", user="2001", realm=REALM,
                                        event_string="check-sync;reboot=false")
    sent = [c for c in fs2.commands if c.startswith(("sendevent", "api sofia profile"))]
    assert sent == [notify, "api sofia profile internal flush_inbound_reg 2001@acme.test"]
    assert fs2.registrations == [] and not fs1.sent_events
    assert not pool.registrations.lookup("2001", REALM)
    assert actions.retire_registration(pool, "2001", REALM) == []
