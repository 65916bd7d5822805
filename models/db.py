"""The database connection: SQLite (WAL) by default, PostgreSQL when the URL says so.

Every model binds to `database`; `models.schema.connect` points it at the configured database.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlparse

import peewee
from gevent.monkey import get_original
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

from models.errors import Conflict

database = peewee.DatabaseProxy()


class DatabaseUrlError(ValueError):
    """The database URL names no backend we support."""


def _use_gevent_wait_callback() -> None:
    """Make psycopg2 yield to other greenlets while it waits on the server.

    Without it every PostgreSQL query blocks the whole process (DESIGN "gevent notes"). This is
    psycopg2's documented asynchronous-support hook, applied with gevent's own socket waits.
    """
    import psycopg2
    from gevent.socket import wait_read, wait_write
    from psycopg2 import extensions

    def wait(conn: Any, timeout: float | None = None) -> None:
        while True:
            state = conn.poll()
            if state == extensions.POLL_OK:
                return
            if state == extensions.POLL_READ:
                wait_read(conn.fileno(), timeout=timeout)
            elif state == extensions.POLL_WRITE:
                wait_write(conn.fileno(), timeout=timeout)
            else:
                raise psycopg2.OperationalError(f"bad state from poll: {state}")

    extensions.set_wait_callback(wait)


def _stale_snapshot(exc: BaseException) -> bool:
    """SQLite (WAL) refusing a write because the transaction's snapshot is stale."""
    orig = getattr(exc, "orig", None) or exc.__context__  # peewee keeps the driver's error
    return getattr(orig, "sqlite_errorname", None) == "SQLITE_BUSY_SNAPSHOT"


class SqliteDatabase(PooledSqliteDatabase):
    """SQLite whose write transactions take turns, several processes (workers) included.

    A transaction reads the document, then writes it only if its revision is unchanged. On
    PostgreSQL a rival's commit in between makes that conditional write match no row: Conflict.
    On SQLite every transaction begins IMMEDIATE (`open_database`): it takes the write lock
    first (waiting up to busy_timeout for another process's transaction to end) and reads after,
    so no rival commits in between. A deferred transaction would find the lock taken or its
    snapshot stale only when it came to write, and fail then, busy_timeout or not: two workers
    writing different documents got "database is locked" (500) and 409s. Should a snapshot still
    be stale (SQLITE_BUSY_SNAPSHOT), it is the Conflict it is on PostgreSQL, not a 500.
    """

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        try:
            return super().execute_sql(sql, params)
        except peewee.OperationalError as exc:
            if _stale_snapshot(exc):
                raise Conflict(f"another connection wrote since this transaction read: {exc}") from exc
            raise


class PostgresqlDatabase(PooledPostgresqlDatabase):
    """PostgreSQL through peewee's pool, checking a connection on check-out without a round trip.

    peewee's pool sends `SELECT 1` on every check-out, which doubled the queries of a token-cached
    `GET device` and cost the server as much as the request's own query (docs/benchmarks.md,
    workers). A connection the server has ended (restart, `pg_terminate_backend`, idle timeout)
    has its socket readable with the server's last message or the end of the stream, which one
    `select` with no timeout sees; an idle, live connection has nothing to read. Anything less
    certain (a transaction left open) gets peewee's own check. A connection ended in the
    instant between its check-out and its query fails that request, as one in flight would.
    """

    def _is_closed(self, conn: Any) -> bool:
        if conn.closed or conn.get_transaction_status() != TRANSACTION_STATUS_IDLE:
            return super()._is_closed(conn)
        if _readable(conn):
            conn.close()  # something arrived while idle: the server is gone or going
            return True
        return False


# The unpatched call: with no timeout it never needs to yield to other greenlets.
_select_now = get_original("select", "select")


def _readable(conn: Any) -> bool:
    """Whether `conn` has something to read right now."""
    return bool(_select_now([conn.fileno()], [], [], 0)[0])


def open_database(url: str) -> peewee.Database:
    """Build (without connecting) the database the URL names."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        # sqlite:///relative.db, sqlite:////absolute/path.db, sqlite:///:memory:
        path = unquote(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else ""
        if not path:
            raise DatabaseUrlError(f"no file in SQLite URL {url!r}")
        return SqliteDatabase(
            path,
            max_connections=64,
            stale_timeout=600,
            timeout=10,
            check_same_thread=False,
            lock_type="IMMEDIATE",
            pragmas={
                "journal_mode": "wal",
                "synchronous": "normal",
                "foreign_keys": 1,
                "busy_timeout": 5000,
                "cache_size": -16000,
                # Read pages straight from the OS cache rather than copying each one in with a
                # system call: listings of a large account touch a page per row.
                "mmap_size": 256 * 1024 * 1024,
            },
        )
    if parsed.scheme in ("postgres", "postgresql"):
        _use_gevent_wait_callback()
        return PostgresqlDatabase(
            unquote(parsed.path.lstrip("/")),
            user=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            host=parsed.hostname or None,
            port=parsed.port or None,
            max_connections=32,
            stale_timeout=600,
            timeout=10,
        )
    raise DatabaseUrlError(f"unsupported database URL scheme {parsed.scheme!r}")


def is_postgresql(db: Any) -> bool:
    """Whether `db` (a peewee database) is PostgreSQL: the backend whose lookups each process
    caches, kept right by `LISTEN`/`NOTIFY`."""
    return isinstance(db, peewee.PostgresqlDatabase)


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@", 1)
    return url
