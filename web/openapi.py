"""`GET /openapi.json`: an OpenAPI 3.1 description of the API, built from the app's routes and
from the JSON schemas the store validates documents and listing parameters with
(`models/schemas/*.json`), so that it cannot drift from what is enforced.

Every `/v1` and `/v2` route is an operation, plus `/health`, `/metrics`, this document and the
FreeSWITCH-facing `/freeswitch/` endpoints (SPEC §7: form bodies from mod_xml_curl and the Lua
scripts, the shared secret, XML or JSON for Lua; not part of the Kazoo API). Bodies are
`{"data": <document>}` with the document's schema; answers are the Kazoo envelope, and every
error the same error envelope.
"""
from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, json

from esl_bridge.quoting import PRESENCE_STATES
from models.token import API_KEY_RE
from models.validation import SCHEMA_NAMES, schema_document
from web.representations import CSV_TYPES
from web.resource import public, runtime

#: Views whose answer is a page of listing rows (SPEC §2's parameters and Kazoo's filters).
LISTINGS = {"list_devices": "device_row", "list_users": "user_row",
            "user_hotdesks": "user_hotdesk_row", "device_hotdesks": "device_hotdesk_row",
            "account_hotdesks": "account_hotdesk_row"}
#: Other views answering rows, and the rows' schema.
ROW_ANSWERS = {"user_devices": "user_device_row", "device_status": "registration_row"}
#: Views answering one document of a kind, and the kind.
DOCUMENTS = {"device": "device", "user": "user", "account": "account", "sub_account": "account"}
_PATH_PARAMETER = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")

_ID = {"$ref": "#/components/schemas/common.id"}


def _rows() -> dict[str, Any]:
    """Listing rows (models/listing.py, models/hotdesk.py): keys without a value are absent."""
    def row(required: list[str], **props: Any) -> dict[str, Any]:
        return {"type": "object", "required": required, "properties": props}

    text = {"type": "string"}
    flag = {"type": "boolean"}
    device = dict(id=_ID, name=text, username=text, mac_address=text, owner_id=_ID, enabled=flag,
                  device_type=text)
    return {
        "device_row": row(["id"], **device),
        "user_device_row": row(["id", "hotdesked"], **{k: v for k, v in device.items() if k != "username"},
                               hotdesked=flag),
        "user_row": row(["id"], id=_ID, first_name=text, last_name=text, username=text, email=text,
                        priv_level=text, enabled=flag, presence_id=text),
        "user_hotdesk_row": row(["device_id"], device_id=_ID, device_name=text, mac_address=text,
                                owner_id=_ID),
        "device_hotdesk_row": row(["id"], id=_ID, first_name=text, last_name=text, hotdesk_id=text),
        "account_hotdesk_row": row(["device_id", "user_id"], device_id=_ID, device_name=text,
                                   user_id=_ID, first_name=text, last_name=text, hotdesk_id=text),
        "registration_row": row(["device_id", "registered"], device_id=_ID, registered=flag),
    }


def _envelopes() -> dict[str, Any]:
    common = {"auth_token": {"type": "string"}, "request_id": {"type": "string"}}
    return {
        "success_envelope": {
            "type": "object", "required": ["status", "request_id", "data"],
            "properties": {**common, "status": {"const": "success"}, "revision": {"type": "string"},
                           "data": {}, "page_size": {"type": "integer"},
                           "start_key": _ID, "next_start_key": _ID},
        },
        "error_envelope": {
            "type": "object", "required": ["status", "error", "message", "request_id"],
            "description": "SPEC §2: a validation error's data is {dotted.path: {rule: {message, ...}}} "
                           "(in v1 {dotted.path: {rule: message}})",
            "properties": {**common, "status": {"const": "error"},
                           "error": {"type": "string", "pattern": "^[0-9]{3}$"},
                           "message": {"type": "string"}, "data": {}},
        },
    }


def _request_bodies() -> dict[str, Any]:
    """Bodies that are not documents of the store (web/tokens.py, web/presence.py check them)."""
    hexed = {"type": "string", "pattern": "^[0-9a-fA-F]+$"}
    return {
        "user_auth": {"type": "object", "required": ["credentials"], "properties": {
            "credentials": {**hexed, "description": "md5 (or sha1) of username:password"},
            "method": {"enum": ["md5", "sha"]}, "account_name": {"type": "string"},
            "account_realm": {"type": "string"}}},
        "api_auth": {"type": "object", "required": ["api_key"],
                     "properties": {"api_key": {"type": "string", "pattern": API_KEY_RE.pattern.replace("\\Z", "$")}}},
        "presence": {"oneOf": [
            {"type": "object", "required": ["reset"], "properties": {"reset": {"const": True}},
             "additionalProperties": False},
            {"type": "object", "required": ["action"], "properties": {"action": {"const": "reset"}},
             "additionalProperties": False},
            {"type": "object", "required": ["action", "state"], "additionalProperties": False,
             "properties": {"action": {"const": "set"},
                            "state": {"enum": list(PRESENCE_STATES)}}}]},
    }


def _converted(kind: str, schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One of our schemas as OpenAPI components: (the schema, its `$defs` by component name),
    references rewritten to `#/components/schemas/...`."""
    def ref(target: str) -> str:
        base, _, pointer = target.partition("#")
        owner = base.removeprefix("esl-bridge:") if base else kind
        if pointer.startswith("/$defs/"):
            return f"#/components/schemas/{owner}.{pointer.removeprefix('/$defs/')}"
        return f"#/components/schemas/{owner}"

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (ref(v) if k == "$ref" else walk(v)) for k, v in node.items()
                    if k not in ("$id", "$schema", "$defs")}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    defs = {f"{kind}.{name}": walk(sub) for name, sub in schema.get("$defs", {}).items()}
    return walk(schema), defs


def _components() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for kind in SCHEMA_NAMES:
        converted, defs = _converted(kind, schema_document(kind))
        schemas.update(defs)
        if kind not in ("common", "query"):  # only definitions
            schemas[kind] = converted
    for kind in ("device", "user", "account"):
        # PATCH merges: nothing is required, and null removes a key (SPEC §4).
        schemas[f"{kind}_patch"] = {"type": "object", "description": f"merged into the {kind}; "
                                    "a null value removes the key"}
        schemas[f"{kind}_document"] = {"allOf": [{"$ref": f"#/components/schemas/{kind}"}, {
            "type": "object", "required": ["id"], "properties": {"id": _ID}}]}
    schemas.update(_rows())
    schemas.update(_envelopes())
    schemas.update(_request_bodies())
    return {
        "schemas": schemas,
        "securitySchemes": {
            "x_auth_token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"},
            "auth_token": {"type": "apiKey", "in": "query", "name": "auth_token"},
            "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <token> (Kazoo 4)"},
            "freeswitch_secret": {"type": "apiKey", "in": "header", "name": "X-ESL-Bridge-Secret",
                                  "description": "the shared secret (the Lua scripts)"},
            "freeswitch_basic": {"type": "http", "scheme": "basic",
                                 "description": "freeswitch:<the shared secret> (mod_xml_curl)"},
        },
    }


def _schema_ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {"allOf": [_schema_ref("success_envelope"),
                      {"type": "object", "properties": {"data": data}}]}


def _data_schema(view: str) -> dict[str, Any]:
    if view in LISTINGS:
        return {"type": "array", "items": _schema_ref(LISTINGS[view])}
    if view in ROW_ANSWERS:
        return {"type": "array", "items": _schema_ref(ROW_ANSWERS[view])}
    for suffix, kind in DOCUMENTS.items():
        if view.endswith("_" + suffix):
            return _schema_ref(f"{kind}_document")
    if view in ("get_api_key", "rotate_api_key"):
        return {"type": "object", "required": ["api_key"], "properties": {"api_key": {"type": "string"}}}
    return {}


def _body_schema(view: str, method: str) -> dict[str, Any] | None:
    if view in ("user_auth", "api_auth"):
        return _schema_ref(view)
    if view.endswith("_presence"):
        return _schema_ref("presence")
    if method in ("PUT", "POST", "PATCH"):
        for suffix, kind in DOCUMENTS.items():
            if view.endswith("_" + suffix):
                return _schema_ref(f"{kind}_patch" if method == "PATCH" else kind)
    return None


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


def _query_parameters(family: str) -> list[dict[str, Any]]:
    """The query parameters of an endpoint family, from its definition in schemas/query.json."""
    _, defs = _converted("query", schema_document("query"))
    definition = defs[f"query.{family}"]
    parameters = [_query(name, spec, spec.get("description", ""))
                  for name, spec in definition.get("properties", {}).items()]
    for spec in definition.get("patternProperties", {}).values():
        # filter_<key>=... : any number of them, as one free-form object.
        parameters.append({
            "name": "filters", "in": "query", "style": "form",
            "explode": True, "description": spec.get("description", ""),
            "schema": {"type": "object", "additionalProperties": {k: v for k, v in spec.items()
                                                                   if k != "description"},
                       "propertyNames": {"pattern": definition["propertyNames"]["pattern"]
                                         .split("|", 1)[1]}},
        })
    return parameters


def _action_parameters(view: str) -> list[dict[str, Any]]:
    """The query parameters of the FreeSWITCH actions."""
    if view.endswith("_quickcall"):
        # The caller id goes through the quoting gate (web/quickcall.py), the rest through query.json.
        return [_query("cid-name", {"type": "string"}, "caller id name shown on the phone"),
                _query("cid-number", {"type": "string"}, "caller id number"),
                *_query_parameters("quickcall")]
    if view == "device_sync":
        return _query_parameters("sync")
    return []


def _responses(view: str, method: str, created: bool) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": _envelope(_data_schema(view))}}
    if method == "GET":
        content["text/csv"] = {"schema": {"type": "string"}}
        content["application/javascript"] = {"schema": {"type": "string"}}
    ok = {"description": "success", "content": content}
    error = {"content": {"application/json": {"schema": _schema_ref("error_envelope")}}}
    responses = {("201" if created else "200"): ok}
    for code, meaning in (("400", "invalid request"), ("401", "no or bad token"),
                          ("403", "another account"), ("404", "unknown id")):
        responses[code] = {"description": meaning, **error}
    responses["default"] = {"description": "error (SPEC §2)", **error}
    return responses


def _operation(rule: Any, method: str, view: Any, version: str) -> dict[str, Any]:
    name = view.__name__
    doc = (view.__doc__ or name.replace("_", " ")).strip().splitlines()[0]
    operation: dict[str, Any] = {
        "operationId": f"{version}_{name}_{method.lower()}"
                       + ("_legacy" if rule.rule.endswith("/users/hotdesks") else ""),
        "summary": doc,
        "tags": [view.__module__.rsplit(".", 1)[-1]],
        "parameters": [{"name": p, "in": "path", "required": True,
                        "schema": _ID if p.endswith("_id") else {"type": "string"}}
                       for p in _PATH_PARAMETER.findall(rule.rule)],
        "responses": _responses(name, method, created=method == "PUT" and (
            name.startswith("create_") or name in ("user_auth", "api_auth"))),
    }
    if name in LISTINGS:
        operation["parameters"] += _query_parameters("listing")
    operation["parameters"] += _action_parameters(name)
    if method == "GET":
        operation["parameters"] += [_query("accept", {"type": "string", "examples": ["csv", *CSV_TYPES]},
                                           "csv: CSV instead of JSON, as Kazoo 4 (other values: JSON)")]
    body = _body_schema(name, method)
    if body is not None:
        operation["requestBody"] = {"required": not name.endswith("_presence"), "content": {
            "application/json": {"schema": {"type": "object", "required": ["data"],
                                            "properties": {"data": body}}}}}
    if getattr(view, "esl_public", False):
        operation["security"] = [{}, {"x_auth_token": []}, {"auth_token": []}]
    return operation


def _ops_paths() -> dict[str, Any]:
    plain = {"200": {"description": "success", "content": {"application/json": {"schema": _envelope({})}}},
             "default": {"description": "error", "content": {
                 "application/json": {"schema": _schema_ref("error_envelope")}}}}
    return {
        "/health": {"get": {"operationId": "health", "summary": "the database and every FreeSWITCH node",
                            "tags": ["ops"], "security": [], "responses": plain}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics", "tags": ["ops"],
                             "security": [], "responses": {"200": {"description": "metrics", "content": {
                                 "text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "this document", "tags": ["ops"],
                                  "security": [], "responses": {"200": {"description": "OpenAPI 3.1",
                                                                        "content": {"application/json": {
                                                                            "schema": {"type": "object"}}}}}}},
    }


def _freeswitch_paths() -> dict[str, Any]:
    """What FreeSWITCH posts: every field a text (a lookup outside the rules finds nothing)."""
    def form(*names: str) -> dict[str, Any]:
        return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "properties": {name: {"type": "string"} for name in names}}}}}

    refused = {"description": "not from an allowed address, or without the shared secret",
               "content": {"text/plain": {"schema": {"type": "string"}}}}
    lua = {"content": {"application/json": {"schema": {"type": "object"}}}}
    security: list[dict[str, list[str]]] = [{"freeswitch_secret": []}, {"freeswitch_basic": []}]

    def operation(name: str, summary: str, body: dict[str, Any], answers: dict[str, Any],
                  parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        found = {"operationId": name, "summary": summary, "tags": ["freeswitch"],
                 "security": security, "requestBody": body, "responses": {**answers, "403": refused}}
        if parameters:
            found["parameters"] = parameters
        return {"post": found}

    return {
        "/freeswitch/directory": operation(
            "freeswitch_directory", "mod_xml_curl's directory: the user XML, or the not-found document",
            form("section", "tag_name", "key_name", "key_value", "key", "user", "domain", "action",
                 "purpose", "type", "sip_auth_username", "sip_auth_realm", "Event-Calling-Function"),
            {"200": {"description": "the directory document",
                     "content": {"text/xml": {"schema": {"type": "string"}}}}}),
        "/freeswitch/hotdesk/{action}": operation(
            "freeswitch_hotdesk", "a hotdesk login, logout or toggle from the dialplan's Lua",
            form("sip_user", "realm", "hotdesk_id", "pin"),
            {"200": {"description": "the result and the prompt to play", **lua},
             "400": {"description": "a field breaks its rule, or a key is repeated", **lua},
             "404": {"description": "no such action", **lua}},
            [{"name": "action", "in": "path", "required": True,
              "schema": {"enum": ["login", "logout", "toggle"]}}]),
        "/freeswitch/presence": operation(
            "freeswitch_presence", "the presence id of a device, by SIP user or call-forward number",
            form("realm", "sip_user", "number"),
            {"200": {"description": "the presence id and device, or nothing", **lua},
             "400": {"description": "a field breaks its rule, or a key is repeated", **lua}}),
    }


def build(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of `app`."""
    paths: dict[str, Any] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        version = rule.endpoint.partition(".")[0]
        if version not in ("v1", "v2"):
            continue
        view = app.view_functions[rule.endpoint]
        if getattr(view, "esl_refused", False):
            continue
        path = _PATH_PARAMETER.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(rule, method, view, version)
    paths.update(_ops_paths())
    paths.update(_freeswitch_paths())
    return {
        "openapi": "3.1.0",
        "info": {"title": "esl-bridge", "version": "2",
                 "description": "The Kazoo Crossbar device API for FreeSWITCH (see docs/kazoo.md)."},
        "servers": [{"url": "/"}],
        "security": [{"x_auth_token": []}, {"bearer": []}, {"auth_token": []}],
        "paths": paths,
        "components": _components(),
    }


def blueprint() -> Blueprint:
    bp = Blueprint("openapi", __name__)
    bp.add_url_rule("/openapi.json", view_func=openapi_document, methods=["GET"])
    return bp


@public
def openapi_document() -> Response:
    """This API's OpenAPI 3.1 description (built once per process)."""
    extras = runtime().extras
    text = extras.get("openapi")
    if text is None:
        text = extras["openapi"] = json.dumps(build(current_app._get_current_object()))  # type: ignore[attr-defined]
    return Response(text, mimetype="application/json")
