"""What a token may do beyond reaching the account (SPEC §3, Kazoo's `priv_level`).

An API key, a token minted from one (`api_auth`) and an `admin` user's token act on their
whole account tree (Kazoo's `cb_context:is_account_admin`, with API keys counted as admins).
A `user` token acts only inside its own account, and only through the views marked here:

- `own_user`: the path's `user_id` is the token's user (read and edit itself, its devices,
  hotdesks, QuickCall and presence); an edit may not change `USER_LOCKED_FIELDS`;
- `own_device`: the path's device is owned by the token's user (read it, its hotdesks,
  QuickCall, check-sync, presence).

Everything else is 403, unknown ids included (no probing). Refusals are logged at INFO.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from models import device as devices
from models.documents import MISSING, dotted_get
from models.token import Identity
from models.user import Guard
from web.errors import Forbidden

log = logging.getLogger(__name__)

#: What a `user` may not change on itself: its rights (`priv_level`, `enabled`), the locks an
#: admin puts on hotdesking, the open door of anonymous quickcalls (toll fraud), the lamp its
#: calls light and the caller id emergency services see.
USER_LOCKED_FIELDS = ("priv_level", "enabled", "hotdesk.enabled", "hotdesk.require_pin",
                      "allow_anonymous_quickcalls", "presence_id", "caller_id.emergency")

_OWN_USER = "own_user"
_OWN_DEVICE = "own_device"


def _rule(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def mark(view: Callable[..., Any]) -> Callable[..., Any]:
        view.esl_user_rule = name  # type: ignore[attr-defined]
        return view
    return mark


#: A view a `user` token may call for itself (the path's `user_id`).
own_user = _rule(_OWN_USER)
#: A view a `user` token may call for a device it owns (the path's `device_id`).
own_device = _rule(_OWN_DEVICE)


def require_privilege(identity: Identity, view: Any, account_id: str, view_args: dict[str, Any]) -> None:
    """403 unless the identity's privileges allow this view on this account (after
    `web.auth.authorize` let it reach the account)."""
    if identity.admin:
        return
    rule = getattr(view, "esl_user_rule", None)
    if account_id == identity.account_id:
        if rule == _OWN_USER and view_args.get("user_id") == identity.user_id:
            return
        if rule == _OWN_DEVICE and devices.owner_of(account_id, view_args.get("device_id")) == identity.user_id:
            return
    log.info("forbidden to user %s (priv_level %s): %s on account %s", identity.user_id,
             identity.priv_level, getattr(view, "__name__", "?"), account_id)
    raise Forbidden()


def _effective(value: Any) -> Any:
    # An absent flag is off: dropping `"require_pin": false` changes nothing.
    return None if value is MISSING or value is None or value is False else value


def user_edit_guard(identity: Identity | None) -> Guard | None:
    """The check an edit of a user by a `user` token passes (None for admins): 403 naming
    the first of `USER_LOCKED_FIELDS` the edit would change."""
    if identity is None or identity.admin:
        return None

    def guard(before: dict[str, Any], after: dict[str, Any]) -> None:
        for path in USER_LOCKED_FIELDS:
            if _effective(dotted_get(before, path)) != _effective(dotted_get(after, path)):
                log.info("forbidden to user %s: changing its own %s", identity.user_id, path)
                raise Forbidden(cause=path)
    return guard
