"""FreeSWITCH work that follows a committed device change (SPEC §6.2 `sync`, §6.5).

The plan is a pure function of the document before and after; running it happens after the
commit, in the background, best effort: a failure is logged and never fails the request.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gevent.pool import Group

from models.account import realm_of_another_account
from models.device import SIP_IDENTITY_KEYS
from models.documents import Document
from models.errors import ValidationFailed

log = logging.getLogger(__name__)

DEFAULT_CHECK_SYNC_EVENT = "check-sync"


@dataclass(frozen=True)
class SipIdentity:
    user: str
    realm: str


def sip_identity(device: Document | None) -> SipIdentity | None:
    """The `user@realm` a device registers as, if it has SIP credentials."""
    if device is None:
        return None
    sip = device.doc.get("sip") or {}
    if not sip.get("username") or not sip.get("realm"):
        return None
    return SipIdentity(sip["username"], sip["realm"])


def foreign_sip_realm(device: Document | None) -> str | None:
    """The device's SIP realm when it is another account's (a document stored before the rule
    that refuses it): nothing may reach FreeSWITCH for it, else this account would ring,
    resync or unregister that account's phone. None when the realm is the device's own."""
    sip = sip_identity(device)
    if sip is None or device is None or device.account_id is None:
        return None
    if not realm_of_another_account(device.account_id, sip.realm):
        return None
    log.warning("device %s of account %s: SIP realm %s belongs to another account",
                device.id, device.account_id, sip.realm)
    return sip.realm


def refuse_foreign_sip_realm(device: Document) -> None:
    """400 `sip.realm.invalid` for a device whose SIP realm is another account's."""
    realm = foreign_sip_realm(device)
    if realm is not None:
        raise ValidationFailed.single("sip.realm", "invalid", "The realm belongs to another account",
                                      cause=realm)


def check_sync_event(device: Document, reboot: bool | None = None) -> str:
    """The device's check-sync event string, with `;reboot=` appended when asked.

    A `reboot` parameter already in the stored event gives way to the one asked for: phones
    read the first one, so two would leave the stored one in force.
    """
    event = (device.doc.get("provision") or {}).get("check_sync_event") or DEFAULT_CHECK_SYNC_EVENT
    if reboot is not None:
        name, *params = event.split(";")
        kept = [p for p in params if p.split("=", 1)[0].lower() != "reboot"]
        event = ";".join([name, *kept, f"reboot={'true' if reboot else 'false'}"])
    return event


@dataclass(frozen=True)
class Step:
    """One FreeSWITCH action: `kind` is flush_cache, retire or check_sync."""

    kind: str
    user: str
    realm: str
    event: str = DEFAULT_CHECK_SYNC_EVENT


def _credentials(device: Document) -> tuple[Any, ...]:
    sip = device.doc.get("sip") or {}
    return tuple(sip.get(k) for k in SIP_IDENTITY_KEYS)


def plan(before: Document | None, after: Document | None, sync: bool) -> list[Step]:
    """The steps a change from `before` to `after` needs (`after` None: deleted)."""
    old, new = sip_identity(before), sip_identity(after)
    steps: list[Step] = []
    if before is not None:
        enabled_before = before.doc.get("enabled", True)
        enabled_after = after is not None and after.doc.get("enabled", True)
        credentials_changed = after is None or _credentials(before) != _credentials(after)
        # What the directory dials changed: the presence id in its dial-string, or the number a
        # call-forwarded device is dialled at.
        dialled_changed = after is not None and any(
            before.doc.get(key) != after.doc.get(key) for key in ("presence_id", "call_forward"))
        retire = old is not None and (credentials_changed or (enabled_before and not enabled_after))
        if old is not None and (retire or dialled_changed or enabled_before != enabled_after):
            steps.append(Step("flush_cache", old.user, old.realm))
        if new is not None and new != old and (credentials_changed or enabled_before != enabled_after):
            steps.append(Step("flush_cache", new.user, new.realm))
        if retire and old is not None:
            steps.append(Step("retire", old.user, old.realm, check_sync_event(before)))
    if sync and after is not None and new is not None:
        target = (new.user, new.realm)
        already = any(s.kind == "retire" and (s.user, s.realm) == target for s in steps)
        if not already:
            steps.append(Step("check_sync", new.user, new.realm, check_sync_event(after)))
    return steps


class SideEffects:
    """Runs plans in background greenlets so the response never waits on FreeSWITCH."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._group = Group()

    def run(self, steps: list[Step]) -> None:
        if steps and self.pool is not None:
            self._group.spawn(self._run, steps)

    def _run(self, steps: list[Step]) -> None:
        from esl_bridge import actions

        for step in steps:
            try:
                if step.kind == "flush_cache":
                    actions.flush_directory_cache(self.pool, step.user, step.realm)
                elif step.kind == "retire":
                    actions.retire_registration(self.pool, step.user, step.realm, step.event)
                elif step.kind == "check_sync":
                    actions.check_sync(self.pool, step.user, step.realm, step.event)
            except Exception as exc:  # best effort by contract: log, never raise
                log.warning("side effect %s for %s@%s failed: %s", step.kind, step.user, step.realm, exc)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for running side effects (tests and shutdown); True when none is left."""
        return self._group.join(timeout=timeout)

    def kill(self) -> None:
        self._group.kill(block=True, timeout=1)


def device_changed(before: Document | None, after: Document | None, sync: bool) -> None:
    """Queue what FreeSWITCH must hear about a committed device change."""
    from web.resource import runtime

    steps = plan(before, after, sync)
    foreign = {realm for realm in map(foreign_sip_realm, (before, after)) if realm is not None}
    steps = [step for step in steps if step.realm not in foreign]
    if steps:
        device = after or before
        log.info("device %s: %s", device.id if device else "?",
                 ", ".join(f"{s.kind} {s.user}@{s.realm}" for s in steps))
    runtime().side_effects.run(steps)
