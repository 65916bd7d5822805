"""Queries whose SQL text is built once and then run with new values.

peewee writes the SQL of every query in Python: 0.1-0.2 ms for a lookup by id, thirty times
what SQLite takes to answer it, and the most of a request's time. The lookups every request
makes (its token, a document by id, a listing page, FreeSWITCH's directory) always have the same
shape, so `Prepared` has peewee build the SQL once per database backend and keeps it; the rows
still come back through peewee's own row builder, exactly as the query would return them.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import peewee

from models.db import database

_MARK = "\x00prepared-arg-{}\x00"


@dataclass
class _Compiled:
    query: peewee.BaseQuery
    sql: str
    slots: list[tuple[int | None, Any]]  # (index of the value, or None: this constant)
    # What peewee's row builder worked out from the first cursor (columns, converters, joins):
    # the same for every run of the same SQL, and as costly to redo as running the lookup.
    row_builder: dict[str, Any] | None = field(default=None)

    def params(self, values: tuple[Any, ...]) -> list[Any]:
        return [values[i] if i is not None else constant for i, constant in self.slots]


def _execute(sql: str, params: list[Any]) -> Any:
    """`database.execute_sql` for a read, without the layers around the driver's cursor.

    Most requests make two lookups; peewee's path to the cursor (the proxy, logging, hooks,
    the connection check) costs as much as SQLite takes to answer. The same steps are kept:
    the query is logged (peewee's logger, at DEBUG), the connection opened if it is closed,
    driver errors become peewee's. With query hooks installed, peewee's own path is taken.
    Reads only: the stale-snapshot check of `db.SqliteDatabase.execute_sql` concerns writes.
    """
    db = database.obj
    if db.query_hooks:
        return db.execute_sql(sql, params)
    db._log_query(sql, params)
    with peewee.__exception_wrapper__:
        cursor = db.cursor()
        cursor.execute(sql, params)
    return cursor


class Prepared:
    """A query built by `build(*args)`, run as `rows(*values)` / `first(*values)`.

    `build` receives one placeholder per parameter and must use each only as a plain value
    compared with (or given to) a text column, or as a LIMIT: the values are passed to the
    database as given (no field conversion), so give them already in the column's form.
    """

    def __init__(self, build: Callable[..., peewee.BaseQuery], arity: int | None = None):
        self._build = build
        self._arity = len(inspect.signature(build).parameters) if arity is None else arity
        self._compiled: dict[type, _Compiled] = {}

    def _compile(self) -> _Compiled:
        backend = type(database.obj)
        found = self._compiled.get(backend)
        if found is None:
            marks = {_MARK.format(i): i for i in range(self._arity)}
            query = self._build(*marks)
            sql, params = query.sql()
            slots = [(marks.get(p) if isinstance(p, str) else None, p) for p in params]
            missing = set(marks.values()) - {i for i, _ in slots if i is not None}
            if missing:
                raise ValueError(f"prepared query lost its parameters {sorted(missing)}: {sql}")
            found = self._compiled[backend] = _Compiled(query, sql, slots)
        return found

    def rows(self, *values: Any) -> Iterator[Any]:
        """The rows, as the query itself would return them (model instances, tuples, ...)."""
        compiled = self._compile()
        wrapper = compiled.query._get_cursor_wrapper(_execute(compiled.sql, compiled.params(values)))
        if compiled.row_builder is None:
            before = dict(vars(wrapper))
            wrapper.initialize()
            compiled.row_builder = {key: value for key, value in vars(wrapper).items()
                                    if key not in before or before[key] is not value}
        else:
            vars(wrapper).update(compiled.row_builder)
        wrapper.initialized = True
        return iter(wrapper)

    def tuples(self, *values: Any) -> Iterator[tuple[Any, ...]]:
        """The rows as the driver returns them, without peewee's field conversion: for columns
        the driver already gives as their Python value (text)."""
        compiled = self._compile()
        return iter(_execute(compiled.sql, compiled.params(values)))

    def first(self, *values: Any) -> Any:
        """The first row, or None."""
        return next(self.rows(*values), None)
