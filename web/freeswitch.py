"""Endpoints FreeSWITCH itself calls (SPEC §7): the `mod_xml_curl` directory, the hotdesk
callouts and the presence lookup of the Lua scripts.

Only allowed source addresses holding the shared secret get in; every refusal is logged.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import werkzeug.urls  # noqa: F401  (registers the "werkzeug.url_quote" error handler)
from flask import Blueprint, Response, request

from models import account as accounts
from models import device as devices
from models import hotdesk
from models import user as users
from models.device import DirectoryEntry
from models.documents import Document
from web.directory_xml import NOT_FOUND, user_document
from web.pin_limiter import PinLimiter
from web.resource import runtime

log = logging.getLogger(__name__)

BASIC_AUTH_USER = "freeswitch"
SECRET_HEADER = "X-ESL-Bridge-Secret"

SIP_USER_RE = re.compile(r"^[A-Za-z0-9._+-]{1,32}\Z")
REALM_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")
DIGITS_RE = re.compile(r"^[0-9]{1,15}\Z")
NUMBER_RE = re.compile(r"^[0-9+*#]{1,35}\Z")

# mod_xml_curl actions answered with a user; everything else gets the not-found document.
USER_ACTIONS = {"sip_auth", "user_call", None}

PROMPT_LOGGED_IN = "ivr/ivr-you_are_now_logged_in.wav"
PROMPT_LOGGED_OUT = "ivr/ivr-you_are_now_logged_out.wav"
PROMPT_ENTER_PIN = "ivr/ivr-please_enter_pin_followed_by_pound.wav"
PROMPT_INVALID = "ivr/ivr-that_was_an_invalid_entry.wav"


def blueprint() -> Blueprint:
    bp = Blueprint("freeswitch", __name__, url_prefix="/freeswitch")
    bp.before_request(_require_freeswitch)
    bp.add_url_rule("/directory", view_func=directory, methods=["POST"])
    bp.add_url_rule("/hotdesk/<action>", view_func=hotdesk_action, methods=["POST"])
    bp.add_url_rule("/presence", view_func=presence_lookup, methods=["POST"])
    return bp


class _Refused(Exception):
    pass


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


def _require_freeswitch() -> Response | None:
    """403 unless the request comes from an allowed address with the shared secret."""
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


class _Form:
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


def _form() -> _Form:
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
        return _Form({}, _as_given)
    parts = text.split("&")
    if "" not in parts:  # the usual body: no empty field, and (checked below) no escaped name
        fields: dict[str, str] = {}
        for part in parts:
            name, _, value = part.partition("=")
            fields[name] = value
        joined = "&".join(fields)  # no name holds "&": one look for an escape in any of them
        if len(fields) == len(parts) and "%" not in joined and "+" not in joined:
            return _Form(fields, _unquote_plus)
    pairs = [part.partition("=") for part in parts if part]
    names = [name for name, _, _ in pairs]
    joined = "&".join(names)
    if "%" in joined or "+" in joined:
        names = [_unquote_plus(name) for name in names]
    return _fields(names, [value for _, _, value in pairs], _unquote_plus)


def _fields(names: list[str], values: list[str], decode: Callable[[str], str]) -> _Form:
    fields = dict(zip(names, values, strict=True))
    if len(fields) != len(names):
        seen: set[str] = set()
        repeated: set[str] = set()
        for name in names:
            (repeated if name in seen else seen).add(name)
        raise _Refused(f"repeated form keys {sorted(repeated)}")
    return _Form(fields, decode)


def _xml(text: str) -> Response:
    return Response(text, content_type="text/xml; charset=utf-8")  # as mimetype="text/xml" gives


# ---------------------------------------------------------------------------------------------
# Directory

def directory() -> Response:
    """Answer one `mod_xml_curl` directory lookup with the user XML or the not-found document."""
    try:
        fields = _form()
        entry = _directory_lookup(fields)
    except _Refused as exc:
        log.warning("directory lookup refused: %s", exc)
        return _xml(NOT_FOUND)
    if entry is None:
        return _xml(NOT_FOUND)
    device = entry.device.doc
    password = (device.get("sip") or {}).get("password")
    user, realm = fields["user"], fields["domain"]
    a1_hash = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    return _xml(user_document(
        realm=realm,
        user=user,
        a1_hash=a1_hash,
        presence_id=_directory_presence_id(entry, user, realm),
        variables=_directory_variables(entry),
    ))


def _directory_lookup(fields: _Form) -> DirectoryEntry | None:
    if fields.get("section") != "directory" or "purpose" in fields:
        return None
    action = fields.get("action")
    if action not in USER_ACTIONS:
        return None
    user, domain = fields.get("user"), fields.get("domain")
    if not user or not domain:
        return None
    if fields.get("key", "id") != "id":
        return None
    # FreeSWITCH does not URL-encode key_value, and it is the realm the phone wrote into its
    # digest: the three realms must agree or someone is smuggling fields.
    realms = {fields[k].lower() for k in ("key_value", "domain", "sip_auth_realm") if k in fields}
    if len(realms) != 1:
        raise _Refused(f"realms disagree: {sorted(realms)}")
    if "sip_auth_username" in fields and fields["sip_auth_username"].lower() != user.lower():
        raise _Refused("sip_auth_username and user disagree")
    if not SIP_USER_RE.match(user) or not REALM_RE.match(domain):
        raise _Refused(f"unsafe user or domain {user!r}@{domain!r}")
    entry = devices.directory_entry(domain, user)
    if entry is None:
        return None
    doc = entry.device.doc
    sip = doc.get("sip") or {}
    if not doc.get("enabled", True) or not sip.get("password") or sip.get("method", "password") != "password":
        # A user without a credential would register with any password: never answer one.
        return None
    return entry


def _directory_presence_id(entry: DirectoryEntry, user: str, realm: str) -> str:
    return devices.static_presence_id(entry.device.doc, entry.account.doc["realm"]) or f"{user}@{realm}"


def _caller_id(entry: DirectoryEntry, kind: str) -> dict[str, str]:
    """The device's caller id of `kind`, else its owner's (Kazoo's order)."""
    for doc in (entry.device.doc, entry.owner.doc if entry.owner else {}):
        value = (doc.get("caller_id") or {}).get(kind) or {}
        if value.get("name") or value.get("number"):
            return {k: v for k, v in value.items() if k in ("name", "number") and isinstance(v, str)}
    return {}


def _directory_variables(entry: DirectoryEntry) -> list[tuple[str, str]]:
    variables = [("user_context", entry.account.doc.get("dialplan_context", "default"))]
    static = devices.static_presence_id(entry.device.doc, entry.account.doc["realm"])
    if static:
        variables.append(("presence_id", static))
    internal, external = _caller_id(entry, "internal"), _caller_id(entry, "external")
    for prefix, cid in (("effective", internal), ("outbound", external)):
        for part in ("name", "number"):
            if cid.get(part):
                variables.append((f"{prefix}_caller_id_{part}", cid[part]))
    variables.append(("esl_bridge_account_id", entry.account.id))
    variables.append(("esl_bridge_device_id", entry.device.id))
    if entry.owner is not None:
        variables.append(("esl_bridge_owner_id", entry.owner.id))
    return variables


# ---------------------------------------------------------------------------------------------
# Hotdesk callouts

def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _answer(result: str, action: str, prompt: str = "", **extra: Any) -> Response:
    return _json({"result": result, "action": action, "prompt": prompt, **extra})


def _limiter() -> PinLimiter:
    rt = runtime()
    if "pin_limiter" not in rt.extras:
        rt.extras["pin_limiter"] = PinLimiter()
    return rt.extras["pin_limiter"]


def hotdesk_action(action: str) -> Response:
    """Log the caller's device in or out of a hotdesk (SPEC §5); answers are JSON for Lua."""
    if action not in ("login", "logout", "toggle"):
        return _json({"result": "error", "message": "unknown hotdesk action"}, status=404)
    try:
        fields = _form()
    except _Refused as exc:
        log.warning("hotdesk %s refused: %s", action, exc)
        return _json({"result": "error", "message": "repeated form keys"}, status=400)
    sip_user, realm = fields.get("sip_user", ""), fields.get("realm", "")
    hotdesk_id, pin = fields.get("hotdesk_id", ""), fields.get("pin", "")
    bad = [name for name, value, pattern, needed in (
        ("sip_user", sip_user, SIP_USER_RE, True), ("realm", realm, REALM_RE, True),
        ("hotdesk_id", hotdesk_id, DIGITS_RE, action != "logout"), ("pin", pin, DIGITS_RE, False))
        if (value or needed) and not pattern.match(value)]
    if bad:
        return _json({"result": "error", "message": f"invalid {', '.join(bad)}"}, status=400)
    entry = devices.directory_entry(realm, sip_user)
    if entry is None or not entry.device.doc.get("enabled", True):
        return _answer("unknown_device", action, PROMPT_INVALID)
    device = entry.device
    account_id = entry.account.id
    if action == "logout" and not hotdesk_id:
        hotdesk.logout_all(account_id, device.id)
        return _answer("ok", "logout", PROMPT_LOGGED_OUT, device_id=device.id)
    user = users.user_by_hotdesk_id(account_id, hotdesk_id)
    if user is None:
        return _answer("unknown_id", action, PROMPT_INVALID, device_id=device.id)
    settings = user.doc.get("hotdesk") or {}
    if not settings.get("enabled", False) or not user.doc.get("enabled", True):
        return _answer("disabled", action, PROMPT_INVALID, device_id=device.id, user_id=user.id)
    if action == "logout":
        hotdesk.logout(user, device.id)
        return _answer("ok", "logout", PROMPT_LOGGED_OUT, device_id=device.id, user_id=user.id)
    if action == "toggle" and hotdesk.is_logged_in_anywhere(user.id):
        hotdesk.logout(user)
        return _answer("ok", "logout", PROMPT_LOGGED_OUT, device_id=device.id, user_id=user.id)
    refusal = _check_pin(user, pin, device.id)
    if refusal is not None:
        return refusal
    hotdesk.login(user, device.id)
    return _answer("ok", "login", PROMPT_LOGGED_IN, device_id=device.id, user_id=user.id)


def _check_pin(user: Document, pin: str, device_id: str) -> Response | None:
    """None when the login may go ahead; else the answer to give (PIN asked, wrong, limited)."""
    settings = user.doc.get("hotdesk") or {}
    if not settings.get("require_pin"):
        return None
    limiter = _limiter()
    ids = {"device_id": device_id, "user_id": user.id}
    if limiter.locked(user.id):
        log.warning("hotdesk PIN attempts for user %s are locked out", user.id)
        return _answer("too_many_attempts", "login", PROMPT_INVALID, **ids)
    if not pin:
        return _answer("pin_required", "login", PROMPT_ENTER_PIN, **ids)
    if not hmac.compare_digest(pin.encode(), str(settings.get("pin", "")).encode()) or not settings.get("pin"):
        limiter.failed(user.id)
        log.warning("wrong hotdesk PIN for user %s from device %s", user.id, device_id)
        return _answer("invalid_pin", "login", PROMPT_INVALID, **ids)
    limiter.succeeded(user.id)
    return None


# ---------------------------------------------------------------------------------------------
# Presence lookup

def presence_lookup() -> Response:
    """The static presence id for a calling device (`sip_user`) or a dialled `number` that is
    a cellphone device's call-forward number; `null` when there is none."""
    try:
        fields = _form()
    except _Refused as exc:
        log.warning("presence lookup refused: %s", exc)
        return _json({"result": "error", "message": "repeated form keys"}, status=400)
    realm, sip_user, number = fields.get("realm", ""), fields.get("sip_user"), fields.get("number")
    nothing = {"presence_id": None, "device_id": None}
    if not REALM_RE.match(realm) or (sip_user is None) == (number is None):
        return _json({"result": "error", "message": "give realm and one of sip_user, number"}, status=400)
    if sip_user is not None:
        if not SIP_USER_RE.match(sip_user):
            return _json({"result": "error", "message": "invalid sip_user"}, status=400)
        entry = devices.directory_entry(realm, sip_user)
        if entry is None or not entry.device.doc.get("enabled", True):
            return _json(nothing)
        device, account_realm = entry.device, entry.account.doc["realm"]
    else:
        if not NUMBER_RE.match(number or ""):
            return _json({"result": "error", "message": "invalid number"}, status=400)
        account = accounts.find_account(realm=realm)
        device = devices.device_by_forward_number(account.id, number) if account else None
        if device is None or not device.doc.get("enabled", True):
            return _json(nothing)
        account_realm = account.doc["realm"]
    return _json({"presence_id": devices.static_presence_id(device.doc, account_realm),
                  "device_id": device.id})
