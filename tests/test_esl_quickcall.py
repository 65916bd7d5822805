"""QuickCall in FreeSWITCH terms (esl_bridge.actions.quickcall) against one or more test
FreeSWITCHes: where each phone rings, the first answer wins, and an originate FreeSWITCH may
have taken without saying so is hung up."""
from __future__ import annotations

import gevent
import pytest
from esl_quickcall_support import REALM, THREE_PHONES, VARS, quickcall

from esl_bridge import commands
from esl_bridge.errors import (
    CommandError,
    CommandTimeout,
    ConnectionLost,
    FreeSwitchUnavailable,
    ReplyTimeout,
    UnsafeValue,
)

# ---------------------------------------------------------------------- QuickCall


def test_quickcall_answered(esl_pool, fake_freeswitch):
    fake_freeswitch.register("2001", REALM, event=False)
    call = quickcall(esl_pool)
    assert call.node == fake_freeswitch.name and call.endpoints == [("2001", REALM)]
    sent = fake_freeswitch.received("bgapi originate")[0]
    assert sent == commands.bgapi(commands.originate(
        call_id=call.call_id, endpoints=[("2001", REALM)], number="9196", context="default",
        cid_name="Bars Test", cid_number="15551112222", variables={**VARS, "esl_bridge_call_id": call.call_id}), call.job_id)
    result = call.wait(2.0)
    assert result.ok and result.value == call.call_id and result.cause is None
    assert call.call_id in fake_freeswitch.channels
    assert call.to_dict() == {
        "call_id": call.call_id, "job_id": call.job_id, "endpoint": "2001@acme.test",
        "number": "9196", "cid_name": "Bars Test", "cid_number": "15551112222", "timeout": 30,
        "auto_answer": True, "node": fake_freeswitch.name}
    assert call.hangup(esl_pool) == "+OK"
    assert fake_freeswitch.channels == {}


@pytest.mark.parametrize("behaviour, registered, cause", [
    (None, False, "USER_NOT_REGISTERED"),
    ("unknown", False, "SUBSCRIBER_ABSENT"),
    ("no_answer", True, "NO_ANSWER"),
    ("busy", True, "USER_BUSY"),
])
def test_quickcall_failures(esl_pool, fake_freeswitch, behaviour, registered, cause):
    if registered:
        fake_freeswitch.register("2001", REALM, event=False)
    if behaviour:
        fake_freeswitch.set_behaviour("2001", REALM, behaviour)
    call = quickcall(esl_pool, timeout=5)
    result = call.wait(5.0)
    assert not result.ok and result.cause == cause


def test_quickcall_refuses_hostile_values_before_any_io(esl_pool, fake_freeswitch):
    before = list(fake_freeswitch.commands)
    for bad in (dict(number="9196 &system(id)"), dict(cid_name="Smith, John"),
                dict(variables={"esl_bridge_request_id": "x\napi system id"}),
                dict(endpoints=[("2001", "acme.test|user/1000@evil")]),
                dict(context="default\n\nexit"), dict(job_id="not-a-uuid")):
        with pytest.raises(UnsafeValue):
            quickcall(esl_pool, **bad)
    assert fake_freeswitch.commands == before


def test_quickcall_without_freeswitch(fake_freeswitch, esl_pool_factory):
    pool = esl_pool_factory([fake_freeswitch])
    fake_freeswitch.stop()
    assert fake_freeswitch.wait_for(lambda: not pool.connected_nodes())
    with pytest.raises(FreeSwitchUnavailable):
        quickcall(pool)


def test_quickcall_runs_where_the_phone_is_registered(fake_freeswitch_factory, esl_pool_factory):
    fs1, fs2 = fake_freeswitch_factory(), fake_freeswitch_factory()
    pool = esl_pool_factory([fs1, fs2])
    fs2.register("2001", REALM, event=False)
    for _ in range(3):
        call = quickcall(pool)
        assert call.node == fs2.name and call.wait(2.0).ok
    assert not fs1.received("bgapi")
    # several endpoints: each rings on its node, the node holding most of them first
    fs1.register("2002", REALM, event=False)
    fs1.register("2003", REALM, event=False)
    call = quickcall(pool, endpoints=THREE_PHONES)
    assert call.node == fs1.name
    assert call.endpoints == [("2002", REALM), ("2003", REALM), ("2001", REALM)]
    assert [(c.node, c.endpoints) for c in call.per_node] == [
        (fs1.name, [("2002", REALM), ("2003", REALM)]), (fs2.name, [("2001", REALM)])]
    parsed = fs1.parse_originate(fs1.received("bgapi")[-1].split("\n")[0].split(" ", 2)[2])
    # the call's uuid on the first leg only (in {} the second leg could not be created)
    assert parsed[1] == [f"[origination_uuid={call.call_id}]user/2002@acme.test",
                         "user/2003@acme.test"]
    assert "origination_uuid" not in dict(parsed[0])
    assert dict(parsed[0])["esl_bridge_call_id"] == call.call_id
    assert "sip_auto_answer" not in dict(parsed[0])  # three phones ring: no auto answer
    alone = fs2.parse_originate(fs2.received("bgapi")[-1].split("\n")[0].split(" ", 2)[2])
    assert alone[1] == ["user/2001@acme.test"] and "sip_auto_answer" not in dict(alone[0])
    assert call.wait(2.0).ok
    # a phone registered nowhere (a call-forwarded one, say) rings from the first node
    call = quickcall(pool, endpoints=[("2001", REALM), ("2002", REALM), ("2003", REALM), ("2009", REALM)])
    assert [(c.node, c.endpoints) for c in call.per_node] == [
        (fs1.name, [("2002", REALM), ("2003", REALM), ("2009", REALM)]), (fs2.name, [("2001", REALM)])]
    # registered nowhere: FreeSWITCH's own answer
    assert quickcall(pool, user="2009").wait(2.0).cause == "USER_NOT_REGISTERED"


CALL_ID = "931a5c0a-60a9-4023-96c3-4731911344e2"


def two_nodes(fake_freeswitch_factory, esl_pool_factory, fs2_kwargs=None, **pool_kwargs):
    """Phones 2001 and 2002 registered on node 1 (so it is asked first), 2003 on node 2."""
    fs1, fs2 = fake_freeswitch_factory(), fake_freeswitch_factory(**(fs2_kwargs or {}))
    pool = esl_pool_factory([fs1, fs2], **pool_kwargs)
    for user in ("2001", "2002"):
        fs1.register(user, REALM, event=False)
    fs2.register("2003", REALM, event=False)
    return fs1, fs2, pool


def test_a_node_that_cannot_take_its_originate_is_skipped(fake_freeswitch_factory, esl_pool_factory):
    fs1, fs2, pool = two_nodes(fake_freeswitch_factory, esl_pool_factory)
    fs1.close_on("bgapi", times=1)  # the node holding most drops the connection instead
    call = quickcall(pool, endpoints=THREE_PHONES,
                     call_id=CALL_ID)
    # only 2003 rings; the dropped originate may have been taken before the connection died,
    # so its ids are not reused and whatever it started is hung up
    assert (call.node, call.endpoints) == (fs2.name, [("2003", REALM)])
    assert call.call_id != CALL_ID and call.per_node == []
    assert call.wait(2.0).ok
    assert fs1.wait_for(lambda: fs1.received("api hupall") == [
        f"api hupall ORIGINATOR_CANCEL esl_bridge_call_id {CALL_ID}"])


def test_a_refused_originate_leaves_its_ids_to_the_next_node(fake_freeswitch_factory,
                                                             esl_pool_factory, monkeypatch):
    fs1, fs2, pool = two_nodes(fake_freeswitch_factory, esl_pool_factory)
    real_bgapi = pool.bgapi

    def bgapi(text, *, node=None, **kwargs):
        if node == fs1.name:
            raise CommandError("bgapi refused: -ERR no", node, "-ERR no")
        return real_bgapi(text, node=node, **kwargs)

    monkeypatch.setattr(pool, "bgapi", bgapi)
    call = quickcall(pool, endpoints=THREE_PHONES,
                     call_id=CALL_ID)
    # the call's own ids go to the first originate FreeSWITCH took
    assert (call.node, call.call_id, call.endpoints) == (fs2.name, CALL_ID, [("2003", REALM)])
    assert call.wait(2.0).ok
    assert fs1.received("api hupall") == []


@pytest.mark.parametrize("behaviour, hangups", [("answer", 2), ("busy", 1)])
def test_a_quickcall_whose_bgapi_reply_is_late_is_cancelled(
        fake_freeswitch, esl_pool_factory, behaviour, hangups):
    """The caller is told it failed (→ 503), so whatever FreeSWITCH started all the same must
    not ring, nor dial the number once answered: hung up at once, and again on a late answer."""
    pool = esl_pool_factory([fake_freeswitch], command_timeout=0.2)
    fake_freeswitch.register("2001", REALM, event=False)
    fake_freeswitch.set_behaviour("2001", REALM, behaviour)
    fake_freeswitch.slow("bgapi", 0.5, times=1)  # the job runs once the reply is written
    with pytest.raises(ReplyTimeout):
        quickcall(pool, call_id=CALL_ID)
    hupall = f"api hupall ORIGINATOR_CANCEL esl_bridge_call_id {CALL_ID}"
    assert fake_freeswitch.wait_for(lambda: hupall in fake_freeswitch.received("api hupall"))
    # the job reports (answered, or busy) to the waiter the pool kept for it
    assert fake_freeswitch.wait_for(lambda: pool.jobs.counts()["pending"] == 0, timeout=5)
    if hangups == 2:
        assert fake_freeswitch.wait_for(
            lambda: fake_freeswitch.received("api hupall") == [hupall, hupall])
    else:
        gevent.sleep(0.2)
        assert fake_freeswitch.received("api hupall") == [hupall]
    assert fake_freeswitch.wait_for(lambda: not fake_freeswitch.channels)


def test_an_originate_that_timed_out_shares_no_id_with_the_next_node(
        fake_freeswitch_factory, esl_pool_factory):
    """Node 1 (two phones, so asked first) replies late and its phones are busy; node 2's phone
    answers later. Node 2's originate has ids of its own, so node 1's late result settles
    nothing of it: the call is node 2's answer."""
    fs1, fs2, pool = two_nodes(fake_freeswitch_factory, esl_pool_factory,
                               {"answer_delay": 0.8}, command_timeout=0.2)
    for user in ("2001", "2002"):
        fs1.set_behaviour(user, REALM, "busy")
    fs1.slow("bgapi", 0.4, times=1)
    call = quickcall(pool, endpoints=THREE_PHONES,
                     call_id=CALL_ID)
    [on_fs1], [on_fs2] = fs1.received("bgapi originate"), fs2.received("bgapi originate")
    ids = [(line.split("origination_uuid=", 1)[1][:36], line.rsplit("Job-UUID: ", 1)[1])
           for line in (on_fs1, on_fs2)]
    assert ids[0][0] == CALL_ID and ids[1][0] != CALL_ID and ids[0][1] != ids[1][1]
    assert (call.node, call.call_id) == (fs2.name, ids[1][0])
    result = call.wait(5.0)
    assert result.ok and result.value == call.call_id


def _job_starts_late(fake, delay: float) -> None:
    """FreeSWITCH takes each bgapi but starts its job ``delay`` seconds later (as while it looks
    up a directory entry), so a hang-up sent at once finds nothing to hang up yet."""
    real = fake._bgapi

    def bgapi(conn, command, headers):
        reply, after = real(conn, command, headers)
        if after is not None:
            gevent.spawn_later(delay, after)
        return reply, None

    fake._bgapi = bgapi  # this fake only: it is stopped after the test


def test_an_originate_whose_connection_died_is_cancelled(fake_freeswitch, esl_pool_factory):
    """The connection dies with half the bgapi reply written: the caller gets ConnectionLost
    (503) and whatever FreeSWITCH started is hung up, also when it answers after the first
    hang-up (its job still reports on the event connection)."""
    pool = esl_pool_factory([fake_freeswitch])
    fake_freeswitch.register("2001", REALM, event=False)
    _job_starts_late(fake_freeswitch, 0.3)
    fake_freeswitch.drop_mid_reply("bgapi", times=1)
    with pytest.raises(ConnectionLost):
        quickcall(pool, call_id=CALL_ID)
    hupall = f"api hupall ORIGINATOR_CANCEL esl_bridge_call_id {CALL_ID}"
    assert fake_freeswitch.wait_for(
        lambda: fake_freeswitch.received("api hupall") == [hupall, hupall], timeout=5.0)
    assert fake_freeswitch.wait_for(lambda: not fake_freeswitch.channels)
    assert pool.jobs.counts()["pending"] == 0


def test_a_node_whose_connection_died_does_not_answer_beside_the_winner(
        fake_freeswitch_factory, esl_pool_factory):
    fs1, fs2, pool = two_nodes(fake_freeswitch_factory, esl_pool_factory, {"answer_delay": 0.6})
    _job_starts_late(fs1, 0.3)
    fs1.drop_mid_reply("bgapi", times=1)
    call = quickcall(pool, endpoints=THREE_PHONES,
                     call_id=CALL_ID)
    assert call.node == fs2.name and call.wait(3.0).ok
    assert fs1.wait_for(lambda: not fs1.channels, timeout=5.0)  # one answered call, not two
    assert list(fs2.channels) == [call.call_id]


def test_a_timed_out_originate_that_never_reports_is_hung_up_after_its_ring_time(
        fake_freeswitch, esl_pool_factory, monkeypatch):
    from esl_bridge import quickcall as quickcall_module

    monkeypatch.setattr(quickcall_module, "QUICKCALL_WAIT_SLACK", 0.2)
    pool = esl_pool_factory([fake_freeswitch], command_timeout=0.2)
    fake_freeswitch.register("2001", REALM, event=False)
    fake_freeswitch.set_behaviour("2001", REALM, "hang")  # rings, and its job never reports
    fake_freeswitch.slow("bgapi", 0.4, times=1)
    with pytest.raises(ReplyTimeout):
        quickcall(pool, call_id=CALL_ID, timeout=1)
    hupall = f"api hupall ORIGINATOR_CANCEL esl_bridge_call_id {CALL_ID}"
    assert fake_freeswitch.wait_for(lambda: fake_freeswitch.channels)  # ringing after all
    assert fake_freeswitch.wait_for(
        lambda: fake_freeswitch.received("api hupall") == [hupall, hupall], timeout=5.0)
    assert fake_freeswitch.wait_for(lambda: not fake_freeswitch.channels)
    assert pool.jobs.counts()["pending"] == 0


@pytest.mark.parametrize("error", [CommandError("-ERR refused", None, "-ERR refused"),
                                   CommandTimeout("all connections stayed busy", None),
                                   ReplyTimeout("no reply", None)])
def test_a_later_node_failing_its_originate_leaves_the_others_supervised(
        fake_freeswitch_factory, esl_pool_factory, monkeypatch, error):
    fs1, fs2, pool = two_nodes(fake_freeswitch_factory, esl_pool_factory)
    real_bgapi = pool.bgapi
    taken: list[str] = []

    def bgapi(text, *, node=None, **kwargs):
        if node == fs2.name:
            taken.append(text.split("esl_bridge_call_id=", 1)[1].split("}", 1)[0])
            exc = type(error)(*error.args)
            if isinstance(exc, ReplyTimeout):  # written, unanswered: the pool keeps its job
                exc.job = pool.jobs.register(kwargs["job_uuid"], fs2.name, "originate")
            raise exc
        return real_bgapi(text, node=node, **kwargs)

    monkeypatch.setattr(pool, "bgapi", bgapi)
    call = quickcall(pool, endpoints=THREE_PHONES)
    # node 1's phones ring and are waited for as usual; node 2's failure is not the caller's
    assert (call.node, call.endpoints) == (fs1.name, [("2001", REALM), ("2002", REALM)])
    assert call.wait(2.0).ok
    hung_up = f"api hupall ORIGINATOR_CANCEL esl_bridge_call_id {taken[0]}"
    if isinstance(error, ReplyTimeout):
        # it may have started all the same: whatever rings there is hung up
        assert fs2.wait_for(lambda: hung_up in fs2.received("api hupall"))
    else:
        assert fs2.received("api hupall") == []
