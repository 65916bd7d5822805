"""Endpoints FreeSWITCH itself calls (SPEC §7): the `mod_xml_curl` directory, the hotdesk
callouts and the presence lookup of the Lua scripts.

Only allowed source addresses holding the shared secret get in; every refusal is logged.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from typing import Any

from flask import Blueprint, Response

from models import account as accounts
from models import device as devices
from models import hotdesk
from models import user as users
from models.device import DirectoryEntry
from models.documents import Document
from web.directory_xml import NOT_FOUND, dial_string, forward_dial_string, user_document
from web.freeswitch_request import PREFIX, FormFields, Refused, form_fields
from web.pin_limiter import PinLimiter
from web.resource import runtime

log = logging.getLogger(__name__)

SIP_USER_RE = re.compile(r"^[A-Za-z0-9._+-]{1,32}\Z")
REALM_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")
DIGITS_RE = re.compile(r"^[0-9]{1,15}\Z")
NUMBER_RE = re.compile(r"^[0-9+*#]{1,35}\Z")
# A call-forward number as dialled through loopback: what the schema allows, punctuation dropped.
DIALABLE_JUNK_RE = re.compile(r"[() .-]")
DIALABLE_RE = re.compile(r"^\+?[0-9*#]{1,32}\Z")
CONTEXT_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")

# mod_xml_curl actions answered with a user; everything else gets the not-found document.
USER_ACTIONS = {"sip_auth", "user_call", None}

PROMPT_LOGGED_IN = "ivr/ivr-you_are_now_logged_in.wav"
PROMPT_LOGGED_OUT = "ivr/ivr-you_are_now_logged_out.wav"
PROMPT_ENTER_PIN = "ivr/ivr-please_enter_pin_followed_by_pound.wav"
PROMPT_INVALID = "ivr/ivr-that_was_an_invalid_entry.wav"


def blueprint() -> Blueprint:
    # The guard (web.freeswitch_request.require_freeswitch) runs from the app's before_request
    # hook, ahead of routing errors: unknown paths and wrong methods here are refused too.
    bp = Blueprint("freeswitch", __name__, url_prefix=PREFIX)
    bp.add_url_rule("/directory", view_func=directory, methods=["POST"])
    bp.add_url_rule("/hotdesk/<action>", view_func=hotdesk_action, methods=["POST"])
    bp.add_url_rule("/presence", view_func=presence_lookup, methods=["POST"])
    return bp


def _xml(text: str) -> Response:
    return Response(text, content_type="text/xml; charset=utf-8")  # as mimetype="text/xml" gives


# ---------------------------------------------------------------------------------------------
# Directory

def directory() -> Response:
    """Answer one `mod_xml_curl` directory lookup with the user XML or the not-found document."""
    try:
        fields = form_fields()
        entry = _directory_lookup(fields)
    except Refused as exc:
        log.warning("directory lookup refused: %s", exc)
        return _xml(NOT_FOUND)
    if entry is None:
        return _xml(NOT_FOUND)
    user, realm = fields["user"], fields["domain"]
    presence_id = _directory_presence_id(entry, user, realm)
    forward = _forward(entry)
    if forward is None:
        dial = dial_string(presence_id)
    else:
        number, ring_phone = forward
        dial = forward_dial_string(presence_id, number, _context(entry), ring_phone)
    return _xml(user_document(
        realm=realm,
        user=user,
        a1_hash=_a1_hash(entry, user, realm),
        dial=dial,
        variables=_directory_variables(entry, presence_id),
    ))


def _password(entry: DirectoryEntry) -> str | None:
    """The device's SIP password when it authenticates with one."""
    sip = entry.device.doc.get("sip") or {}
    if sip.get("method", "password") != "password":
        return None
    return sip.get("password") or None


def _a1_hash(entry: DirectoryEntry, user: str, realm: str) -> str:
    """md5 of `user:realm:password`. A forwarded device without a password gets one nobody
    knows (derived from the shared secret and its id): FreeSWITCH can dial it, nothing can
    register as it, and the credential is never empty (an empty one lets any password in)."""
    password = _password(entry)
    if password is None:
        secret = (runtime().settings.freeswitch_secret or "").encode()
        password = hmac.new(secret, entry.device.id.encode(), hashlib.sha256).hexdigest()
    return hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()


def _context(entry: DirectoryEntry) -> str:
    return entry.account.doc.get("dialplan_context", "default")


def _forward(entry: DirectoryEntry) -> tuple[str, bool] | None:
    """`(number, ring the phone too)` when the device's calls go to its call-forward number
    (Kazoo's `call_forward`: `substitute`, default true, replaces the phone); else None."""
    forward = entry.device.doc.get("call_forward") or {}
    if not forward.get("enabled") or not isinstance(forward.get("number"), str):
        return None
    number = DIALABLE_JUNK_RE.sub("", forward["number"])
    if not DIALABLE_RE.match(number) or not CONTEXT_RE.match(_context(entry)):
        log.warning("device %s: call-forward number %r or context not dialable; not forwarded",
                    entry.device.id, forward["number"])
        return None
    ring_phone = forward.get("substitute") is False and _password(entry) is not None
    return number, ring_phone


def _directory_lookup(fields: FormFields) -> DirectoryEntry | None:
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
        raise Refused(f"realms disagree: {sorted(realms)}")
    if "sip_auth_username" in fields and fields["sip_auth_username"].lower() != user.lower():
        raise Refused("sip_auth_username and user disagree")
    if not SIP_USER_RE.match(user) or not REALM_RE.match(domain):
        raise Refused(f"unsafe user or domain {user!r}@{domain!r}")
    entry = devices.directory_entry(domain, user)
    if entry is None or not entry.device.doc.get("enabled", True):
        return None
    if _password(entry) is None and _forward(entry) is None:
        # Nothing to dial and nothing to authenticate with (see _a1_hash for forwarded ones).
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


def _directory_variables(entry: DirectoryEntry, presence_id: str) -> list[tuple[str, str]]:
    variables = [("user_context", entry.account.doc.get("dialplan_context", "default")),
                 ("presence_id", presence_id)]
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
        fields = form_fields()
    except Refused as exc:
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
    limiter, phone = _limiter(), f"device:{device.id}"
    if limiter.locked(phone):
        # This phone keeps guessing (ids or PINs): nothing more from it for now.
        log.warning("hotdesk attempts from device %s are locked out", device.id)
        return _answer("too_many_attempts", action, PROMPT_INVALID, device_id=device.id)
    user = users.user_by_hotdesk_id(account_id, hotdesk_id)
    if user is None:
        limiter.failed(phone)
        return _answer("unknown_id", action, PROMPT_INVALID, device_id=device.id)
    ids = {"device_id": device.id, "user_id": user.id}
    if action == "logout":
        # Off this phone: whoever stands at it may, even once the user's hotdesking is off.
        hotdesk.logout(user, device.id)
        return _answer("ok", "logout", PROMPT_LOGGED_OUT, **ids)
    settings = user.doc.get("hotdesk") or {}
    if not settings.get("enabled", False) or not user.doc.get("enabled", True):
        return _answer("disabled", action, PROMPT_INVALID, **ids)
    if action == "toggle":
        on = hotdesk.hotdesked_devices(user.id)
        if on:
            # Out of every phone: from another phone than one the user is on, that needs the
            # PIN as a login would.
            refusal = None if device.id in on else _check_pin(user, pin, phone, "logout", ids)
            if refusal is not None:
                return refusal
            hotdesk.logout(user)
            return _answer("ok", "logout", PROMPT_LOGGED_OUT, **ids)
    refusal = _check_pin(user, pin, phone, "login", ids)
    if refusal is not None:
        return refusal
    hotdesk.login(user, device.id)
    return _answer("ok", "login", PROMPT_LOGGED_IN, **ids)


def _check_pin(user: Document, pin: str, phone: str, action: str, ids: dict[str, str]
               ) -> Response | None:
    """None when ``action`` may go ahead; else the answer to give (PIN asked, wrong, limited).

    Wrong PINs count against the user and against the phone (``phone``) they came from.
    """
    settings = user.doc.get("hotdesk") or {}
    if not settings.get("require_pin"):
        return None
    limiter = _limiter()
    if limiter.locked(user.id):
        log.warning("hotdesk PIN attempts for user %s are locked out", user.id)
        return _answer("too_many_attempts", action, PROMPT_INVALID, **ids)
    if not pin:
        return _answer("pin_required", action, PROMPT_ENTER_PIN, **ids)
    if not hmac.compare_digest(pin.encode(), str(settings.get("pin", "")).encode()) or not settings.get("pin"):
        limiter.failed(user.id)
        limiter.failed(phone)
        log.warning("wrong hotdesk PIN for user %s from device %s", user.id, ids["device_id"])
        return _answer("invalid_pin", action, PROMPT_INVALID, **ids)
    limiter.succeeded(user.id)
    return None


# ---------------------------------------------------------------------------------------------
# Presence lookup

def presence_lookup() -> Response:
    """The static presence id for a calling device (`sip_user`) or a dialled `number` that is
    a cellphone device's call-forward number; `null` when there is none."""
    try:
        fields = form_fields()
    except Refused as exc:
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
