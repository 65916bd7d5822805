"""JSON Schema validation with Kazoo's rule names and error shape.

Each error becomes `{"<dotted.path>": {"<rule>": {"message": ..., ...}}}`; every failure of a
document is reported, not just the first.
"""
from __future__ import annotations

import copy
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators
from referencing import Registry, Resource

from models.errors import ValidationFailed

Errors = dict[str, dict[str, dict[str, Any]]]

SCHEMA_NAMES = ("common", "device", "user", "account", "query")

# jsonschema keyword -> Kazoo rule name; keywords not listed keep their own name.
_RULES = {
    "required": "required",
    "minLength": "minLength",
    "maxLength": "maxLength",
    "enum": "enum",
    "const": "enum",
    "type": "type",
    "pattern": "pattern",
    "minimum": "minimum",
    "maximum": "maximum",
    "propertyNames": "pattern",
}


@cache
def schemas() -> dict[str, dict[str, Any]]:
    """Every schema file, by name."""
    folder = resources.files("models") / "schemas"
    return {name: json.loads((folder / f"{name}.json").read_text()) for name in SCHEMA_NAMES}


def schema_document(kind: str) -> dict[str, Any]:
    """A copy of the `kind` schema (models/schemas/<kind>.json), as the validator uses it."""
    return copy.deepcopy(schemas()[kind])


@cache
def _anchored(pattern: str) -> re.Pattern[str]:
    # In Python `$` also matches before a final newline, so "alice\n" would pass
    # `^[a-z]+$`: a newline is exactly what must never reach FreeSWITCH. Anchor at the true end.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def string_rule(kind: str, pointer: str) -> re.Pattern[str]:
    """One regex for a string rule of a schema (`kind`, the JSON pointer of the definition in
    it): its pattern and its length range, as the validator applies them. For a hot path that
    checks a single value against a document rule (FreeSWITCH's lookups); use with `match`."""
    spec: Any = schemas()[kind]
    for part in pointer.strip("/").split("/"):
        spec = spec[part]
    lengths = f"(?=[\\s\\S]{{{spec.get('minLength', 0)},{spec.get('maxLength', '')}}}\\Z)"
    return re.compile(lengths + "(?:" + _anchored(spec.get("pattern", "")).pattern + ")")


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if isinstance(instance, str) and not _anchored(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _is_integer(checker: Any, instance: Any) -> bool:
    # JSON Schema counts 3.0 as an integer; stored as given, it would come back as 3.0 and reach
    # FreeSWITCH as "3.0". Only JSON integers are.
    return isinstance(instance, int) and not isinstance(instance, bool)


_StrictValidator = validators.extend(
    Draft202012Validator, {"pattern": _pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer))


@cache
def _registry() -> Registry:
    return Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas().values()
    )


@cache
def _validator(kind: str) -> Any:
    """The validator of a schema file (`device`) or of one definition in it (`query#listing`)."""
    name, _, definition = kind.partition("#")
    schema = schemas()[name]
    if definition:
        schema = {"$ref": f"{schema['$id']}#/$defs/{definition}"}
    return _StrictValidator(schema, registry=_registry())


def _message(error: Any, rule: str) -> dict[str, Any]:
    target = error.validator_value
    if rule == "required":
        return {"message": "Field is required but missing"}
    if rule == "minLength":
        return {"message": f"String must be at least {target} characters", "target": target}
    if rule == "maxLength":
        return {"message": f"String must not be more than {target} characters", "target": target}
    if rule == "enum":
        allowed = target if isinstance(target, list) else [target]
        return {"message": "Value not found in enumerated list of values", "target": allowed}
    if rule == "type":
        return {"message": f"Value is not of type {target}", "target": target}
    if rule == "pattern":
        if error.validator == "propertyNames":
            return {"message": "Key does not match the required pattern", "cause": error.instance}
        return {"message": f"Failed to match pattern '{target}'", "target": target}
    if rule == "minimum":
        return {"message": f"Value must be at least {target}", "target": target}
    if rule == "maximum":
        return {"message": f"Value must be at most {target}", "target": target}
    return {"message": error.message}


def _path(parts: Any) -> str:
    return ".".join(str(p) for p in parts)


def schema_errors(kind: str, doc: Any) -> Errors:
    """Every schema failure of `doc` against the `kind` schema (see `_validator`)."""
    errors: Errors = {}
    for error in _validator(kind).iter_errors(doc):
        # `if/then` and `propertyNames` wrap the real failure; report the leaf.
        leaves = [error]
        if error.validator in ("if", "then") or error.context:
            leaves = list(error.context) or [error]
        for leaf in leaves:
            rule = _RULES.get(leaf.validator, leaf.validator)
            if leaf.validator == "required":
                base = list(leaf.absolute_path)
                for missing in leaf.validator_value:
                    if isinstance(leaf.instance, dict) and missing not in leaf.instance:
                        errors.setdefault(_path([*base, missing]), {})[rule] = _message(leaf, rule)
                continue
            path = _path(leaf.absolute_path) or (leaf.instance if isinstance(leaf.instance, str) else "")
            errors.setdefault(path, {})[rule] = _message(leaf, rule)
    return errors


def validate(kind: str, doc: Any, extra: Errors | None = None) -> None:
    """Raise ValidationFailed with the schema's failures of `doc` plus `extra` (database rules)."""
    if not isinstance(doc, dict):
        raise ValidationFailed.single("data", "type", "Value is not of type object", target="object")
    errors = schema_errors(kind, doc)
    for path, rules in (extra or {}).items():
        errors.setdefault(path, {}).update(rules)
    if errors:
        raise ValidationFailed(errors)


# --- defaults, as Kazoo fills them -------------------------------------------------------------

def _resolved(schema: dict[str, Any], root: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`schema` with its `$ref` (to `#/...` of `root` or to another of our schemas) replaced by
    the schema it names, and the root that schema's own references are relative to."""
    ref = schema.get("$ref")
    if ref is None:
        return schema, root
    base, _, pointer = ref.partition("#")
    target_root = schemas()[base.removeprefix("esl-bridge:")] if base else root
    target = target_root
    for part in pointer.strip("/").split("/") if pointer else ():
        target = target[part]
    resolved, resolved_root = _resolved(target, target_root)
    return {**resolved, **{k: v for k, v in schema.items() if k != "$ref"}}, resolved_root


_NO_DEFAULT = object()
# (key, default or _NO_DEFAULT, plan for an object value, plan for each object of a list value)
Plan = tuple[tuple[str, Any, Any, Any], ...]


def _plan(schema: dict[str, Any], root: dict[str, Any]) -> Plan:
    steps = []
    for key, spec in schema.get("properties", {}).items():
        spec, spec_root = _resolved(spec, root)
        sub = _plan(spec, spec_root) if "properties" in spec else None
        items = spec.get("items")
        item_plan = None
        if isinstance(items, dict):
            items, items_root = _resolved(items, spec_root)
            item_plan = _plan(items, items_root) if "properties" in items else None
        default = spec.get("default", _NO_DEFAULT)
        if default is not _NO_DEFAULT or sub or item_plan:
            steps.append((key, default, sub, item_plan))
    return tuple(steps)


@cache
def _defaults_plan(kind: str) -> Plan:
    schema = schemas()[kind]
    return _plan(schema, schema)


def _add_defaults(doc: dict[str, Any], plan: Plan) -> None:
    for key, default, sub, item_plan in plan:
        if default is not _NO_DEFAULT and key not in doc:
            doc[key] = copy.deepcopy(default)
        value = doc.get(key)
        if sub and isinstance(value, dict):
            _add_defaults(value, sub)
        elif item_plan and isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    _add_defaults(item, item_plan)


def with_defaults(kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of `doc` with the `kind` schema's defaults filled in, as Kazoo does
    (`kz_json_schema:add_defaults`, `wh_json_schema:add_defaults` in 3.22, on every validated
    write: `cb_context:validate_request_data`).

    A missing key gets its default; the properties of an object are filled in when the object is
    there (given, or itself a default), and each object of a list from the list's `items`. An
    object without a default of its own is not created for the defaults of its properties:
    `call_forward`'s flags appear once a `call_forward` is given.
    """
    out = copy.deepcopy(doc)
    _add_defaults(out, _defaults_plan(kind))
    return out


def add_error(errors: Errors, path: str, rule: str, message: str, **extra: Any) -> None:
    """Record one database-rule failure in `errors`."""
    errors.setdefault(path, {})[rule] = {"message": message, **extra}
