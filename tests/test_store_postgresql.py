"""PostgreSQL connections: a lookup is a server-side prepared statement, prepared once on each
connection and named after its SQL; one that goes missing (a pooler in transaction mode) turns
preparing off without failing the read; a connection is checked out without a round trip, and
one the server has ended (a restart, `pg_terminate_backend`) is replaced, so the next request
still succeeds.

The statement naming runs everywhere; the rest needs a PostgreSQL test database (CI's second
pass).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest
from fixtures_web import TEST_DATABASE_ENV

from models import account as accounts
from models import db, server_statements
from models import device as devices
from models import documents as docs
from models.server_statements import ServerStatement, numbered
from models.tables import DeviceRow

pytestmark = pytest.mark.store

needs_postgresql = pytest.mark.skipif(
    not os.environ.get(TEST_DATABASE_ENV, "").startswith(("postgres://", "postgresql://")),
    reason=f"PostgreSQL's connections: set {TEST_DATABASE_ENV} to a PostgreSQL database")


SQL = """SELECT "doc" FROM "device" WHERE ("id" = %s) AND ("name" LIKE '5%%') LIMIT %s"""


def test_psycopg2_marks_become_numbered_parameters() -> None:
    assert numbered(SQL) == """SELECT "doc" FROM "device" WHERE ("id" = $1) AND ("name" LIKE '5%') LIMIT $2"""


def test_a_statement_is_named_after_its_sql_alone() -> None:
    # Every process names the same query alike: a server connection shared through a pooler
    # never holds two different statements under one name.
    assert ServerStatement(SQL).name == ServerStatement(SQL).name
    assert ServerStatement(SQL).name != ServerStatement(SQL.replace("LIMIT", "OFFSET")).name
    assert len(ServerStatement(SQL).name) <= 63  # PostgreSQL's longest name


@pytest.fixture
def watcher(database_url: str) -> Iterator[Any]:
    """A connection of its own, to look at the others from outside."""
    database = db.database.obj
    conn = psycopg2.connect(dbname=database.database, **database.connect_params)
    conn.autocommit = True
    yield conn
    conn.close()


def _backend(conn: Any, pid: int) -> tuple[str, str]:
    with conn.cursor() as cursor:
        cursor.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,))
        return cursor.fetchone()


def _prepared(statement_conn: Any) -> set[str]:
    with statement_conn.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


@pytest.fixture
def desk(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[], str]:
    """Statements on, an account with a device "desk", and what reads its name (a prepared
    lookup, on the caller's connection)."""
    monkeypatch.setattr(ServerStatement, "enabled", True)
    with db.database.connection_context():
        account = accounts.create_account({"name": "acme", "realm": "acme.test"})
        device = devices.create_device(account, {"name": "desk"})
    return lambda: docs.read(DeviceRow, device.id, account.id).doc["name"]


@needs_postgresql
def test_a_lookup_is_prepared_once_per_connection_and_again_on_a_new_one(watcher, desk) -> None:
    database = db.database
    for _ in range(3):
        with database.connection_context():
            assert desk() == "desk"
            conn = database.connection()
            pid = conn.get_backend_pid()
            assert _backend(watcher, pid)[1].startswith("EXECUTE esl_bridge_")
            assert any(name.startswith("esl_bridge_") for name in _prepared(conn))
    # The server ends the connection (as a restart would): the next check-out takes a new one,
    # where the statement is prepared again.
    with watcher.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))  # waits for its end
        assert cursor.fetchone() == (True,)
    with database.connection_context():
        assert desk() == "desk"
        assert database.connection().get_backend_pid() != pid


@needs_postgresql
def test_a_check_out_sends_nothing_to_the_server(watcher) -> None:
    database = db.database
    with database.connection_context():
        database.execute_sql("SELECT 42")
        pid = database.connection().get_backend_pid()
    with database.connection_context():  # the same connection, back from the pool
        assert database.connection().get_backend_pid() == pid
        assert _backend(watcher, pid) == ("idle", "SELECT 42")


@needs_postgresql
def test_a_statement_gone_missing_is_read_as_plain_sql_from_then_on(watcher, desk) -> None:
    """A pooler in transaction mode may run the EXECUTE on a server connection that never saw
    the PREPARE: the read still answers, and the process stops preparing."""
    database = db.database
    with database.connection_context():
        assert desk() == "desk"
        database.execute_sql("DEALLOCATE ALL")  # as another server connection would be
        assert desk() == "desk"
        assert ServerStatement.enabled is False
        assert desk() == "desk"
        assert _backend(watcher, database.connection().get_backend_pid())[1].startswith("SELECT")


@needs_postgresql
def test_a_statement_already_prepared_under_its_name_is_used(watcher, desk) -> None:
    """On a server connection a pooler shares, another process may have prepared the same
    query first: its name says it is the same statement."""
    database = db.database
    with database.connection_context():
        assert desk() == "desk"
        conn = database.connection()
        server_statements._prepared_on.pop(conn)  # this process forgets, the server does not
        assert desk() == "desk"
        assert _backend(watcher, conn.get_backend_pid())[1].startswith("EXECUTE esl_bridge_")
        assert ServerStatement.enabled is True
