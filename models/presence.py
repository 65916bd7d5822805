"""Presence ids: the BLF lamp a device or user lights (SPEC §4 `presence_id`, §6.3, §7).

A presence id names a lamp of one account only. One written as `id@realm` must carry the
account's own realm; a bare id takes it. Documents stored before that rule existed may still
hold another realm: everything that reaches FreeSWITCH goes through `static_presence_id`,
which never answers with a foreign realm.
"""
from __future__ import annotations

import logging
from typing import Any

from models.validation import Errors, add_error

log = logging.getLogger(__name__)


def realm_is_own(value: Any, account_realm: str) -> bool:
    """Whether a presence id names the account's own realm (a bare id always does)."""
    if not isinstance(value, str) or "@" not in value:
        return True
    return value.rpartition("@")[2].lower() == account_realm.lower()


def realm_errors(doc: dict[str, Any], account_realm: str, errors: Errors) -> None:
    """Record `presence_id.invalid` when the document's presence id names another realm."""
    value = doc.get("presence_id")
    if not realm_is_own(value, account_realm):
        add_error(errors, "presence_id", "invalid",
                  f"The realm of a presence id must be the account's realm ({account_realm})",
                  cause=value)


def static_presence_id(doc: dict[str, Any], account_realm: str) -> str | None:
    """The document's static `presence_id`, with `@<account realm>` when it has none; None when
    it has none, or when it names another realm (logged: it would light that realm's lamps)."""
    value = doc.get("presence_id")
    if not value:
        return None
    if not realm_is_own(value, account_realm):
        log.warning("presence id %r is not in the account's realm %s: ignored", value, account_realm)
        return None
    return value if "@" in value else f"{value}@{account_realm}"


def presence_id(doc: dict[str, Any], account_realm: str) -> str | None:
    """SPEC §6.3: the static presence id, else the SIP username at the account realm."""
    static = static_presence_id(doc, account_realm)
    if static:
        return static
    username = (doc.get("sip") or {}).get("username")
    return f"{username}@{account_realm}" if username else None
