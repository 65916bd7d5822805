"""Where FreeSWITCH holds a phone's registration, and the rules for acting across nodes.

A node that fails is skipped and logged; ``FreeSwitchUnavailable`` is raised only when no node
answered at all. Registrations are found with ``sofia xmlstatus profile <p> user
<user>@<realm>`` on every node (profiles: the configured ones plus any seen in that node's
register events), never ``show registrations``.
"""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from . import commands
from .errors import CommandError, ConnectionLost, FreeSwitchUnavailable, NotConnected
from .pool import EslPool
from .registrations import Registration, parse_xmlstatus

log = logging.getLogger(__name__)

T = TypeVar("T")
Item = TypeVar("Item")
A = TypeVar("A", bound=Callable[..., Any])


def names_the_node(action: A) -> A:
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


def gather(results: Mapping[str, T | Exception], what: str) -> dict[str, T]:
    """Keep the nodes that answered; log the others; raise if none answered."""
    answered: dict[str, T] = {}
    failed: dict[str, Exception] = {}
    for node, result in results.items():
        if isinstance(result, Exception):
            failed[node] = result
            # A node without a live connection, or whose connection dropped under the command,
            # is logged by the pool when it goes down: saying so again for every action (every
            # one in flight when FreeSWITCH restarts) would flood the log.
            quiet = isinstance(result, NotConnected | ConnectionLost)
            log.log(logging.DEBUG if quiet else logging.WARNING,
                    "ESL %s: %s skipped this node: %s", node, what, result)
        else:
            answered[node] = result
    if results and not answered:
        if len(failed) == 1:
            error = next(iter(failed.values()))
            if isinstance(error, FreeSwitchUnavailable):
                raise error
        detail = "; ".join(f"{node}: {exc}" for node, exc in failed.items())
        only = next(iter(failed)) if len(failed) == 1 else None
        raise FreeSwitchUnavailable(f"no FreeSWITCH node answered {what} ({detail})", only)
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

    answered = gather(pool.fan_out(ask), what)
    return [reg for node in pool.node_names() for reg in answered.get(node, [])]


@names_the_node
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


@names_the_node
def registrations(pool: EslPool, realm: str, *, cached: bool = False) -> list[Registration]:
    """Every registration of ``realm`` on every node (``sofia xmlstatus ... user @<realm>``).

    Same failure rule as ``registered``; ``cached=True`` reads the cache.
    """
    commands.safe(realm, "realm")
    if cached:
        return pool.registrations.realm(realm)
    return _query(pool, lambda p: commands.xmlstatus_realm(p, realm), None, realm,
                  f"registration listing of {realm}")


def by_node(regs: Iterable[Registration]) -> dict[str, list[str]]:
    """``{node: [profiles]}`` of registrations, each profile once, in order."""
    targets: dict[str, list[str]] = {}
    for reg in regs:
        profiles = targets.setdefault(reg.node, [])
        if reg.profile not in profiles:
            profiles.append(reg.profile)
    return targets



__all__ = ["by_node", "gather", "names_the_node", "registered", "registrations"]
