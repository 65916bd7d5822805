"""The greenlet-leak check every FreeSWITCH and pool test relies on must itself see leaks."""
from __future__ import annotations

import gevent
import pytest
from fixtures_freeswitch import GreenletLeakCheck


def test_a_greenlet_left_waiting_is_a_leak() -> None:
    check = GreenletLeakCheck()
    stuck = gevent.spawn(gevent.sleep, 30)
    gevent.sleep(0)
    with pytest.raises(AssertionError, match="live greenlets"):
        check.assert_no_leak(timeout=0.05)
    stuck.kill()
    check.assert_no_leak()


def test_a_greenlet_spawned_but_not_yet_run_is_a_leak() -> None:
    check = GreenletLeakCheck()
    stuck = gevent.spawn(gevent.sleep, 30)  # not run yet: no switch has happened
    with pytest.raises(AssertionError):
        check.assert_no_leak(timeout=0.05)
    stuck.kill()
    check.assert_no_leak()
