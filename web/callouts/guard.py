"""How a FreeSWITCH request gets in and is read (SPEC §7): allowed source addresses, the shared
secret (HTTP basic `freeswitch:<secret>` from mod_xml_curl, or `X-ESL-Bridge-Secret` from Lua),
and the form body, refusing repeated keys (a smuggled `&user=`).

FreeSWITCH calls the directory on every registration, so this path is kept lean: the usual
urlencoded body is split here with werkzeug's rules (checked against werkzeug's parser on
fuzzed bodies in `tests/test_freeswitch_form.py`), anything unusual goes through werkzeug.
"""
from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import logging
from collections.abc import Callable
from typing import Any, overload
from urllib.parse import unquote

import werkzeug.urls  # noqa: F401  (registers the "werkzeug.url_quote" error handler)
from flask import Response, request

from models.validation import string_rule
from web.resource import runtime

log = logging.getLogger(__name__)

BASIC_AUTH_USER = "freeswitch"
#: Every path FreeSWITCH calls lives under it (SPEC §7).
PREFIX = "/freeswitch"


#: A SIP user and a realm as the callouts accept them in their forms: the rules of the documents
#: (a lookup outside them can name no device).
SIP_USER_RE = string_rule("device", "properties/sip/properties/username")
REALM_RE = string_rule("common", "$defs/realm")


class Refused(Exception):
    """A request FreeSWITCH would never send (repeated keys, disagreeing fields)."""


# Addresses seen, and whether `freeswitch_allow` lets them in: FreeSWITCH calls from a few
# addresses, on every registration. Bounded, and dropped when the allowed networks change.
_SOURCES_KEPT = 256


def _allowed_source(rt: Any, address: str | None) -> bool:
    if not address:
        return False
    extras = rt.extras
    allow = rt.settings.freeswitch_allow
    kept = extras.get("freeswitch_sources")
    if kept is None or kept[0] is not allow:
        kept = extras["freeswitch_sources"] = (allow, {})
    known: dict[str, bool] = kept[1]
    found = known.get(address)
    if found is None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            found = False
        else:
            # Behind a dual-stack listener an IPv4 peer shows as ::ffff:a.b.c.d.
            ip = getattr(ip, "ipv4_mapped", None) or ip
            found = any(ip in network for network in allow)
        if len(known) >= _SOURCES_KEPT:
            known.clear()
        known[address] = found
    return found


def _basic_credentials(rt: Any, secret: str) -> bytes:
    """The `Authorization` header `mod_xml_curl` sends for `freeswitch:<secret>`, as bytes."""
    extras = rt.extras
    kept = extras.get("freeswitch_basic")
    if kept is None or kept[0] != secret:
        token = base64.b64encode(f"{BASIC_AUTH_USER}:{secret}".encode()).decode()
        kept = extras["freeswitch_basic"] = (secret, f"Basic {token}".encode())
    return kept[1]


def _presented_secret(rt: Any, environ: dict[str, Any], secret: str | None) -> str | None:
    header = environ.get("HTTP_X_ESL_BRIDGE_SECRET")
    if header:
        return header
    given = environ.get("HTTP_AUTHORIZATION")
    if given is None:
        return None
    # The header exactly as mod_xml_curl writes it for the right secret: that secret, without
    # werkzeug parsing it (anything else, right or wrong, goes through werkzeug's parser).
    if secret and hmac.compare_digest(given.encode(), _basic_credentials(rt, secret)):
        return secret
    try:
        auth = request.authorization
    except ValueError:  # werkzeug's base64 decoding of a header with non-ASCII characters
        return None
    if auth is not None and auth.type == "basic" and auth.username == BASIC_AUTH_USER:
        return auth.password
    return None


def require_freeswitch() -> Response | None:
    """403 unless a request under /freeswitch/ comes from an allowed address with the secret.

    Called for every request of the app (``web.app``'s before_request hook) before routing
    errors are raised, so that an unknown path or a wrong method under /freeswitch/ is refused
    (and logged) like any other request without the secret, instead of a 404 or 405.
    """
    path = request.path
    if path != PREFIX and not path.startswith(PREFIX + "/"):
        return None
    rt = runtime()
    secret = rt.settings.freeswitch_secret
    environ = request.environ
    presented = _presented_secret(rt, environ, secret)
    source = environ.get("REMOTE_ADDR")
    if not secret:
        reason = "no shared secret is configured (ESL_BRIDGE_FREESWITCH_SECRET)"
    elif not _allowed_source(rt, source):
        reason = "source address not allowed"
    elif presented is None or not hmac.compare_digest(presented.encode(), secret.encode()):
        reason = "missing or wrong secret"
    else:
        return None
    log.warning("refused %s %s from %s: %s", request.method, request.path, source, reason)
    return Response("forbidden\n", status=403, mimetype="text/plain")


def _unquote_plus(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    return unquote(text, errors="werkzeug.url_quote") if "%" in text else text


def _as_given(text: str) -> str:
    return text


class FormFields:
    """Form fields by name, each value decoded when it is read (a directory request carries
    ~45 fields and the lookup reads a few)."""

    __slots__ = ("_values", "_decode")

    def __init__(self, values: dict[str, str], decode: Callable[[str], str]):
        self._values = values
        self._decode = decode

    def __contains__(self, key: str) -> bool:
        return key in self._values

    def __getitem__(self, key: str) -> str:
        return self._decode(self._values[key])

    @overload
    def get(self, key: str, default: str) -> str: ...
    @overload
    def get(self, key: str, default: None = None) -> str | None: ...

    def get(self, key: str, default: str | None = None) -> str | None:
        value = self._values.get(key)
        return default if value is None else self._decode(value)


def _body() -> bytes:
    """The request body, as `request.get_data()` reads it.

    With a plain Content-Length within the limit, from a server that ends the input at that
    length itself (gevent's sets `wsgi.input_terminated`), werkzeug would read the same bytes
    through a wrapper that costs more than splitting the form: read them directly.
    """
    environ = request.environ
    length = environ.get("CONTENT_LENGTH")
    if (length and length.isascii() and length.isdigit() and "HTTP_TRANSFER_ENCODING" not in environ
            and environ.get("wsgi.input_terminated") is True):
        limit = request.max_content_length
        if limit is None or int(length) <= limit:
            return environ["wsgi.input"].read()
    return request.get_data()


def form_fields() -> FormFields:
    """The form fields, refusing a body that repeats a key (a smuggled `&user=`, SPEC §7).

    A urlencoded body (what FreeSWITCH and the Lua scripts send) is split here exactly as
    werkzeug's form parser does it (`urllib.parse.parse_qsl` keeping blank values, werkzeug's
    error handler for bad escapes, no fields for a body that is not UTF-8) without the machinery
    around it: for the ~45 fields of a directory request that cost as much as the lookup. Names
    are decoded at once, values when read. Other content types go through werkzeug.
    """
    environ = request.environ
    if (environ.get("CONTENT_TYPE") != "application/x-www-form-urlencoded"
            and request.mimetype != "application/x-www-form-urlencoded"):
        items = list(request.form.items(multi=True))
        return _fields([name for name, _ in items], [value for _, value in items], _as_given)
    try:
        text = _body().decode()
    except ValueError:
        return FormFields({}, _as_given)
    parts = text.split("&")
    if "" not in parts:  # the usual body: no empty field, and (checked below) no escaped name
        fields: dict[str, str] = {}
        for part in parts:
            name, _, value = part.partition("=")
            fields[name] = value
        joined = "&".join(fields)  # no name holds "&": one look for an escape in any of them
        if len(fields) == len(parts) and "%" not in joined and "+" not in joined:
            return FormFields(fields, _unquote_plus)
    pairs = [part.partition("=") for part in parts if part]
    names = [name for name, _, _ in pairs]
    joined = "&".join(names)
    if "%" in joined or "+" in joined:
        names = [_unquote_plus(name) for name in names]
    return _fields(names, [value for _, _, value in pairs], _unquote_plus)


def _fields(names: list[str], values: list[str], decode: Callable[[str], str]) -> FormFields:
    fields = dict(zip(names, values, strict=True))
    if len(fields) != len(names):
        seen: set[str] = set()
        repeated: set[str] = set()
        for name in names:
            (repeated if name in seen else seen).add(name)
        raise Refused(f"repeated form keys {sorted(repeated)}")
    return FormFields(fields, decode)


def json_answer(body: dict[str, Any], status: int = 200) -> Response:
    """A JSON answer for the Lua scripts."""
    return Response(json.dumps(body), status=status, mimetype="application/json")
