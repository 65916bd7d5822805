"""The connection that keeps a process's `TokenCache` right: it LISTENs on the token channel and
makes the cache forget what each notification names.

One greenlet per process, on a connection of its own (a pooled connection serves requests and
would hold notifications until its next one). The cache is on only while this connection is up
and listening: when it is lost the cache is emptied and bypassed, and a new connection is tried
every `RECONNECT_SECONDS`. A connection that stays silent is checked with a query every
`CHECK_SECONDS`, so that one gone without a word (a cable, a firewall) turns the cache off then;
until that check, the cache's TTL bounds what a lost notification can cost.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent
import psycopg2
from gevent.socket import wait_read

from models.token_cache import CHANNEL, TokenCache, is_postgresql

log = logging.getLogger(__name__)

RECONNECT_SECONDS = 1.0
CHECK_SECONDS = 10.0
#: Bound on connecting (and LISTEN), and on a check's answer.
ANSWER_SECONDS = 5.0
#: How the connection shows in `pg_stat_activity`.
APPLICATION_NAME = "esl-bridge token listener"


class TokenListener:
    """Feeds `cache` with the notifications of one PostgreSQL connection made by `connect`."""

    def __init__(self, cache: TokenCache, connect: Callable[[], Any]):
        self.cache = cache
        #: Opens a new psycopg2 connection (gevent-cooperative through `models.db`).
        self.connect = connect
        #: The server process of the listening connection, None while there is none.
        self.backend_pid: int | None = None
        self._greenlet: gevent.Greenlet | None = None
        self._conn: Any = None
        self._stopping = False

    @classmethod
    def for_database(cls, db: Any, ttl: float) -> TokenListener | None:
        """A listener and its cache for `db` (a connected peewee database), with entries kept
        `ttl` seconds at most; None on SQLite, or when `ttl` is 0 (no cache)."""
        if not is_postgresql(db) or ttl <= 0:
            return None
        params = {**db.connect_params, "application_name": APPLICATION_NAME}
        name = db.database
        return cls(TokenCache(ttl=ttl), lambda: psycopg2.connect(dbname=name, **params))

    def start(self) -> TokenListener:
        """Connect and listen in the background (the cache is off until it listens)."""
        if self._greenlet is None:
            self._stopping = False
            self._greenlet = gevent.spawn(self._run)
        return self

    def stop(self) -> None:
        """Close the connection; the cache stays off."""
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
                log.info("token cache on: listening for token changes")
                self._listen()
            except (psycopg2.Error, OSError, gevent.Timeout) as exc:
                if not self._stopping:
                    # Once per outage: a database that stays down would say it every second.
                    (log.debug if failed else log.warning)(
                        "token cache off: listening connection failed (%s); retrying every %g s",
                        " ".join(str(exc).split()) or type(exc).__name__, RECONNECT_SECONDS)
                failed = True
            finally:
                self._disconnect()
            gevent.sleep(RECONNECT_SECONDS)

    def _connect(self) -> None:
        with gevent.Timeout(ANSWER_SECONDS):
            conn = self._conn = self.connect()
            conn.autocommit = True
            conn.cursor().execute(f"LISTEN {CHANNEL}")
        self.backend_pid = conn.get_backend_pid()
        # Only now: a change committed before the LISTEN took effect was never announced here,
        # but every lookup that may store starts after this and reads it.
        self.cache.listening_changed(True)

    def _listen(self) -> None:
        conn = self._conn
        while True:
            try:
                wait_read(conn.fileno(), timeout=CHECK_SECONDS)
            except TimeoutError:
                with gevent.Timeout(ANSWER_SECONDS):
                    conn.cursor().execute("SELECT 1")
            conn.poll()  # reads what arrived; raises when the server has gone
            notifies = conn.notifies
            while notifies:
                self.cache.forget(notifies.pop(0).payload)

    def _disconnect(self) -> None:
        if self.cache.listening:
            self.cache.listening_changed(False)
        conn, self._conn, self.backend_pid = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except psycopg2.Error as exc:
                log.debug("closing the token listener's connection: %s", exc)
