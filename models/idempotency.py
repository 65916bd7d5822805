"""Idempotency keys: the first answer to a create, kept so that a retry gets it again."""
from __future__ import annotations

import time
from dataclasses import dataclass

import peewee

from models.errors import Conflict
from models.tables import IdempotencyRow

#: How long a key is remembered (seconds).
KEEP_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Remembered:
    """A stored answer: the request it answered (`fingerprint`) and the response."""

    fingerprint: str
    status: int
    response: str
    location: str | None


def recall(scope: str, key: str, now: float | None = None) -> Remembered | None:
    """The answer stored under (scope, key) within the last `KEEP_SECONDS`, if any."""
    now = time.time() if now is None else now
    row = IdempotencyRow.select().where(
        (IdempotencyRow.scope == scope) & (IdempotencyRow.key == key)
        & (IdempotencyRow.created > now - KEEP_SECONDS)).first()
    if row is None:
        return None
    return Remembered(row.fingerprint, row.status, row.response, row.location)


def remember(scope: str, key: str, answer: Remembered, now: float | None = None) -> None:
    """Store an answer (inside the transaction that made the document); Conflict when another
    request stored one under the same key first. An expired row is replaced."""
    now = time.time() if now is None else now
    IdempotencyRow.delete().where(
        (IdempotencyRow.scope == scope) & (IdempotencyRow.key == key)
        & (IdempotencyRow.created <= now - KEEP_SECONDS)).execute()
    try:
        IdempotencyRow.insert(scope=scope, key=key, fingerprint=answer.fingerprint,
                              status=answer.status, response=answer.response,
                              location=answer.location, created=now).execute()
    except peewee.IntegrityError as exc:
        raise Conflict(f"idempotency key {key!r} stored by a concurrent request") from exc


def purge_expired(now: float | None = None) -> int:
    """Delete answers older than `KEEP_SECONDS`; returns how many."""
    now = time.time() if now is None else now
    return IdempotencyRow.delete().where(IdempotencyRow.created <= now - KEEP_SECONDS).execute()
