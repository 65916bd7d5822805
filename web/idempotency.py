"""`Idempotency-Key` on creates (`PUT`): a client whose reply was lost retries without making a
duplicate (the IETF httpapi draft "The Idempotency-Key HTTP Header Field").

- The key is 1 to 255 printable ASCII characters (quotes around it are dropped); anything else
  is 400 `Idempotency-Key.invalid`.
- Keys belong to the caller: the token's account and user. Another caller's equal key is
  another key, and never reaches this caller's answer.
- The first successful create (201) is stored in the transaction that stores the document, with
  a fingerprint of the request (method, path and body, `auth_token` left out), for 24 hours.
- The same key with the same request within that time answers the stored status and body (the
  token and request id are this request's), with `Idempotent-Replayed: true`; nothing is created.
- The same key with another request is 422 `idempotency_key_reused`: a key is one request.
- Two requests racing with one key: one creates, the other gets 409 and, retried, the replay.
- A create that failed stores nothing: retrying it is harmless anyway.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from typing import Any

from flask import Response, g, request

from models import idempotency as store
from models.db import database
from models.errors import ValidationFailed
from web.envelope import stored_reply
from web.errors import IdempotencyKeyReused

HEADER = "Idempotency-Key"
_KEY_RE = re.compile(r"^[\x20-\x7e]{1,255}\Z")


def _key() -> str | None:
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not _KEY_RE.match(key) or not key.strip():
        raise ValidationFailed.single(HEADER, "invalid", "Idempotency-Key must be 1 to 255 printable "
                                      "ASCII characters")
    return key


def _scope() -> str:
    identity = g.get("identity")
    if identity is None:
        return "anonymous"
    return f"{identity.account_id}:{identity.user_id or ''}"


def _fingerprint() -> str:
    body = {k: v for k, v in (g.get("body") or {}).items() if k != "auth_token"}
    text = json.dumps([request.method, request.path, body], sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _replay(found: store.Remembered) -> Response:
    response = stored_reply(json.loads(found.response), found.status)
    if found.location:
        response.headers["Location"] = found.location
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _remembered(fingerprint: str, response: Response) -> store.Remembered:
    body = json.loads(response.get_data(as_text=True))
    kept = {k: v for k, v in body.items() if k not in ("auth_token", "request_id")}
    return store.Remembered(fingerprint, response.status_code, json.dumps(kept, separators=(",", ":")),
                            response.headers.get("Location"))


def idempotent(view: Callable[..., Response]) -> Callable[..., Response]:
    """Honour `Idempotency-Key` on a create view (see the module's rules)."""

    @functools.wraps(view)
    def create(*args: Any, **kwargs: Any) -> Response:
        key = _key()
        if key is None:
            return view(*args, **kwargs)
        scope, fingerprint = _scope(), _fingerprint()
        found = store.recall(scope, key)
        if found is not None:
            if not hmac.compare_digest(found.fingerprint, fingerprint):
                raise IdempotencyKeyReused(key)
            return _replay(found)
        with database.atomic():
            response = view(*args, **kwargs)
            if response.status_code == 201:
                store.remember(scope, key, _remembered(fingerprint, response))
        return response

    return create
