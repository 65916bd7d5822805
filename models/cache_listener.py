"""The connection that keeps a process's caches right (`models.token_cache`,
`models.document_cache`): it LISTENs on each cache's channel and makes the cache forget what
each notification names.

One greenlet per process, on a connection of its own (a pooled connection serves requests and
would hold notifications until its next one). The caches are on only while this connection is
up and listening: when it is lost they are emptied and bypassed, and a new connection is tried
every `RECONNECT_SECONDS`. The connection is checked with a query every `CHECK_SECONDS` (or
half the document cache's TTL, when it is shorter), so that one gone without a word (a cable, a
firewall) turns the caches off then; until that check, each cache's TTL bounds what a lost
notification can cost. With a document cache that query is its `revalidate`: the revisions of
the documents it holds.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import psycopg2
from gevent.socket import wait_read

from models.db import is_postgresql
from models.document_cache import DocumentCache, Stored
from models.process_cache import ProcessCache
from models.tables import DocumentTable
from models.token_cache import TokenCache

log = logging.getLogger(__name__)

RECONNECT_SECONDS = 1.0
CHECK_SECONDS = 10.0
#: Bound on connecting (and LISTEN), and on a check's answer.
ANSWER_SECONDS = 5.0
#: How the connection shows in `pg_stat_activity`.
APPLICATION_NAME = "esl-bridge cache listener"


class CacheListener:
    """Feeds the caches with the notifications of one PostgreSQL connection made by `connect`."""

    def __init__(self, connect: Callable[[], Any], *, tokens: TokenCache | None = None,
                 documents: DocumentCache | None = None):
        self.token_cache = tokens
        self.document_cache = documents
        #: Each cache by the channel it listens on.
        caches: list[ProcessCache[Any, Any]] = [c for c in (tokens, documents) if c is not None]
        self._caches = {c.channel: c for c in caches}
        #: Opens a new psycopg2 connection (gevent-cooperative through `models.db`).
        self.connect = connect
        #: The server process of the listening connection, None while there is none.
        self.backend_pid: int | None = None
        self._greenlet: gevent.Greenlet | None = None
        self._conn: Any = None
        self._stopping = False

    @classmethod
    def for_database(cls, db: Any, token_ttl: float, document_ttl: float = 0) -> CacheListener | None:
        """A listener and its caches for `db` (a connected peewee database): tokens kept
        `token_ttl` seconds at most, documents `document_ttl` (0: that cache is not kept); None
        on SQLite, or when neither cache is kept."""
        if not is_postgresql(db) or (token_ttl <= 0 and document_ttl <= 0):
            return None
        params = {**db.connect_params, "application_name": APPLICATION_NAME}
        name = db.database
        return cls(lambda: psycopg2.connect(dbname=name, **params),
                   tokens=TokenCache(ttl=token_ttl) if token_ttl > 0 else None,
                   documents=DocumentCache(ttl=document_ttl) if document_ttl > 0 else None)

    def start(self) -> CacheListener:
        """Connect and listen in the background (the caches are off until it listens)."""
        if self._greenlet is None:
            self._stopping = False
            self._greenlet = gevent.spawn(self._run)
        return self

    def stop(self) -> None:
        """Close the connection; the caches stay off."""
        self._stopping = True
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=2)
            self._greenlet = None
        self._disconnect()

    def _run(self) -> None:
        failed = False
        while not self._stopping:
            try:
                self._connect()
                failed = False
                log.info("caches on: listening for changes (%s)", ", ".join(self._caches))
                self._listen()
            except (psycopg2.Error, OSError, gevent.Timeout) as exc:
                if not self._stopping:
                    # Once per outage: a database that stays down would say it every second.
                    (log.debug if failed else log.warning)(
                        "caches off: listening connection failed (%s); retrying every %g s",
                        " ".join(str(exc).split()) or type(exc).__name__, RECONNECT_SECONDS)
                failed = True
            finally:
                self._disconnect()
            gevent.sleep(RECONNECT_SECONDS)

    def _connect(self) -> None:
        with gevent.Timeout(ANSWER_SECONDS):
            conn = self._conn = self.connect()
            conn.autocommit = True
            for channel in self._caches:
                conn.cursor().execute(f"LISTEN {channel}")
        self.backend_pid = conn.get_backend_pid()
        # Only now: a change committed before the LISTEN took effect was never announced here,
        # but every lookup that may store starts after this and reads it.
        for cache in self._caches.values():
            cache.listening_changed(True)

    def _listen(self) -> None:
        conn = self._conn
        documents = self.document_cache
        interval = CHECK_SECONDS if documents is None else min(CHECK_SECONDS, documents.ttl / 2)
        due = time.monotonic() + interval
        while True:
            try:
                wait_read(conn.fileno(), timeout=max(due - time.monotonic(), 0.001))
            except TimeoutError:
                pass
            conn.poll()  # reads what arrived; raises when the server has gone
            notifies = conn.notifies
            while notifies:
                notice = notifies.pop(0)
                self._caches[notice.channel].forget(notice.payload)
            if time.monotonic() >= due:
                with gevent.Timeout(ANSWER_SECONDS):
                    if documents is not None and len(documents):
                        documents.revalidate(lambda table, ids: _revisions(conn, table, ids))
                    else:
                        conn.cursor().execute("SELECT 1")
                due = time.monotonic() + interval

    def _disconnect(self) -> None:
        for cache in self._caches.values():
            if cache.listening:
                cache.listening_changed(False)
        conn, self._conn, self.backend_pid = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except psycopg2.Error as exc:
                log.debug("closing the cache listener's connection: %s", exc)


def _revisions(conn: Any, table: str, ids: list[str]) -> dict[str, Stored]:
    """What is stored of those of `ids` that exist in `table` (one a document cache holds), as
    `document_cache.stored` gives it."""
    if table not in _CACHED_TABLES:
        raise ValueError(f"not a cached table: {table!r}")
    with conn.cursor() as cursor:
        cursor.execute(f'SELECT "id", "rev_n", "rev_hash", md5("doc") FROM "{table}" '
                       'WHERE "id" = ANY(%s)', (ids,))
        return {ident: (rev_n, rev_hash, digest) for ident, rev_n, rev_hash, digest in cursor}


_CACHED_TABLES = frozenset(t._meta.table_name for t in DocumentTable.__subclasses__() if t.cached_reads)
