"""bgapi jobs through the pool: each result matched to its own Job-UUID, waiters registered
before the command is sent, and released when their result can no longer come."""
from __future__ import annotations

import uuid

import pytest

from esl_bridge.errors import (
    ConnectionLost,
    JobTimeout,
    NotConnected,
)

# ---------------------------------------------------------------------- jobs


def test_bgapi_uses_our_job_uuid(esl_pool, fake_freeswitch):
    job_id = str(uuid.uuid4())
    job = esl_pool.bgapi("status", job_uuid=job_id)
    assert job.job_id == job_id and job.node == fake_freeswitch.name
    result = job.wait(2.0)
    assert result.ok and result.cause is None and result.body.startswith("UP 0 years")
    assert fake_freeswitch.received("bgapi") == [f"bgapi status\nJob-UUID: {job_id}"]
    assert esl_pool.metrics()["jobs"]["completed"] == 1


def test_job_result_before_the_reply(esl_pool, fake_freeswitch):
    fake_freeswitch.job_event_before_reply = True
    job = esl_pool.bgapi("version")
    assert job.ready()  # resolved before bgapi even returned: the waiter was registered first
    assert job.wait(0).body.startswith("FreeSWITCH Version")


def test_job_failure_cause(esl_pool):
    result = esl_pool.bgapi("originate user/2001@acme.test &echo").wait(2.0)
    assert not result.ok and result.cause == "USER_NOT_REGISTERED"
    with pytest.raises(Exception) as info:
        result.raise_for_cause()
    assert info.value.cause == "USER_NOT_REGISTERED"


def test_job_timeout_and_lost_event_connection(esl_pool, fake_freeswitch, greenlet_leak_check):
    fake_freeswitch.register("2001", "acme.test", event=False)
    fake_freeswitch.set_behaviour("2001", "acme.test", "hang")
    job = esl_pool.bgapi("originate user/2001@acme.test &echo")
    with pytest.raises(JobTimeout):
        job.wait(0.1)
    assert not job.ready()
    for conn in fake_freeswitch.event_connections():
        conn.close()
    with pytest.raises(ConnectionLost) as info:
        job.wait(2.0)
    assert "event connection lost" in str(info.value)
    assert esl_pool.metrics()["jobs"]["lost"] == 1
    assert esl_pool.wait_connected(5.0)


def test_bgapi_needs_the_event_connection(fake_freeswitch, esl_pool_factory):
    pool = esl_pool_factory([fake_freeswitch])
    fake_freeswitch.refuse_connections()
    for conn in fake_freeswitch.event_connections():
        conn.close()
    assert fake_freeswitch.wait_for(
        lambda: not pool.health()[fake_freeswitch.name]["event_connection"])
    with pytest.raises(NotConnected) as info:
        pool.bgapi("status")
    assert "event connection" in str(info.value)
    assert pool.api("status").startswith("UP")


def test_an_unanswered_event_subscription_is_retried(fake_freeswitch, esl_pool_factory,
                                                      greenlet_leak_check):
    """FreeSWITCH takes the event connection but never answers its subscription: that
    connection times out and is replaced; meanwhile commands work and jobs are refused (their
    result could not be seen); once it answers, jobs work."""
    fake_freeswitch.hang("event", times=2)
    pool = esl_pool_factory([fake_freeswitch], wait=False, command_timeout=0.3)
    assert fake_freeswitch.wait_for(lambda: pool.health()[fake_freeswitch.name]["connected"])
    assert pool.api("status").startswith("UP")
    with pytest.raises(NotConnected) as info:
        pool.bgapi("status")
    assert "event connection" in str(info.value)
    assert fake_freeswitch.wait_for(
        lambda: pool.health()[fake_freeswitch.name]["event_connection"], timeout=5.0)
    assert len(fake_freeswitch.received("event plain")) == 3  # two unanswered, one answered
    assert pool.bgapi("status").wait(2.0).ok
    assert pool.health()[fake_freeswitch.name]["connect_failures"] >= 2


def test_forgotten_jobs_expire(fake_freeswitch, esl_pool_factory):
    pool = esl_pool_factory([fake_freeswitch], job_ttl=0.2)
    fake_freeswitch.register("2001", "acme.test", event=False)
    fake_freeswitch.set_behaviour("2001", "acme.test", "hang")
    job = pool.bgapi("originate user/2001@acme.test &echo")
    with pytest.raises(JobTimeout) as info:
        job.wait(5.0)
    assert "expired" in str(info.value)
    assert pool.metrics()["jobs"] == {"pending": 0, "completed": 0, "failed": 0, "lost": 0,
                                      "expired": 1}


def test_event_listeners(esl_pool, fake_freeswitch):
    seen = []
    esl_pool.add_event_listener(lambda node, event: seen.append((node, event.subclass)))
    esl_pool.add_event_listener(lambda node, event: 1 / 0)  # a failing listener is logged
    fake_freeswitch.register("2001", "acme.test")
    assert fake_freeswitch.wait_for(lambda: seen)
    assert seen == [(fake_freeswitch.name, "sofia::register")]
    assert esl_pool.api("status").startswith("UP")
