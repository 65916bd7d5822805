"""PostgreSQL server-side prepared statements for the queries `models.prepared` builds once.

psycopg2 sends a query's values inside its text, so the server parses and plans every lookup
again. A statement `PREPARE`d once on a connection and then `EXECUTE`d skips that: it halves what
the server spends on a lookup by id (docs/benchmarks.md, workers). A prepared statement belongs
to its server connection and outlives transactions, rolled back or not.

A statement is named after its SQL, so every process gives the same query the same name and a
server connection shared through a pooler (pgbouncer) never holds two different statements
under one name; `PREPARE` finding the name taken therefore found this very statement.

Statements are used only outside a transaction, where a read may simply run again: a pooler in
transaction mode can run the `EXECUTE` on another server connection than the `PREPARE`. When
the statement is missing there, the read runs again as plain SQL and this process stops
preparing (one warning): plain SQL is right behind any pooler.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import re
import weakref
from typing import Any

import peewee

from models.db import database

log = logging.getLogger(__name__)

_PSYCOPG_MARK = re.compile(r"%([%s])")
#: SQLSTATEs: the statement name is unknown here; it is already prepared here.
_MISSING = "26000"
_TAKEN = "42P05"
# The statements each open connection has prepared, by the connection.
_prepared_on: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


class ServerStatement:
    """One query's SQL (psycopg2's `%s` marks) as a named server-side statement."""

    #: False once a statement went missing (a pooler in transaction mode): plain SQL from then.
    enabled = True

    def __init__(self, sql: str):
        self.sql = sql
        body = numbered(sql)
        self.name = "esl_bridge_" + hashlib.sha1(body.encode()).hexdigest()[:24]
        self.prepare = f"PREPARE {self.name} AS {body}"

    def run(self, params: list[Any]) -> Any:
        """The cursor of the query with `params`: the prepared statement where it may be used."""
        if not ServerStatement.enabled or database.in_transaction():
            return database.execute_sql(self.sql, params)
        try:
            return self._execute(params)
        except peewee.DatabaseError as exc:
            if _sqlstate(exc) != _MISSING:
                raise
            if ServerStatement.enabled:
                ServerStatement.enabled = False
                log.warning("a prepared statement went missing from its PostgreSQL connection "
                            "(a pooler in transaction mode?): queries are sent as plain SQL")
            return database.execute_sql(self.sql, params)

    def _execute(self, params: list[Any]) -> Any:
        ready = _prepared_on.setdefault(database.connection(), set())
        if self.name not in ready:
            try:
                database.execute_sql(self.prepare)
            except peewee.DatabaseError as exc:
                if _sqlstate(exc) != _TAKEN:
                    raise
            ready.add(self.name)
        marks = ", ".join(["%s"] * len(params))
        return database.execute_sql(f"EXECUTE {self.name} ({marks})" if params
                                    else f"EXECUTE {self.name}", params)


def numbered(sql: str) -> str:
    """`sql` with psycopg2's `%s` marks numbered as PostgreSQL's `$n` (and `%%` as `%`)."""
    numbers = itertools.count(1)
    return _PSYCOPG_MARK.sub(lambda m: "%" if m[1] == "%" else f"${next(numbers)}", sql)


def _sqlstate(exc: peewee.DatabaseError) -> str | None:
    return getattr(getattr(exc, "orig", None), "pgcode", None)
