"""Fixtures around the test FreeSWITCH (owned by the ESL side).

- ``fake_freeswitch``: one started ``FakeFreeSwitch`` (switchname ``fs1``), stopped after the test.
- ``fake_freeswitch_factory(**kwargs)``: more nodes (switchnames ``fs1``, ``fs2``...), all
  stopped after the test. Keyword arguments go to ``FakeFreeSwitch``.
- ``esl_pool_factory(fakes, wait=True, **kwargs)``: an ``EslPool`` over fakes (or node strings)
  with test-sized timeouts (``FAST_POOL``), started and, by default, fully connected; stopped
  after the test.
- ``esl_pool``: a pool over ``fake_freeswitch``.
- Every test that uses a fake or a pool is checked for leaked greenlets: their live count is
  taken before the fakes and pools start and, at teardown once they have stopped, more greenlets
  alive than before fails the test. ``greenlet_leak_check`` gives access to that check:
  ``.mark_steady()`` / ``.assert_steady()`` compare with a running pool's steady state (after a
  fault and its recovery).

See ``tests/fake_freeswitch/`` for registering users, faults and what the fake records.
"""
from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterator

import gevent
import greenlet
import pytest
from fake_freeswitch import FakeFreeSwitch

from esl_bridge import EslPool

#: Pool settings for tests: fractions of a second, so that fault tests stay fast.
FAST_POOL = {
    "pool_size": 2,
    "command_timeout": 1.0,
    "connect_timeout": 0.5,
    "reconnect_base": 0.01,
    "reconnect_max": 0.1,
}


#: Every ``gevent.Greenlet`` that has run, seen by a switch trace: far cheaper than scanning
#: ``gc.get_objects()`` (a scan of the test process's heap cost tens of milliseconds, twice
#: per test). A greenlet runs, and so is seen, at its first switch; ``settle`` yields first
#: so that one spawned but not yet run is counted too.
_seen: weakref.WeakSet[gevent.Greenlet] = weakref.WeakSet()


def _trace(event: str, args: tuple[greenlet.greenlet, greenlet.greenlet]) -> None:
    if event == "switch" or event == "throw":
        target = args[1]
        if isinstance(target, gevent.Greenlet):
            _seen.add(target)
    if _previous_trace is not None:
        _previous_trace(event, args)


_previous_trace = greenlet.settrace(_trace)


def live_greenlets() -> list[gevent.Greenlet]:
    """Every ``gevent.Greenlet`` that has run and is not dead."""
    return [found for found in list(_seen) if not found.dead]


def settle(expected: int, timeout: float = 2.0) -> int:
    """Wait (yielding) until at most ``expected`` greenlets are alive; return the count."""
    deadline = time.monotonic() + timeout
    gevent.sleep(0)
    while True:
        count = len(live_greenlets())
        if count <= expected or time.monotonic() >= deadline:
            return count
        gevent.sleep(0.01)


class GreenletLeakCheck:
    """Live-greenlet counts: the baseline at setup, and checks against it or a steady state.

    ``enabled`` (the default) makes the teardown check the baseline."""

    def __init__(self) -> None:
        gevent.sleep(0)
        self.baseline = len(live_greenlets())
        self.steady: int | None = None
        self.enabled = True

    def mark_steady(self) -> int:
        """Remember the count now (a pool and its fakes up and idle) as the steady state."""
        gevent.sleep(0.02)
        self.steady = len(live_greenlets())
        return self.steady

    def assert_steady(self, timeout: float = 2.0) -> None:
        """After a fault and recovery: no more greenlets than in the marked steady state."""
        assert self.steady is not None, "call mark_steady() first"
        count = settle(self.steady, timeout)
        assert count <= self.steady, self._report(count, self.steady)

    def assert_no_leak(self, timeout: float = 2.0) -> None:
        """After everything stopped: no more greenlets than before the test."""
        count = settle(self.baseline, timeout)
        assert count <= self.baseline, self._report(count, self.baseline)

    @staticmethod
    def _report(count: int, expected: int) -> str:
        names = sorted(repr(g)[:120] for g in live_greenlets())
        return f"{count} live greenlets, expected at most {expected}:\n" + "\n".join(names)


@pytest.fixture
def _greenlet_tracker() -> Iterator[GreenletLeakCheck]:
    # Set up before (and so torn down after) the fakes and pools that depend on it, so that the
    # final count is taken once they have all stopped, whatever order a test lists fixtures in.
    check = GreenletLeakCheck()
    yield check
    if check.enabled:
        check.assert_no_leak()


@pytest.fixture
def greenlet_leak_check(_greenlet_tracker: GreenletLeakCheck) -> GreenletLeakCheck:
    _greenlet_tracker.enabled = True
    return _greenlet_tracker


@pytest.fixture
def fake_freeswitch_factory(_greenlet_tracker: GreenletLeakCheck
                            ) -> Iterator[Callable[..., FakeFreeSwitch]]:
    made: list[FakeFreeSwitch] = []

    def make(**kwargs: object) -> FakeFreeSwitch:
        kwargs.setdefault("switchname", f"fs{len(made) + 1}")
        fake = FakeFreeSwitch(**kwargs).start()  # type: ignore[arg-type]
        made.append(fake)
        return fake

    yield make
    for fake in made:
        fake.stop(notice=False)


@pytest.fixture
def fake_freeswitch(fake_freeswitch_factory: Callable[..., FakeFreeSwitch]) -> FakeFreeSwitch:
    return fake_freeswitch_factory()


@pytest.fixture
def esl_pool_factory(_greenlet_tracker: GreenletLeakCheck) -> Iterator[Callable[..., EslPool]]:
    pools: list[EslPool] = []

    def make(fakes: list[FakeFreeSwitch | str], *, wait: bool = True,
             **kwargs: object) -> EslPool:
        nodes = [fake if isinstance(fake, str) else fake.node for fake in fakes]
        pool = EslPool(nodes, **{**FAST_POOL, **kwargs}).start()  # type: ignore[arg-type]
        pools.append(pool)
        if wait:
            assert pool.wait_connected(5.0), pool.health()
        return pool

    yield make
    for pool in pools:
        pool.stop()


@pytest.fixture
def esl_pool(fake_freeswitch: FakeFreeSwitch, esl_pool_factory: Callable[..., EslPool]
             ) -> EslPool:
    return esl_pool_factory([fake_freeswitch])
