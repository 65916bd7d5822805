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
from typing import Any

import peewee

from models.db import database

_MARK = "\x00prepared-arg-{}\x00"


class Prepared:
    """A query built by `build(*args)`, run as `rows(*values)` / `first(*values)`.

    `build` receives one placeholder per parameter and must use each only as a plain value
    compared with (or given to) a text column, or as a LIMIT: the values are passed to the
    database as given (no field conversion), so give them already in the column's form.
    """

    def __init__(self, build: Callable[..., peewee.BaseQuery], arity: int | None = None):
        self._build = build
        self._arity = len(inspect.signature(build).parameters) if arity is None else arity
        self._compiled: dict[type, tuple[peewee.BaseQuery, str, list[tuple[int | None, Any]]]] = {}

    def _compile(self) -> tuple[peewee.BaseQuery, str, list[tuple[int | None, Any]]]:
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
            found = self._compiled[backend] = (query, sql, slots)
        return found

    def rows(self, *values: Any) -> Iterator[Any]:
        """The rows, as the query itself would return them (model instances, tuples, ...)."""
        query, sql, slots = self._compile()
        params = [values[i] if i is not None else constant for i, constant in slots]
        return iter(query._get_cursor_wrapper(database.execute_sql(sql, params)))

    def tuples(self, *values: Any) -> Iterator[tuple[Any, ...]]:
        """The rows as the driver returns them, without peewee's field conversion: for columns
        the driver already gives as their Python value (text)."""
        _, sql, slots = self._compile()
        return iter(database.execute_sql(sql, [values[i] if i is not None else constant
                                               for i, constant in slots]))

    def first(self, *values: Any) -> Any:
        """The first row, or None."""
        return next(self.rows(*values), None)
