"""What a process remembers of token lookups on PostgreSQL, and the notifications that keep it
right when any process on the database revokes or changes tokens.

Every transaction that deletes or changes token rows calls `notify` with what it touched (a
user, an account's API-key tokens, one token, or everything). PostgreSQL delivers the
notification, on `CHANNEL`, to every listening connection once the transaction commits
(`models.cache_listener` keeps one per process), and the process that committed forgets the
same entries itself right after its commit, so that its own next request never waits for the
delivery.

A `TokenCache` answers for a token only while all of these hold, so that it never accepts a
token that the database no longer would once the revocation's notification is delivered:

- only tokens that were found are kept (a token just issued by another process is read from
  the database; a miss is never remembered);
- a lookup stores its row only if no notification was received since before it read
  (`generation`): a read that raced a revocation cannot store what the revocation removed;
- while no listener is connected (starting, connection lost, reconnecting) the cache is empty
  and neither answers nor stores: a notification sent then would be lost;
- an entry lives `ttl` seconds at most (a safety net for a connection that died without a
  word), and `max_entries` bounds the memory.

SQLite has no NOTIFY and needs no cache: `notify` does nothing there.
"""
from __future__ import annotations

import hashlib
import logging
import time
import weakref
from collections.abc import Callable
from typing import NamedTuple

from models.db import database, is_postgresql
from models.process_cache import ProcessCache

log = logging.getLogger(__name__)

#: The PostgreSQL notification channel of token changes.
CHANNEL = "esl_bridge_tokens"
#: Payload that forgets every entry (purges, migrations).
EVERYTHING = "*"
TTL_SECONDS = 5.0
MAX_ENTRIES = 10_000


def for_user(user_id: str) -> str:
    """Payload: the user's tokens were deleted or changed (disabled, deleted, new priv_level)."""
    return f"user:{user_id}"


def for_account(account_id: str) -> str:
    """Payload: the account's tokens were deleted or changed (its API key was rotated)."""
    return f"account:{account_id}"


def for_token(token: str) -> str:
    """Payload: one token was deleted. Named by a digest: a notification is readable by every
    session of the database that listens, and a token is a secret."""
    return f"token:{token_digest(token)}"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


class TokenRowValues(NamedTuple):
    """A token's row as `models.token` reads it."""

    account_id: str
    user_id: str | None
    method: str
    last_used: float
    priv_level: str | None


class _Entry(NamedTuple):
    row: TokenRowValues
    stored: float  # the cache's clock
    digest: str


class TokenCache(ProcessCache[str, _Entry]):
    """Token rows by token, for one process; see the module's docstring for when it answers.
    Every notification bumps `generation`, not only those that empty it."""

    channel = CHANNEL

    def __init__(self, ttl: float = TTL_SECONDS, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(ttl, max_entries, clock)
        _caches.add(self)

    def get(self, token: str) -> TokenRowValues | None:
        """The token's row if it is known and fresh enough to answer for."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        if self._clock() - entry.stored > self.ttl:
            self._entries.pop(token, None)
            return None
        return entry.row

    def store(self, token: str, row: TokenRowValues, generation: int) -> bool:
        """Remember `row`, read by a lookup that started at `generation`, unless a notification
        came in since (or the listener is not connected); whether it was stored."""
        if not self._may_store(generation):
            return False
        self._keep(token, _Entry(row, self._clock(), token_digest(token)))
        return True

    def forget(self, payload: str) -> int:
        """Drop what a notification names; returns how many entries went."""
        self.generation += 1
        kind, _, value = payload.partition(":")
        field = {"user": 1, "account": 0}.get(kind)
        if payload == EVERYTHING:
            gone = list(self._entries)
        elif field is not None:
            gone = [t for t, e in self._entries.items() if e.row[field] == value]
        elif kind == "token":
            gone = [t for t, e in self._entries.items() if e.digest == value]
        else:
            log.warning("token cache: unknown notification %r: forgetting everything", payload)
            gone = list(self._entries)
        for token in gone:
            del self._entries[token]
        return len(gone)


# The caches of this process, for the forgetting a commit does here without waiting for its
# notification to come back.
_caches: weakref.WeakSet[TokenCache] = weakref.WeakSet()


def _forget_here(payload: str) -> None:
    for cache in list(_caches):
        cache.forget(payload)


def notify(payload: str) -> None:
    """Tell every process's cache, when the current transaction commits, which tokens changed.

    PostgreSQL only (SQLite keeps no cache). Outside a transaction the change has already been
    committed by its own statement, and this process forgets at once.
    """
    if not is_postgresql(database.obj):
        return
    database.execute_sql("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
    database.after_commit(lambda: _forget_here(payload))

