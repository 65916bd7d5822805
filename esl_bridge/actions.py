"""What esl-bridge asks of FreeSWITCH, in FreeSWITCH's terms (SPEC 6).

Inputs are plain values: SIP user, realm, presence id, number, caller id. Every value goes
through the quoting gate of ``esl_bridge.commands`` before any I/O, so a refused value raises
``UnsafeValue`` (a ``ValueError``) and nothing is sent.

Across nodes the rule is the same everywhere: a node that fails is skipped and logged, and
``FreeSwitchUnavailable`` is raised only when no node answered at all. Functions that act on a
phone send to the node(s) and sofia profile(s) where it is registered, found with
``sofia xmlstatus profile <p> user <user>@<realm>`` on every node (profiles: the configured ones
plus any seen in that node's register events; see ``esl_bridge.locate``). QuickCall is in
``esl_bridge.quickcall``, re-exported here with the registration lookups, so that this module
is the one door to every action.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from . import commands
from .errors import CommandError
from .locate import by_node, gather, names_the_node, registered, registrations
from .pool import EslPool
from .quickcall import QUICKCALL_WAIT_SLACK, QuickCall, hangup, quickcall

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- SPEC 6.2 check-sync


@names_the_node
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
    targets = by_node(registered(pool, user, realm))
    if not targets:
        log.info("check-sync: %s@%s is not registered on any node; nothing sent", user, realm)
        return []

    def send(node: str) -> None:
        for profile in targets[node]:
            pool.sendevent(commands.check_sync_notify(
                profile=profile, user=user, realm=realm, event_string=event_string), node=node)

    answered = gather(pool.fan_out(send, targets), f"check-sync of {user}@{realm}")
    return [node for node in targets if node in answered]


# ---------------------------------------------------------------------- SPEC 6.3 presence


def _presence_target(presence_id: str, realm: str | None) -> str:
    if "@" not in presence_id and realm is not None:
        presence_id = f"{presence_id}@{realm}"
    commands.safe(presence_id, "presence_id")
    return presence_id


def _to_every_node(pool: EslPool, text: str, what: str) -> list[str]:
    answered = gather(pool.fan_out(lambda node: pool.sendevent(text, node=node)), what)
    return [node for node in pool.node_names() if node in answered]


@names_the_node
def presence_reset(pool: EslPool, presence_id: str, *, realm: str | None = None) -> list[str]:
    """Reset the BLF of ``presence_id`` on every node; returns the nodes that took it.

    ``presence_id`` is ``id@realm`` (``realm=`` is appended when it has no ``@``). Sends the
    SPEC 6.3 ``PRESENCE_IN`` with no ``unique-id``: watchers get an idle dialog-info.
    """
    target = _presence_target(presence_id, realm)
    return _to_every_node(pool, commands.presence_reset(target), f"presence reset of {target}")


@names_the_node
def presence_many(pool: EslPool, presence_ids: Sequence[str], state: str | None = None, *,
                  realm: str | None = None) -> dict[str, list[str]]:
    """``presence_reset`` (or ``presence_set`` with ``state``) of several ids on every node.

    Every value is checked before anything is sent. The nodes are served at once, each with
    the events one after the other; a node that fails one is skipped for the rest (logged), so
    a hung node costs one command timeout, not one per id. Returns ``{presence id: nodes}``;
    ``FreeSwitchUnavailable`` when no node took them.
    """
    targets = [_presence_target(pid, realm) for pid in presence_ids]
    texts = [commands.presence_reset(t) if state is None else commands.presence_set(t, state)
             for t in targets]

    def send_all(node: str) -> None:
        for text in texts:
            pool.sendevent(text, node=node)

    what = "presence " + (state or "reset") + " of " + ", ".join(targets)
    answered = gather(pool.fan_out(send_all), what)
    nodes = [node for node in pool.node_names() if node in answered]
    return {target: nodes for target in targets}


@names_the_node
def presence_set(pool: EslPool, presence_id: str, state: str, *, realm: str | None = None
                 ) -> list[str]:
    """Set the BLF of ``presence_id`` to ``early``, ``confirmed`` or ``terminated``, everywhere.

    Same event as the reset with a stable ``unique-id`` derived from the presence id.
    """
    target = _presence_target(presence_id, realm)
    return _to_every_node(pool, commands.presence_set(target, state),
                          f"presence {state} of {target}")


# ---------------------------------------------------------------------- SPEC 6.5


@names_the_node
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

    answered = gather(pool.fan_out(flush), f"directory cache flush of {user}@{realm}")
    return [node for node in pool.node_names() if node in answered]


@names_the_node
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
    targets = by_node(registered(pool, user, realm))
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

    answered = gather(pool.fan_out(retire, targets), f"retiring {user}@{realm}")
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
