"""What esl-bridge asks of FreeSWITCH, in FreeSWITCH's terms (SPEC 6).

Inputs are plain values: SIP user, realm, presence id, number, caller id. Every value goes
through the quoting gate of ``esl_bridge.commands`` before any I/O, so a refused value raises
``UnsafeValue`` (a ``ValueError``) and nothing is sent.

Across nodes the rule is the same everywhere: a node that fails is skipped and logged, and
``FreeSwitchUnavailable`` is raised only when no node answered at all. Functions that act on a
phone send to the node(s) and sofia profile(s) where it is registered, found with
``sofia xmlstatus profile <p> user <user>@<realm>`` on every node (profiles: the configured ones
plus any seen in that node's register events).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import gevent
import gevent.event

from . import commands
from .errors import CommandError, EslError, FreeSwitchUnavailable, JobTimeout
from .jobs import Job, JobResult
from .pool import EslPool
from .registrations import Registration, parse_xmlstatus

log = logging.getLogger(__name__)

T = TypeVar("T")
Item = TypeVar("Item")
A = TypeVar("A", bound=Callable[..., Any])

#: Slack added to a QuickCall's ring timeout when waiting for its outcome: FreeSWITCH counts
#: whole seconds and the job reports only after answer or failure.
QUICKCALL_WAIT_SLACK = 10.0


def _names_the_node(action: A) -> A:
    """Name the node in a ``FreeSwitchUnavailable`` that names none, when only one is configured.

    With one node there is no doubt which one could not answer, and the web shows ``node`` in
    its 503 (``None`` reads as every node). Errors raised where no node had been chosen yet (the
    pool's pick among connected nodes) carry ``None``.
    """
    @functools.wraps(action)
    def run(pool: EslPool, *args: Any, **kwargs: Any) -> Any:
        try:
            return action(pool, *args, **kwargs)
        except FreeSwitchUnavailable as exc:
            if exc.node is None:
                names = pool.node_names()
                if len(names) == 1:
                    exc.node = names[0]
            raise

    return cast(A, run)


def _gather(results: Mapping[str, T | Exception], what: str) -> dict[str, T]:
    """Keep the nodes that answered; log the others; raise if none answered."""
    answered: dict[str, T] = {}
    failed: dict[str, Exception] = {}
    for node, result in results.items():
        if isinstance(result, Exception):
            failed[node] = result
            log.warning("ESL %s: %s skipped this node: %s", node, what, result)
        else:
            answered[node] = result
    if results and not answered:
        if len(failed) == 1:
            error = next(iter(failed.values()))
            if isinstance(error, FreeSwitchUnavailable):
                raise error
        detail = "; ".join(f"{node}: {exc}" for node, exc in failed.items())
        node = next(iter(failed)) if len(failed) == 1 else None
        raise FreeSwitchUnavailable(f"no FreeSWITCH node answered {what} ({detail})", node)
    return answered


# ---------------------------------------------------------------------- registrations


def _query(pool: EslPool, build: Callable[[str], str], user: str | None, realm: str,
           what: str) -> list[Registration]:
    def ask(node: str) -> list[Registration]:
        found: list[Registration] = []
        for profile in pool.profiles_for(node):
            started = time.monotonic()
            text = pool.api(build(profile), node=node)
            try:
                regs = parse_xmlstatus(text, node, profile)
            except CommandError as exc:
                log.debug("ESL %s: profile %s: %s", node, profile, exc)
                continue
            pool.registrations.replace(node, profile, regs, started, user=user, realm=realm)
            found.extend(regs)
        return found

    answered = _gather(pool.fan_out(ask), what)
    return [reg for node in pool.node_names() for reg in answered.get(node, [])]


@_names_the_node
def registered(pool: EslPool, user: str, realm: str, *, cached: bool = False
               ) -> list[Registration]:
    """Registrations of ``user@realm`` on every node (empty when not registered).

    Asks each node and profile with ``sofia xmlstatus profile <p> user <user>@<realm>``; a node
    that fails is skipped and logged; ``FreeSwitchUnavailable`` when no node answered.
    ``cached=True`` answers from the event-fed cache instead, without a round trip.
    """
    commands.safe(user, "user")
    commands.safe(realm, "realm")
    if cached:
        return pool.registrations.lookup(user, realm)
    return _query(pool, lambda p: commands.xmlstatus_user(p, user, realm), user, realm,
                  f"registration query for {user}@{realm}")


@_names_the_node
def registrations(pool: EslPool, realm: str, *, cached: bool = False) -> list[Registration]:
    """Every registration of ``realm`` on every node (``sofia xmlstatus ... user @<realm>``).

    Same failure rule as ``registered``; ``cached=True`` reads the cache.
    """
    commands.safe(realm, "realm")
    if cached:
        return pool.registrations.realm(realm)
    return _query(pool, lambda p: commands.xmlstatus_realm(p, realm), None, realm,
                  f"registration listing of {realm}")


def _concurrently(fn: Callable[[Item], T], items: Sequence[Item]) -> list[T]:
    """``[fn(item) for item in items]``, each in its own greenlet (exceptions propagate)."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    greenlets = [gevent.spawn(fn, item) for item in items]
    gevent.joinall(greenlets, raise_error=True)
    return [g.value for g in greenlets]


def _by_node(regs: Iterable[Registration]) -> dict[str, list[str]]:
    """``{node: [profiles]}`` of registrations, each profile once, in order."""
    targets: dict[str, list[str]] = {}
    for reg in regs:
        profiles = targets.setdefault(reg.node, [])
        if reg.profile not in profiles:
            profiles.append(reg.profile)
    return targets


# ---------------------------------------------------------------------- SPEC 6.1 QuickCall


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

    def hangup(self, pool: EslPool, cause: str | None = None) -> str:
        """Hang the call up (``uuid_kill``) on its node (on each node, for a call ringing on
        several); returns FreeSWITCH's answer (one line per node)."""
        if self.per_node:
            return "\n".join(call.hangup(pool, cause) for call in self.per_node)
        return pool.api(commands.uuid_kill(self.call_id, cause), node=self.node).strip()

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
    others, when it is registered on several). Endpoints registered nowhere are left out;
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
    found = _concurrently(locate, endpoints)
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
        log.warning("quickcall: not registered on any node, not rung: %s",
                    ", ".join(f"{u}@{r}" for u, r in endpoints if (u, r) in left))
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
                _concurrently(lambda call: _hang_up_loser(pool, call), losers)
                return
        results = [waiter.value for waiter in waiters]  # in node order
        failure = next((r for r in results if isinstance(r, JobResult)), None)
        if failure is not None:
            outcome.set(failure)
        else:
            outcome.set_exception(results[0])
    finally:
        gevent.killall(list(pending), block=False)


#: Set on each leg of an originate of a QuickCall ringing on several nodes, so that a losing
#: node's legs can all be hung up at once (``hupall``).
RACE_VARIABLE = "esl_bridge_call_id"


def _hang_up_loser(pool: EslPool, call: QuickCall) -> None:
    try:
        pool.api(commands.hupall("LOSE_RACE", RACE_VARIABLE, call.call_id), node=call.node)
    except EslError as exc:
        log.warning("quickcall %s: could not hang up the losing originate on %s: %s",
                    call.call_id, call.node, exc)


@_names_the_node
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
    first to answer wins and the others are hung up (``node=`` forces one node). ``auto_answer`` applies only when exactly one endpoint rings.
    ``variables`` (names ``esl_bridge_*``) are set on the call, e.g. account, device and request
    ids. Raises ``UnsafeValue`` before any I/O for a refused value, ``FreeSwitchUnavailable``
    (``NotConnected``, ``CommandTimeout``...) when FreeSWITCH cannot take the job, and
    ``CommandError`` when it refuses it.
    """
    legs = [tuple(endpoint) for endpoint in endpoints]
    # Only a lone phone is asked to answer by itself: not one of several that stayed alone
    # because the others are registered on another node.
    auto_answer = auto_answer and len(legs) == 1
    call_id = call_id or str(uuid.uuid4())
    job_id = job_id or str(uuid.uuid4())

    def build(selected: list[tuple[str, str]], leg_call: str, race: bool = False) -> str:
        return commands.originate(
            call_id=leg_call, endpoints=selected, number=number, context=context,
            cid_name=cid_name, cid_number=cid_number, timeout=timeout, auto_answer=auto_answer,
            ignore_early_media=ignore_early_media, bypass_media=bypass_media,
            variables={**(variables or {}), RACE_VARIABLE: leg_call} if race else variables,
            origination_cid_name=origination_cid_name)

    build(legs, call_id)  # validates every value before any I/O
    commands.safe(job_id, "uuid", "job_id")
    places: list[tuple[str | None, list[tuple[str, str]]]] = [(node, legs)]
    if node is None and len(pool.node_names()) > 1:
        places = _place(pool, legs)
    calls: list[QuickCall] = []
    try:
        for index, (where, selected) in enumerate(places):
            leg_call = call_id if index == 0 else str(uuid.uuid4())
            leg_job = job_id if index == 0 else str(uuid.uuid4())
            job = pool.bgapi(build(selected, leg_call, race=len(places) > 1), node=where,
                             timeout=command_timeout, job_uuid=leg_job)
            log.info("quickcall %s: ringing %s for %s on %s (job %s)", leg_call,
                     ",".join(f"{u}@{r}" for u, r in selected), number, job.node, leg_job)
            calls.append(QuickCall(call_id=leg_call, job_id=leg_job, node=job.node,
                                   endpoints=selected, number=number, cid_name=cid_name,
                                   cid_number=cid_number, timeout=timeout,
                                   auto_answer=auto_answer, job=job))
    except FreeSwitchUnavailable:
        if not calls:
            raise
        log.warning("quickcall %s: rings on %s only", call_id, ", ".join(c.node for c in calls))
    first = calls[0]
    if len(calls) == 1:
        return first
    # Phones on several nodes: one originate per node, the first to answer wins.
    outcome = gevent.event.AsyncResult()
    gevent.spawn(_first_answer_wins, pool, calls, outcome)
    return dataclasses.replace(first, endpoints=[e for c in calls for e in c.endpoints],
                               per_node=calls, outcome=outcome)


@_names_the_node
def hangup(pool: EslPool, call_id: str, *, node: str, cause: str | None = None) -> str:
    """``uuid_kill`` a call on ``node``; returns FreeSWITCH's answer (``+OK`` or ``-ERR ...``)."""
    return pool.api(commands.uuid_kill(call_id, cause), node=node).strip()


# ---------------------------------------------------------------------- SPEC 6.2 check-sync


@_names_the_node
def check_sync(pool: EslPool, user: str, realm: str, event_string: str = "check-sync"
               ) -> list[str]:
    """Send the check-sync NOTIFY where ``user@realm`` is registered; returns those nodes.

    One ``sendevent NOTIFY`` per node and sofia profile holding a registration (FreeSWITCH
    answers ``+OK`` even for a wrong profile, so the profile must come from the registration).
    Not registered: nothing is sent, it is logged, and ``[]`` is returned.
    """
    for profile in pool.sofia_profiles:  # validate every value before any I/O
        commands.check_sync_notify(profile=profile, user=user, realm=realm,
                                   event_string=event_string)
    targets = _by_node(registered(pool, user, realm))
    if not targets:
        log.info("check-sync: %s@%s is not registered on any node; nothing sent", user, realm)
        return []

    def send(node: str) -> None:
        for profile in targets[node]:
            pool.sendevent(commands.check_sync_notify(
                profile=profile, user=user, realm=realm, event_string=event_string), node=node)

    answered = _gather(pool.fan_out(send, targets), f"check-sync of {user}@{realm}")
    return [node for node in targets if node in answered]


# ---------------------------------------------------------------------- SPEC 6.3 presence


def _presence_target(presence_id: str, realm: str | None) -> str:
    if "@" not in presence_id and realm is not None:
        presence_id = f"{presence_id}@{realm}"
    commands.safe(presence_id, "presence_id")
    return presence_id


def _to_every_node(pool: EslPool, text: str, what: str) -> list[str]:
    answered = _gather(pool.fan_out(lambda node: pool.sendevent(text, node=node)), what)
    return [node for node in pool.node_names() if node in answered]


@_names_the_node
def presence_reset(pool: EslPool, presence_id: str, *, realm: str | None = None) -> list[str]:
    """Reset the BLF of ``presence_id`` on every node; returns the nodes that took it.

    ``presence_id`` is ``id@realm`` (``realm=`` is appended when it has no ``@``). Sends the
    SPEC 6.3 ``PRESENCE_IN`` with no ``unique-id``: watchers get an idle dialog-info.
    """
    target = _presence_target(presence_id, realm)
    return _to_every_node(pool, commands.presence_reset(target), f"presence reset of {target}")


def presence_many(pool: EslPool, presence_ids: Sequence[str], state: str | None = None, *,
                  realm: str | None = None) -> dict[str, list[str]]:
    """``presence_reset`` (or ``presence_set`` with ``state``) of each id, all at once.

    Every value is checked before anything is sent. Returns ``{presence id: nodes}``; raises
    ``FreeSwitchUnavailable`` when no node took one of them.
    """
    targets = [_presence_target(pid, realm) for pid in presence_ids]
    if state is not None:
        for target in targets:
            commands.presence_set(target, state)

    def send(target: str) -> list[str]:
        if state is None:
            return presence_reset(pool, target)
        return presence_set(pool, target, state)

    return dict(zip(targets, _concurrently(send, targets), strict=True))


@_names_the_node
def presence_set(pool: EslPool, presence_id: str, state: str, *, realm: str | None = None
                 ) -> list[str]:
    """Set the BLF of ``presence_id`` to ``early``, ``confirmed`` or ``terminated``, everywhere.

    Same event as the reset with a stable ``unique-id`` derived from the presence id.
    """
    target = _presence_target(presence_id, realm)
    return _to_every_node(pool, commands.presence_set(target, state),
                          f"presence {state} of {target}")


# ---------------------------------------------------------------------- SPEC 6.5


@_names_the_node
def flush_directory_cache(pool: EslPool, user: str, realm: str) -> list[str]:
    """``xml_flush_cache id <user> <realm>`` on every node (the cache is per node).

    Returns the nodes that answered ``+OK``.
    """
    text = commands.xml_flush_cache(user, realm)

    def flush(node: str) -> str:
        answer = pool.api(text, node=node).strip()
        if not answer.startswith("+OK"):
            raise CommandError(f"xml_flush_cache refused: {answer}", node, answer)
        return answer

    answered = _gather(pool.fan_out(flush), f"directory cache flush of {user}@{realm}")
    return [node for node in pool.node_names() if node in answered]


@_names_the_node
def retire_registration(pool: EslPool, user: str, realm: str,
                        event_string: str = "check-sync") -> list[str]:
    """After a credential change, disabling or deletion: NOTIFY the phone, then forget it.

    On each node and profile holding ``user@realm``: the check-sync ``sendevent NOTIFY`` (so the
    phone fetches its new configuration), then ``sofia profile <p> flush_inbound_reg
    <user>@<realm>`` (never with ``reboot``); FreeSWITCH then fires ``sofia::expire``. Returns
    the nodes handled; ``[]`` when not registered. Callers treat it as best effort (SPEC 6.5).
    """
    for profile in pool.sofia_profiles:
        commands.check_sync_notify(profile=profile, user=user, realm=realm,
                                   event_string=event_string)
    targets = _by_node(registered(pool, user, realm))
    if not targets:
        log.info("retire: %s@%s is not registered; nothing to flush", user, realm)
        return []

    def retire(node: str) -> None:
        for profile in targets[node]:
            pool.sendevent(commands.check_sync_notify(
                profile=profile, user=user, realm=realm, event_string=event_string), node=node)
            answer = pool.api(commands.flush_inbound_reg(profile, user, realm), node=node)
            if not answer.startswith("+OK"):
                raise CommandError(f"flush_inbound_reg refused: {answer.strip()}", node, answer)
            pool.registrations.forget(node, profile, user, realm)

    answered = _gather(pool.fan_out(retire, targets), f"retiring {user}@{realm}")
    return [node for node in targets if node in answered]


__all__ = [
    "QUICKCALL_WAIT_SLACK",
    "QuickCall",
    "check_sync",
    "flush_directory_cache",
    "hangup",
    "presence_many",
    "presence_reset",
    "presence_set",
    "quickcall",
    "registered",
    "registrations",
    "retire_registration",
]
