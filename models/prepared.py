"""Queries whose SQL text is built once and then run with new values.

peewee writes the SQL of every query in Python: 0.1-0.2 ms for a lookup by id, thirty times
what SQLite takes to answer it, and the most of a request's time. The lookups every request
makes (its token, a document by id, a listing page, FreeSWITCH's directory) always have the same
shape, so `Prepared` has peewee build the SQL once per database backend (`Query.sql()`) and runs
it with new values through `Database.execute_sql`: peewee's public path, so its logging, query
hooks, connection check and error mapping all apply.

On PostgreSQL each is also a server-side prepared statement (`models.server_statements`), so that
the server does not parse and plan it again either.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import peewee

from models.db import database
from models.server_statements import ServerStatement

_MARK = "\x00prepared-arg-{}\x00"


@dataclass
class _Compiled:
    sql: str
    slots: list[tuple[int | None, Any]]  # (index of the value, or None: this constant)
    model: type[peewee.Model] | None  # what `first` builds from a row, None for a plain select
    names: tuple[str, ...]  # the model's field names, in the order the row gives them
    #: PostgreSQL: the query as a server-side statement (None elsewhere).
    statement: ServerStatement | None = None

    def params(self, values: tuple[Any, ...]) -> list[Any]:
        return [values[i] if i is not None else constant for i, constant in self.slots]

    def run(self, values: tuple[Any, ...]) -> Any:
        """The cursor of the query run with `values`."""
        params = self.params(values)
        if self.statement is None:
            return database.execute_sql(self.sql, params)
        return self.statement.run(params)


def _model_fields(query: peewee.BaseQuery) -> tuple[type[peewee.Model] | None, tuple[str, ...]]:
    """The model a select of whole fields returns, and its fields in selected order."""
    model = getattr(query, "model", None)
    selected = getattr(query, "selected_columns", None) or ()
    if model is None or not all(isinstance(c, peewee.Field) and c.model is model for c in selected):
        return None, ()
    return model, tuple(c.name for c in selected)


class Prepared:
    """A query built by `build(*args)`, run as `tuples(*values)` / `first(*values)`.

    `build` receives one placeholder per parameter and must use each only as a plain value
    compared with (or given to) a text column, or as a LIMIT: the values are passed to the
    database as given (no field conversion), so give them already in the column's form. Rows
    come back as the driver gives them, without peewee's field conversion: every column read
    this way is text or a number, which both drivers already give as their Python value.
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
            model, names = _model_fields(query)
            found = _Compiled(sql, slots, model, names)
            if isinstance(database.obj, peewee.PostgresqlDatabase):
                found.statement = ServerStatement(sql)
            self._compiled[backend] = found
        return found

    def tuples(self, *values: Any) -> Iterator[tuple[Any, ...]]:
        """The rows as tuples, in the order of the select."""
        return iter(self._compile().run(values))

    def first(self, *values: Any) -> Any:
        """The first row as a model instance (the query must select whole fields), or None."""
        compiled = self._compile()
        if compiled.model is None:
            raise TypeError(f"first() needs a select of one model's fields: {compiled.sql}")
        row = next(iter(compiled.run(values)), None)
        return None if row is None else compiled.model(**dict(zip(compiled.names, row, strict=True)))
