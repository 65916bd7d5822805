"""Who is asking, and may they act on this account (SPEC §3)."""
from __future__ import annotations

import threading
from typing import Literal, overload

from flask import g, request

from models import account as accounts
from models.documents import is_id
from models.token import Identity, identify
from web.errors import Forbidden, Unauthorized


def request_token() -> str | None:
    """The token from `X-Auth-Token`, else the `auth_token` query parameter, else the body."""
    req = request._get_current_object()  # type: ignore[attr-defined]
    token = req.environ.get("HTTP_X_AUTH_TOKEN") or req.args.get("auth_token")
    if not token:
        body = g.get("body") or {}
        candidate = body.get("auth_token")
        token = candidate if isinstance(candidate, str) else None
    return token or None


_UNKNOWN = object()


@overload
def current_identity(required: Literal[True] = True) -> Identity: ...
@overload
def current_identity(required: bool) -> Identity | None: ...


def current_identity(required: bool = True) -> Identity | None:
    """The identity of the request's token; 401 when it is missing or unknown (if required)."""
    state = g._get_current_object()
    identity = state.get("identity", _UNKNOWN)
    if identity is _UNKNOWN:
        token = request_token()
        identity = state.identity = identify(token) if token else None
        if identity is not None:
            state.auth_token = token
    if identity is None and required:
        raise Unauthorized()
    return identity


class AncestryCache:
    """Account ancestry by id. An account never moves in the tree, so entries never go stale;
    a missing account is not cached (it may be created later)."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def get(self, account_id: str) -> tuple[str, ...] | None:
        found = self._known.get(account_id)
        if found is not None:
            return found
        chain = accounts.ancestry(account_id)
        if chain is None:
            return None
        with self._lock:
            self._known[account_id] = tuple(chain)
        return self._known[account_id]


def authorize(identity: Identity, account_id: str, cache: AncestryCache) -> None:
    """403 unless `account_id` is the identity's account or below it (unknown ids included, so
    that other accounts' ids cannot be probed)."""
    # Only a well-formed id reaches the database (a NUL in the path is a 500 on PostgreSQL).
    chain = cache.get(account_id) if is_id(account_id) else None
    if chain is None or identity.account_id not in chain:
        raise Forbidden()
