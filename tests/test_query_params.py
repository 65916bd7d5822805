"""Query-string parameters read through schemas/query.json (models.query_params): values read
as declared, and the compiled check every request makes agrees with jsonschema's full report."""
from __future__ import annotations

import random

import fastjsonschema
import pytest

from models.query_params import _declared, as_declared, read_query
from models.validation import schema_errors

VALUES = ["", "0", "1", "3", "4", "50", "120", "121", "1000", "1001", "007", "-1", "3.5", " 5", "5 ",
          "9" * 19, "9" * 5000, "²", "\u0663\u0660", "true", "false", "TRUE", "False", "yes", "no",
          "process", "bypass", "Bypass", "a" * 32, "A" * 32, "a" * 31, "a" * 32 + "\n", "x.y", "x..y",
          ".x", "a b", "sip.username", "\x00"]
NAMES = {
    "listing": ["paginate", "page_size", "start_key", "has_key", "key_missing", "filter_name",
                "filter_not_name", "filter_not_", "filter_not", "filter_not_.x", "filter_a..b",
                "filter_", "filter_bad key", "filter_sip.username", "other"],
    "quickcall": ["auto_answer", "ignore-early-media", "number_filter", "timeout", "media", "cid-name"],
    "sync": ["reboot", "other"],
}


def corpus(kind: str, n: int = 3000) -> list[dict[str, str]]:
    rng = random.Random(kind)
    names = NAMES[kind]
    return [{rng.choice(names): rng.choice(VALUES) for _ in range(rng.randrange(0, 4))} for _ in range(n)]


@pytest.mark.parametrize("kind", sorted(NAMES))
def test_the_compiled_check_and_jsonschema_agree(kind):
    declared = _declared(kind)
    for args in corpus(kind):
        errors: dict = {}
        read_query(kind, args, errors)
        # read_query only asks jsonschema when the compiled check failed: ask both directly.
        values = as_declared(declared, args)
        try:
            declared.check(values)
            fast_ok = True
        except fastjsonschema.JsonSchemaException:
            fast_ok = False
        assert fast_ok == (schema_errors(f"query#{kind}", values) == {}), args
        assert fast_ok == (errors == {}), args


def test_values_are_read_as_declared():
    errors: dict = {}
    values = read_query("listing", {"paginate": "FALSE", "page_size": "007", "start_key": "a" * 32,
                                    "filter_not_sip.username": "x", "auth_token": "t"}, errors)
    assert errors == {}
    assert values == {"paginate": False, "page_size": 7, "start_key": "a" * 32,
                      "filter_not_sip.username": "x", "auth_token": "t"}
    assert read_query("quickcall", {"timeout": "0", "media": "bypass"}, errors) == {"timeout": 0, "media": "bypass"}


def test_every_failure_is_reported_in_kazoos_shape_and_left_out():
    errors: dict = {}
    values = read_query("listing", {"page_size": "abc", "start_key": "zz", "paginate": "no",
                                    "filter_bad key": "x", "has_key": "ok"}, errors)
    assert values == {"has_key": "ok"}
    assert errors["page_size"] == {"type": {"message": "Value is not of type integer", "target": "integer"}}
    assert errors["paginate"] == {"enum": {"message": "Value not found in enumerated list of values",
                                           "target": ["true", "false"]}}
    assert set(errors["start_key"]) == {"pattern"} and set(errors["filter_bad key"]) == {"pattern"}
    assert set(errors) == {"page_size", "start_key", "paginate", "filter_bad key"}


def test_too_many_digits_are_over_the_maximum_not_a_crash():
    errors: dict = {}
    read_query("quickcall", {"timeout": "9" * 5000}, errors)
    assert errors == {"timeout": {"maximum": {"message": "Value must be at most 120", "target": 120}}}
