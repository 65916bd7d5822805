"""The test FreeSWITCH replays the recordings of a real one, and agrees with them.

Every recording of ``tests/data/freeswitch/esl*/`` is either replayed here (the ``.sent`` bytes go
to the test FreeSWITCH, set up as the lab was, and its answer is compared with the recorded bytes
by ``conformance.compare``: only uuids, clock values, per-call identifiers and the values a
scenario names may differ) or listed in ``EXCEPTIONS`` with the reason. The recorded requests of
``tests/data/xml_curl3/`` that the test FreeSWITCH makes itself (directory lookups, mod_curl) are
compared too. ``test_every_recording_is_replayed_or_excused`` prints the figure; run this module
with ``python tests/test_freeswitch_conformance.py`` to print it with the list of exceptions.
"""
from __future__ import annotations

from collections.abc import Callable

import pytest
from conformance import XML_CURL3, compare, rec, recordings
from conformance_scenarios import EXCEPTIONS, SCENARIOS, Outcome


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_scenario_agrees_with_the_recordings(scenario: Callable[..., Outcome],
                                              fake_freeswitch_factory) -> None:
    outcome = scenario(fake_freeswitch_factory)
    assert outcome.got or outcome.checks, "the scenario replayed nothing"
    for name, written in outcome.got.items():
        compare(rec(name), written, outcome.allowed | outcome.allowed_for.get(name, set()),
                where=name)
    for check in outcome.checks:
        check()


def covered() -> set[str]:
    return {name for scenario in SCENARIOS for name in scenario.covers}


def report() -> str:
    every = recordings()
    requests = sorted(p.name for p in XML_CURL3.glob("*.txt") if not p.name.endswith(".decoded.txt"))
    checked = {name for scenario in SCENARIOS for name in scenario.http}
    lines = [f"conformance: {len(covered())} of {len(every)} recordings of a real FreeSWITCH "
             f"are replayed against the test FreeSWITCH (and {len(checked)} of the "
             f"{len(requests)} HTTP requests it recorded are made alike); the others:"]
    lines += [f"  {name}: {reason}" for name, reason in sorted(EXCEPTIONS.items())]
    return "\n".join(lines)


def test_every_recording_is_replayed_or_excused() -> None:
    every = set(recordings())
    replayed = covered()
    assert not replayed & set(EXCEPTIONS), replayed & set(EXCEPTIONS)
    assert replayed | set(EXCEPTIONS) == every, sorted(every - replayed - set(EXCEPTIONS))
    print(report())  # noqa: T201 - the figure this module exists to give


def test_a_difference_is_caught() -> None:
    """The comparison is not blind: a changed reply text, a header out of place, a uuid where
    a fixed value belongs each fail it."""
    status = rec("04_api_status.txt")
    with pytest.raises(AssertionError):
        compare(status, status.replace(b"is ready", b"is READY"))
    job = rec("116_event_BACKGROUND_JOB_quickcall_ok_plain.txt")
    swapped = job.replace(b"Job-UUID: ", b"Job-UUIX: ")
    with pytest.raises(AssertionError):
        compare(job, swapped)
    compare(job, job.replace(b"a9061ffb-bfdd-4924-8ee7-a8c5ddb85f44",
                             b"00000000-1111-2222-3333-444444444444"))


if __name__ == "__main__":
    print(report())  # noqa: T201
