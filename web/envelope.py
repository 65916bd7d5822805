"""The Kazoo response envelope (SPEC §2), request ids and the request body."""
from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Iterable
from typing import Any

from flask import Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from models.errors import ValidationFailed
from models.pages import Page
from web.errors import VALIDATION_MESSAGE, ErrorReply, Malformed

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")


def request_id() -> str:
    """The request's id: a well-formed incoming `X-Request-ID`, else a new one.

    The id travels into FreeSWITCH as a channel variable, so anything that is not plainly safe
    is replaced rather than passed on.
    """
    state = g._get_current_object()
    found = state.get("request_id")
    if found is None:
        incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
        found = state.request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
    return found


def _dump(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


# A string as `_dump` writes it (ensure_ascii=False: json's own encoder of strings).
_string = json.encoder.encode_basestring


def _encoded_revision(encoded_data: str) -> str:
    """The revision of a listing: the md5 of its encoded data (SPEC §2), as sent."""
    return hashlib.md5(encoded_data.encode()).hexdigest()


def _response(body: dict[str, Any], status: int, revision: str | None) -> Response:
    return _json_response(_dump(body), body["request_id"], status, revision)


def stored_reply(stored: dict[str, Any], status: int) -> Response:
    """An envelope kept from an earlier request (without `auth_token` and `request_id`), sent
    again with this request's token and id."""
    state = g._get_current_object()
    body = {"auth_token": state.get("auth_token") or "", "status": stored.get("status"),
            "request_id": request_id(), **stored}
    return _response(body, status, stored.get("revision"))


def _json_response(text: str, request_id: str, status: int, revision: str | None) -> Response:
    response = Response(text, status=status, mimetype="application/json")
    response.headers["X-Request-ID"] = request_id
    if revision:
        response.headers["ETag"] = f'"{revision}"'
    return response


def success(data: Any, *, status: int = 200, revision: str | None = None,
            page: Page | None = None, token: str | None = None) -> Response:
    """A success envelope; listings pass their `page` for the pagination keys."""
    return success_encoded(_dump(data), status=status, revision=revision, page=page, token=token)


def success_encoded(encoded_data: str, *, status: int = 200, revision: str | None = None,
                    page: Page | None = None, token: str | None = None) -> Response:
    """`success` for data already encoded as JSON (a listing page's stored rows)."""
    # The data is encoded once: a listing's revision is the hash of that same text.
    if revision is None:
        revision = _encoded_revision(encoded_data)
    state = g._get_current_object()
    if token is None:
        token = state.get("auth_token") or ""
    rid = request_id()
    tail = ""
    if page is not None and state.get("api_version") != "v1":
        tail = f',"page_size":{len(page.encoded_rows)}'
        if page.start_key:
            tail += f',"start_key":{_string(page.start_key)}'
        if page.next_start_key:
            tail += f',"next_start_key":{_string(page.next_start_key)}'
    # Exactly the text of _dump({"auth_token": ..., "status": "success", "request_id": ...,
    # "revision": ..., "data": data, "page_size": ..., ...}), written out without the encoder's
    # walk over the envelope.
    text = (f'{{"auth_token":{_string(token)},"status":"success","request_id":{_string(rid)},'
            f'"revision":{_string(revision)},"data":{encoded_data}{tail}}}')
    return _json_response(text, rid, status, revision)


def _v1_validation(data: Any) -> Any:
    """v1's validation errors: each rule's message alone, `{"name": {"required": "..."}}`, as
    Kazoo keeps them for v1 clients (`cb_context:build_error_message(?VERSION_1, ...)`)."""
    if not isinstance(data, dict):
        return data
    return {path: {rule: detail.get("message") if isinstance(detail, dict) else detail
                   for rule, detail in rules.items()} if isinstance(rules, dict) else rules
            for path, rules in data.items()}


def failure(reply: ErrorReply) -> Response:
    """An error envelope: the same shape with `status: error` and the HTTP code as `error`."""
    data = reply.data
    if reply.message == VALIDATION_MESSAGE and g.get("api_version") == "v1":
        data = _v1_validation(data)
    body = {
        "auth_token": g.get("auth_token") or "undefined",
        "status": "error",
        "request_id": request_id(),
        "error": str(reply.status),
        "message": reply.message,
        "data": data,
    }
    if reply.revision:
        body["revision"] = reply.revision
    response = _response(body, reply.status, None)
    if reply.headers:
        response.headers.update(reply.headers)
    return response


# Kazoo documents nest a few levels; anything far deeper is hostile and would exhaust the
# recursion of the code that copies, validates and encodes documents (a 500 instead of a 400).
MAX_BODY_DEPTH = 64


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not valid JSON")


def _finite(text: str) -> float:
    # 1e400 parses as infinity, which would be stored and sent back as invalid JSON.
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


#: NUL (PostgreSQL can neither store nor compare it) and lone UTF-16 surrogates (``"\ud800"``
#: parses, but no UTF-8 encoder, hence no database, takes it).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_UNSTORABLE_TEXT = "strings may not contain NUL characters or lone surrogates (\\ud800-\\udfff)"


def _refusal(value: Any, limit: int) -> str | None:
    """Why a parsed body cannot be used: nested too deep, or a string no database can store
    (``_UNSTORABLE``), else None."""
    unstorable = _UNSTORABLE.search
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if unstorable(node):
                return _UNSTORABLE_TEXT
        elif isinstance(node, dict | list):
            if depth > limit:
                return f"nested deeper than {limit} levels"
            if isinstance(node, dict):
                if any(unstorable(key) for key in node):
                    return _UNSTORABLE_TEXT
                children: Iterable[Any] = node.values()
            else:
                children = node
            stack.extend((child, depth + 1) for child in children if isinstance(child, str | dict | list))
    return None


def _refuse_truncated_stream(raw: bytes) -> None:
    """413 for a streamed (chunked) body over the limit: werkzeug stops reading at the limit
    and hands over the truncated body without an error."""
    limit = request.max_content_length
    if limit is not None and request.content_length is None and len(raw) >= limit:
        if request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()


def check_query_string(environ: dict[str, Any]) -> None:
    """400 (`query_string.invalid`) for a query string whose raw bytes are not UTF-8: werkzeug
    would fail decoding it wherever it is first read, as a 500."""
    raw = environ.get("QUERY_STRING", "")
    if raw.isascii():
        return
    try:
        raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise ValidationFailed.single("query_string", "invalid", "the query string is not UTF-8") from None


def parse_body() -> dict[str, Any] | None:
    """The JSON body of the request as an object, or None when there is none (400 if malformed)."""
    environ = request.environ
    if not environ.get("CONTENT_LENGTH") and "HTTP_TRANSFER_ENCODING" not in environ:
        return None  # HTTP/1.1: no Content-Length and no Transfer-Encoding is no body (most GETs)
    raw = request.get_data(cache=True)
    _refuse_truncated_stream(raw)
    if not raw or not raw.strip():
        return None
    try:
        # NaN and Infinity are not JSON: accepted, they would be stored and sent back as invalid JSON.
        body = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except RecursionError as exc:
        raise Malformed(f"nested deeper than {MAX_BODY_DEPTH} levels") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed(str(exc)) from exc
    if not isinstance(body, dict):
        raise Malformed("the body must be a JSON object")
    refusal = _refusal(body, MAX_BODY_DEPTH)
    if refusal:
        raise Malformed(refusal)
    return body


def body_data(required: bool = True) -> Any:
    """The `data` member of the body (validated as an object by the caller's schema)."""
    body = g.get("body")
    if body is None or "data" not in body:
        if required:
            raise ValidationFailed.single("data", "required", "Field is required but missing")
        return None
    data = body["data"]
    if required and not isinstance(data, dict):
        raise ValidationFailed.single("data", "type", "Value is not of type object", target="object")
    return data
