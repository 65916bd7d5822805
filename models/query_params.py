"""Query-string parameters, declared once in `schemas/query.json` and read through it.

A query string carries text, so each value is first read as its property declares: ASCII
digits as an integer (any other text stays text and fails `type`; more digits than any maximum
allows read as `_TOO_BIG`), a flag (`#/$defs/flag`) in any letter case. Every request is then
checked by the schema compiled with fastjsonschema (a few microseconds); only a request that
fails is validated again by jsonschema, which reports every failure in Kazoo's shape
(`models.validation`): one schema, the same rules either way.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import fastjsonschema

from models.validation import Errors, schema_errors, schemas

_FLAG = {"$ref": "#/$defs/flag"}
_TOO_BIG = 10**18  # above every maximum in query.json; int() of thousands of digits is refused


@dataclass(frozen=True)
class _Declared:
    check: Callable[[dict[str, Any]], Any]  # raises fastjsonschema.JsonSchemaException
    flags: frozenset[str]
    integers: frozenset[str]


@cache
def _declared(kind: str) -> _Declared:
    every = schemas()
    query = every["query"]
    properties = query["$defs"][kind].get("properties", {})
    by_id = {schema["$id"]: schema for schema in every.values()}
    check = fastjsonschema.compile({**query, "$ref": f"#/$defs/{kind}"},
                                   handlers={"esl-bridge": lambda uri: by_id[uri]})
    return _Declared(
        check=check,
        flags=frozenset(name for name, spec in properties.items() if spec == _FLAG),
        integers=frozenset(name for name, spec in properties.items() if spec.get("type") == "integer"))


def _integer(text: str) -> int | str:
    # str.isdigit() alone also holds for '²' and other scripts' digits, which int() refuses or reads.
    if not (text.isascii() and text.isdigit()):
        return text
    digits = text.lstrip("0")
    return int(digits or "0") if len(digits) <= 18 else _TOO_BIG


def as_declared(declared: _Declared, args: Mapping[str, str]) -> dict[str, Any]:
    """`args` with each declared integer and flag read as its schema checks it."""
    values: dict[str, Any] = dict(args)
    for name in declared.flags & values.keys():
        values[name] = values[name].lower()
    for name in declared.integers & values.keys():
        values[name] = _integer(values[name])
    return values


def read_query(kind: str, args: Mapping[str, str], errors: Errors) -> dict[str, Any]:
    """The parameters of `args` that the `kind` definition of query.json names, read as it
    declares (flags as bool, integers as int), and its other parameters as given.

    Failures are added to `errors`, each naming its parameter; the caller raises once its own
    checks are done, so one 400 reports them all. A failed parameter is left out of the result.
    """
    declared = _declared(kind)
    values = as_declared(declared, args)
    try:
        declared.check(values)
    except fastjsonschema.JsonSchemaException:
        for name, rules in schema_errors(f"query#{kind}", values).items():
            errors.setdefault(name, {}).update(rules)
            values.pop(name, None)
    for name in declared.flags & values.keys():
        values[name] = values[name] == "true"
    return values
