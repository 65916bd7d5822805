"""`GET /openapi.json`: a valid OpenAPI 3.1 document of every route, built from the store's JSON
schemas, and the API keeps to it under generated requests (schemathesis, a bounded number of
examples per operation: no 5xx, no answer the document does not describe)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from models import account as accounts
from models import db
from models import device as devices
from models import user as users
from models.token import issue_token
from models.validation import schema_document
from web.app import create_app
from web.config import Settings
from web.openapi import build

pytestmark = pytest.mark.store

#: Examples per operation: enough to meet each parameter's edge cases, few enough for CI.
MAX_EXAMPLES = int(os.environ.get("ESL_BRIDGE_FUZZ_EXAMPLES", "10"))


@dataclass
class Fuzzed:
    app: Any
    account_id: str
    token: str
    device_id: str
    user_id: str


@pytest.fixture
def fuzzed(database_url: str) -> Fuzzed:
    """The app over a fresh database with an account, a user, a device and an API-key token."""
    app = create_app(Settings(database_url=database_url, freeswitch_secret="x"))
    with db.database.connection_context():
        account = accounts.create_account({"name": "fuzz", "realm": "fuzz.test"})
        user = users.create_user(account.id, {"first_name": "F", "last_name": "Uzz"})
        device = devices.create_device(account, {"name": "phone", "owner_id": user.id,
                                                 "hotdesk": {"users": {user.id: {}}}})
        token = issue_token(account.id, None, "api_auth")
    return Fuzzed(app, account.id, token, device.id, user.id)


@pytest.fixture
def web_schema(fuzzed: Fuzzed) -> Any:
    return schemathesis.openapi.from_wsgi("/openapi.json", fuzzed.app)


def test_the_document_is_valid_openapi_3_1(fuzzed):
    response = fuzzed.app.test_client().get("/openapi.json")
    assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == "*"
    document = response.get_json()
    validate(document)
    assert document["openapi"] == "3.1.0"


def test_every_route_and_method_is_an_operation(fuzzed):
    document = fuzzed.app.test_client().get("/openapi.json").get_json()
    described = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    for rule in fuzzed.app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = fuzzed.app.view_functions[rule.endpoint]
        if getattr(view, "esl_refused", False):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in described, (path, method)
    assert len(described) >= 60


def test_bodies_are_the_store_schemas(fuzzed):
    """The device body is models/schemas/device.json itself (references moved to components)."""
    document = fuzzed.app.test_client().get("/openapi.json").get_json()
    put = document["paths"]["/v2/accounts/{account_id}/devices"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"]["properties"]["data"] == \
        {"$ref": "#/components/schemas/device"}
    device = document["components"]["schemas"]["device"]
    stored = schema_document("device")
    assert device["required"] == stored["required"]
    assert set(device["properties"]) == set(stored["properties"])
    assert device["properties"]["sip"]["properties"]["invite_format"] == \
        stored["properties"]["sip"]["properties"]["invite_format"]
    listing = document["paths"]["/v2/accounts/{account_id}/devices"]["get"]["parameters"]
    assert {"page_size", "start_key", "has_value", "created_from", "filters"} <= {p["name"] for p in listing}


def _cases() -> list[tuple[str, GenerationMode]]:
    """Every operation of the document (built from the routes: no database needed), with valid
    requests, and with invalid ones where it has parameters or a body to break."""
    document = build(create_app(Settings()))
    cases = []
    for path, item in document["paths"].items():
        for operation in item.values():
            cases.append((operation["operationId"], GenerationMode.POSITIVE))
            # FreeSWITCH gets the not-found document for a lookup it could not mean, not a 4xx.
            if (operation.get("parameters") or operation.get("requestBody")) \
                    and not path.startswith("/freeswitch/"):
                cases.append((operation["operationId"], GenerationMode.NEGATIVE))
    return sorted(cases, key=lambda case: (case[0], case[1].value))


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.mark.parametrize(("operation_id", "mode"), _cases())
def test_generated_requests_meet_the_document(fuzzed, web_schema, operation_id, mode):
    """Requests a client of the account would send (its token, its id; half the time its own
    device and user), and requests that break the document: never a 5xx, every answer in the
    document, every request that breaks it refused. (schemathesis's pytest plugin needs a pytest
    internal that pytest 9 removed: the strategy is run with hypothesis directly.)"""
    operation = web_schema.find_operation_by_id(operation_id)
    fixed = {name: value for name, value in (("account_id", fuzzed.account_id),)
             if any(p.name == name for p in operation.iter_parameters())}

    # FreeSWITCH's endpoints answer an allowed address with the secret (the rest ignore both).
    from_freeswitch = ({"environ_base": {"REMOTE_ADDR": "127.0.0.1"}}
                       if operation.path.startswith("/freeswitch/") else {})

    @given(case=operation.as_strategy(mode, path_parameters=fixed or None), own=st.booleans())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case: Any, own: bool) -> None:
        if own and case.path_parameters and mode is GenerationMode.POSITIVE:
            for name, value in (("device_id", fuzzed.device_id), ("user_id", fuzzed.user_id)):
                if name in case.path_parameters:
                    case.path_parameters[name] = value
        checks = CHECKS if mode is GenerationMode.POSITIVE else [*CHECKS, negative_data_rejection]
        case.call_and_validate(headers={"X-Auth-Token": fuzzed.token, "X-ESL-Bridge-Secret": "x"},
                               checks=checks, **from_freeswitch)

    run()
