"""Who is asking, and may they act on this account (SPEC §3)."""
from __future__ import annotations

import threading
from typing import Any, Literal, overload

from flask import g, request

from models import account as accounts
from models.documents import is_id
from models.token import Identity, identify, identify_api_key
from web.errors import Forbidden, Unauthorized
from web.resource import runtime

_BEARER = "bearer "


def api_key_in_query(view: Any) -> Any:
    """Mark a view whose `auth_token` query parameter may be the account's API key instead of
    a token (the seed's QuickCall URL: "API key or Auth Token")."""
    view.esl_api_key_in_query = True
    return view


def request_credential() -> tuple[str, str] | None:
    """The request's token and where it was found (SPEC §3): `X-Auth-Token`, else
    `Authorization: Bearer` (Kazoo 4), else the `auth_token` query parameter, else
    `auth_token` in the body."""
    req = request._get_current_object()  # type: ignore[attr-defined]
    environ = req.environ
    token = environ.get("HTTP_X_AUTH_TOKEN")
    if token:
        return token, "header"
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    if authorization[:len(_BEARER)].lower() == _BEARER and authorization[len(_BEARER):].strip():
        return authorization[len(_BEARER):].strip(), "header"
    token = req.args.get("auth_token")
    if token:
        return token, "query"
    body = g.get("body") or {}
    candidate = body.get("auth_token")
    if isinstance(candidate, str) and candidate:
        return candidate, "body"
    return None


def request_token() -> str | None:
    """The request's token (`request_credential` without where it came from)."""
    found = request_credential()
    return found[0] if found else None


_UNKNOWN = object()


@overload
def current_identity(required: Literal[True] = True, api_key_in_query: bool = False) -> Identity: ...
@overload
def current_identity(required: bool, api_key_in_query: bool = False) -> Identity | None: ...


def current_identity(required: bool = True, api_key_in_query: bool = False) -> Identity | None:
    """The identity of the request's token; 401 when it is missing or unknown (if required).

    An API key is a credential that mints tokens (`api_auth`), never a token, except in the
    query string of a view that says so (`api_key_in_query`: the QuickCall URL). A key is never
    echoed back as the reply's `auth_token`.
    """
    state = g._get_current_object()
    identity = state.get("identity", _UNKNOWN)
    if identity is _UNKNOWN:
        found = request_credential()
        identity = None
        if found is not None:
            token, where = found
            identity = identify(token, cache=runtime().token_cache)
            if identity is not None:
                state.auth_token = token
            elif api_key_in_query and where == "query":
                identity = identify_api_key(token)
        state.identity = identity
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
