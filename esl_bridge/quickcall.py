"""QuickCall in FreeSWITCH's terms (SPEC 6.1): ring the phones, then send the call to a number.

One ``bgapi originate`` per node holding the phones' registrations; with several, the first
phone to answer wins and the other nodes' legs are hung up. Every value goes through the quoting
gate of ``esl_bridge.commands`` before any I/O.
"""
from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import gevent
import gevent.event

from . import commands
from .concurrent import concurrently
from .errors import ConnectionLost, EslError, FreeSwitchUnavailable, JobTimeout, ReplyTimeout
from .jobs import Job, JobResult
from .locate import names_the_node, registered
from .pool import EslPool
from .registrations import Registration

log = logging.getLogger(__name__)

#: Slack added to a QuickCall's ring timeout when waiting for its outcome: FreeSWITCH counts
#: whole seconds and the job reports only after answer or failure.
QUICKCALL_WAIT_SLACK = 10.0


@dataclass
class QuickCall:
    """A QuickCall FreeSWITCH accepted: ids at once, the outcome with ``wait()``.

    ``call_id`` is the origination uuid (the call's uuid once it exists), ``job_id`` our
    Job-UUID, ``node`` the node that runs it, ``endpoints`` the legs actually dialled.
    """

    call_id: str
    job_id: str
    node: str
    endpoints: list[tuple[str, str]]
    number: str
    cid_name: str
    cid_number: str
    timeout: int
    auto_answer: bool
    job: Job = field(repr=False)
    #: Phones on several nodes: the originate of each node (this call's own first), the first
    #: to answer wins; ``outcome`` is set by the race (see ``_first_answer_wins``).
    per_node: list[QuickCall] = field(default_factory=list, repr=False)
    outcome: gevent.event.AsyncResult | None = field(default=None, repr=False)

    def wait(self, timeout: float | None = None) -> JobResult:
        """Wait for the outcome: ``ok`` (answered, ``value`` is the call id) or ``cause``.

        Causes as FreeSWITCH reports them: ``USER_NOT_REGISTERED``, ``NO_ANSWER``,
        ``USER_BUSY``, ``SUBSCRIBER_ABSENT``... Default timeout: the ring timeout plus
        ``QUICKCALL_WAIT_SLACK``. Raises ``JobTimeout`` or ``ConnectionLost`` (both
        ``FreeSwitchUnavailable``).
        """
        if timeout is None:
            timeout = self.timeout + QUICKCALL_WAIT_SLACK
        if self.outcome is None:
            return self.job.wait(timeout)
        try:
            return self.outcome.get(timeout=timeout)
        except gevent.Timeout:
            raise JobTimeout(f"quickcall {self.call_id} has no outcome after {timeout:g} s",
                             self.node) from None

    def answered_by(self, result: JobResult) -> QuickCall:
        """The originate whose job gave ``result``: with phones on several nodes, the one that
        answered (its call id, job id and node); else this call."""
        return next((call for call in self.per_node if call.job_id == result.job_id), self)

    def hangup(self, pool: EslPool, cause: str | None = None) -> str:
        """Hang the call up (``uuid_kill``) on its node (on each node, for a call ringing on
        several); returns FreeSWITCH's answer (one line per node)."""
        if self.per_node:
            return "\n".join(call.hangup(pool, cause) for call in self.per_node)
        return pool.api(commands.uuid_kill(self.call_id, cause), node=self.node).strip()

    def cancel(self, pool: EslPool) -> None:
        """Hang up every leg still ringing, on every node (``hupall ORIGINATOR_CANCEL`` by
        ``esl_bridge_call_id``): for a call whose outcome cannot be known and that the caller
        is told failed, which must not ring on, nor dial the number once answered. A node that
        cannot be asked is logged."""
        concurrently(lambda call: _hang_up_loser(pool, call, cause="ORIGINATOR_CANCEL"),
                     self.per_node or [self])

    def to_dict(self) -> dict[str, Any]:
        """The call as SPEC 6.1 describes it in ``data`` (``endpoint`` is ``user@realm``)."""
        return {
            "call_id": self.call_id,
            "job_id": self.job_id,
            "endpoint": ",".join(f"{u}@{r}" for u, r in self.endpoints),
            "number": self.number,
            "cid_name": self.cid_name,
            "cid_number": self.cid_number,
            "timeout": self.timeout,
            "auto_answer": self.auto_answer,
            "node": self.node,
            **({"calls": [{"call_id": c.call_id, "job_id": c.job_id, "node": c.node,
                           "endpoint": ",".join(f"{u}@{r}" for u, r in c.endpoints)}
                          for c in self.per_node]} if self.per_node else {}),
        }


def _place(pool: EslPool, endpoints: list[tuple[str, str]]
           ) -> list[tuple[str | None, list[tuple[str, str]]]]:
    """Where to ring the endpoints: ``[(node, endpoints)]``, the node holding most first.

    Each endpoint goes to one node holding its registration (the one holding most of the
    others, when it is registered on several); endpoints registered nowhere go with the first;
    ``[(None, endpoints)]`` when none is registered anywhere or the lookup failed: any node then
    gives FreeSWITCH's own answer (``USER_NOT_REGISTERED``, ``SUBSCRIBER_ABSENT``).
    """
    def locate(endpoint: tuple[str, str]) -> list[Registration]:
        try:
            return registered(pool, *endpoint)
        except FreeSwitchUnavailable as exc:
            log.warning("quickcall: cannot locate %s@%s: %s", *endpoint, exc)
            return []

    # All at once: a slow node then costs one command timeout, not one per phone.
    found = concurrently(locate, endpoints)
    where: dict[str, list[tuple[str, str]]] = {}
    for endpoint, regs in zip(endpoints, found, strict=True):
        for node in dict.fromkeys(reg.node for reg in regs):
            where.setdefault(node, []).append(endpoint)
    if not where:
        return [(None, endpoints)]
    order = pool.node_names()
    placed: list[tuple[str | None, list[tuple[str, str]]]] = []
    left = set(endpoints)
    while left:
        counts = {node: [e for e in held if e in left] for node, held in where.items()}
        node = max(counts, key=lambda n: (len(counts[n]), -order.index(n)))
        if not counts[node]:
            break
        placed.append((node, counts[node]))
        left -= set(counts[node])
    if left:
        # Registered nowhere: rung from the first node all the same, where FreeSWITCH fails
        # that leg at once (USER_NOT_REGISTERED) or dials it some other way (a call-forwarded
        # device's dial-string goes out to its number).
        first, held = placed[0]
        placed[0] = (first, held + [e for e in endpoints if e in left])
    return placed


def _first_answer_wins(pool: EslPool, calls: list[QuickCall], outcome: gevent.event.AsyncResult
                       ) -> None:
    """Wait for one QuickCall's originates on several nodes: the first answered wins.

    The outcome is that answer; the other originates, still ringing, are hung up with
    ``LOSE_RACE`` (as FreeSWITCH ends the losing legs of one originate). When none answers, the
    outcome is the first failure in node order (the node holding most phones first).
    """
    def result_of(call: QuickCall) -> JobResult | EslError:
        try:
            return call.job.wait(call.timeout + QUICKCALL_WAIT_SLACK)
        except EslError as exc:  # the node went away, or no result in time
            return exc

    waiters = {gevent.spawn(result_of, call): call for call in calls}
    pending = set(waiters)
    try:
        while pending:
            for done in gevent.wait(list(pending), count=1):
                pending.discard(done)
                result = done.value
                if not isinstance(result, JobResult) or not result.ok:
                    continue
                winner = waiters[done]
                outcome.set(result)
                losers = [call for call in calls if call is not winner]
                concurrently(lambda call: _hang_up_loser(pool, call), losers)
                return
        results = [waiter.value for waiter in waiters]  # in node order
        # A node whose job never reported (its connection died, no result in time) may still
        # have phones ringing: a late answer there would dial NUMBER after the caller was told
        # the call failed.
        unknown = [call for call, r in zip(waiters.values(), results, strict=True)
                   if not isinstance(r, JobResult)]
        concurrently(lambda call: _hang_up_loser(pool, call), unknown)
        failure = next((r for r in results if isinstance(r, JobResult)), None)
        if failure is not None:
            outcome.set(failure)
        else:
            outcome.set_exception(results[0])
    finally:
        gevent.killall(list(pending), block=False)


#: Set on each leg of a QuickCall's originate (to that originate's uuid), so that all its legs
#: on a node can be hung up at once (``hupall``): a losing node's, or one whose job timed out.
RACE_VARIABLE = "esl_bridge_call_id"


def _hang_up_loser(pool: EslPool, call: QuickCall | str, node: str | None = None,
                   cause: str = "LOSE_RACE") -> None:
    """Hang up every leg of one node's originate (``call``, or its uuid on ``node``)."""
    call_id, node = (call.call_id, call.node) if isinstance(call, QuickCall) else (call, node)
    try:
        pool.api(commands.hupall(cause, RACE_VARIABLE, call_id), node=node)
    except EslError as exc:
        log.warning("quickcall %s: could not hang up its legs on %s (%s): %s",
                    call_id, node, cause, exc)


def _cancel_unconfirmed(pool: EslPool, call_id: str, job: Job, ring_timeout: float) -> None:
    """Cancel an originate whose ``bgapi`` went unanswered (no reply in time, or the connection
    died): its legs are hung up now (it may be ringing), and again if its job reports an
    answer, or nothing, within its ring time.

    Waits with a job callback and a loop timer, not a greenlet: when FreeSWITCH hangs, many
    calls may time out, each to be watched for a minute or so.
    """
    gevent.spawn(_hang_up_loser, pool, call_id, job.node, "ORIGINATOR_CANCEL")
    timer = gevent.get_hub().loop.timer(ring_timeout + QUICKCALL_WAIT_SLACK, ref=False)
    settled: list[bool] = []

    def settle(_: object = None) -> None:  # runs in the hub, once
        if settled:
            return
        settled.append(True)
        timer.close()
        result = job.result
        if result is not None and not result.ok:
            return  # it failed by itself: nothing is up
        if not job.ready():
            pool.jobs.discard(job.job_id)
        log.warning("quickcall %s: the originate whose bgapi went unanswered %s; hanging it up",
                    call_id, "was answered" if result else "never reported")
        gevent.spawn(_hang_up_loser, pool, call_id, job.node, "ORIGINATOR_CANCEL")

    job.on_done(settle)
    timer.start(settle)


@names_the_node
def quickcall(
    pool: EslPool,
    *,
    endpoints: Iterable[tuple[str, str]],
    number: str,
    context: str,
    cid_name: str,
    cid_number: str,
    timeout: int = 30,
    auto_answer: bool = True,
    ignore_early_media: bool = True,
    bypass_media: bool = False,
    variables: Mapping[str, str] | None = None,
    origination_cid_name: str = "Device QuickCall",
    node: str | None = None,
    call_id: str | None = None,
    job_id: str | None = None,
    command_timeout: float | None = None,
) -> QuickCall:
    """Ring the endpoints; when one answers, send the call to ``number`` in ``context``.

    ``bgapi originate`` (SPEC 6.1) with our own ``origination_uuid`` (``call_id``, generated if
    not given) and Job-UUID. Returns as soon as FreeSWITCH accepted the job; ``.wait()`` gives
    the outcome. ``endpoints`` are ``(sip user, realm)`` pairs; with several nodes each rings on
    the node holding its registration: one originate per node (the node holding most first,
    with ``call_id`` and ``job_id``; the others get their own, listed in ``per_node``), the
    first to answer wins and the others are hung up (``node=`` forces one node); a node that
    cannot take its originate is skipped. ``auto_answer`` applies only to a lone endpoint.
    ``variables`` (names ``esl_bridge_*``) are set on the call, e.g. account, device and request
    ids. Raises ``UnsafeValue`` before any I/O for a refused value, ``FreeSwitchUnavailable``
    (``NotConnected``, ``CommandTimeout``...) when FreeSWITCH cannot take the job, and
    ``CommandError`` when it refuses it.
    """
    # Checked as (user, realm) pairs by the first build below, before any I/O.
    legs = cast(list[tuple[str, str]], [tuple(endpoint) for endpoint in endpoints])
    # Only a lone phone is asked to answer by itself: not one of several that stayed alone
    # because the others are registered on another node.
    auto_answer = auto_answer and len(legs) == 1
    call_id = call_id or str(uuid.uuid4())
    job_id = job_id or str(uuid.uuid4())

    def build(selected: list[tuple[str, str]], leg_call: str) -> str:
        return commands.originate(
            call_id=leg_call, endpoints=selected, number=number, context=context,
            cid_name=cid_name, cid_number=cid_number, timeout=timeout, auto_answer=auto_answer,
            ignore_early_media=ignore_early_media, bypass_media=bypass_media,
            variables={**(variables or {}), RACE_VARIABLE: leg_call},
            origination_cid_name=origination_cid_name)

    build(legs, call_id)  # validates every value before any I/O
    commands.safe(job_id, "uuid", "job_id")
    places: list[tuple[str | None, list[tuple[str, str]]]] = [(node, legs)]
    if node is None and len(pool.node_names()) > 1:
        places = _place(pool, legs)
    calls: list[QuickCall] = []
    failures: list[EslError] = []
    race = len(places) > 1
    ids_taken = False  # by an originate FreeSWITCH took, or may have (no reply in time)
    for where, selected in places:
        # The first originate FreeSWITCH takes carries the call's own ids; every id is used
        # once, so that a late answer of a cancelled originate can settle no other.
        leg_call = str(uuid.uuid4()) if ids_taken else call_id
        leg_job = str(uuid.uuid4()) if ids_taken else job_id
        try:
            job = pool.bgapi(build(selected, leg_call), node=where,
                             timeout=command_timeout, job_uuid=leg_job)
            ids_taken = True
        except EslError as exc:
            if isinstance(exc, (ReplyTimeout, ConnectionLost)) and exc.job is not None:
                # Written, perhaps, and unanswered: FreeSWITCH may have taken it all the same,
                # and the caller is told it failed: make sure nothing it started rings, or
                # dials NUMBER once answered.
                ids_taken = True
                _cancel_unconfirmed(pool, leg_call, exc.job, timeout)
            if not race:
                raise
            log.warning("quickcall %s: %s not rung: %s", call_id,
                        ",".join(f"{u}@{r}" for u, r in selected), exc)
            failures.append(exc)
            continue
        log.info("quickcall %s: ringing %s for %s on %s (job %s)", leg_call,
                 ",".join(f"{u}@{r}" for u, r in selected), number, job.node, leg_job)
        calls.append(QuickCall(call_id=leg_call, job_id=leg_job, node=job.node,
                               endpoints=selected, number=number, cid_name=cid_name,
                               cid_number=cid_number, timeout=timeout, auto_answer=auto_answer,
                               job=job))
    if not calls:
        raise failures[0]
    first = calls[0]
    if len(calls) == 1:
        return first
    # Phones on several nodes: one originate per node, the first to answer wins.
    outcome = gevent.event.AsyncResult()
    gevent.spawn(_first_answer_wins, pool, calls, outcome)
    return dataclasses.replace(first, endpoints=[e for c in calls for e in c.endpoints],
                               per_node=calls, outcome=outcome)


@names_the_node
def hangup(pool: EslPool, call_id: str, *, node: str, cause: str | None = None) -> str:
    """``uuid_kill`` a call on ``node``; returns FreeSWITCH's answer (``+OK`` or ``-ERR ...``)."""
    return pool.api(commands.uuid_kill(call_id, cause), node=node).strip()


__all__ = ["QUICKCALL_WAIT_SLACK", "RACE_VARIABLE", "QuickCall", "hangup", "quickcall"]
