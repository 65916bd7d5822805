"""The hotdesk callouts of the Lua scripts (SPEC §5): log the calling device in or out of a
user's hotdesk, with the user's hotdesk id and PIN; JSON answers the script acts on."""
from __future__ import annotations

import hmac
import logging
import re
from typing import Any

from flask import Response

from models import device as devices
from models import hotdesk
from models import user as users
from models.documents import Document
from web.callouts.guard import REALM_RE, SIP_USER_RE, Refused, form_fields, json_answer
from web.pin_limiter import PinLimiter
from web.resource import runtime

log = logging.getLogger(__name__)

DIGITS_RE = re.compile(r"^[0-9]{1,15}\Z")

PROMPT_LOGGED_IN = "ivr/ivr-you_are_now_logged_in.wav"
PROMPT_LOGGED_OUT = "ivr/ivr-you_are_now_logged_out.wav"
PROMPT_ENTER_PIN = "ivr/ivr-please_enter_pin_followed_by_pound.wav"
PROMPT_INVALID = "ivr/ivr-that_was_an_invalid_entry.wav"


def _answer(result: str, action: str, prompt: str = "", **extra: Any) -> Response:
    return json_answer({"result": result, "action": action, "prompt": prompt, **extra})


def _limiter() -> PinLimiter:
    rt = runtime()
    if "pin_limiter" not in rt.extras:
        rt.extras["pin_limiter"] = PinLimiter()
    return rt.extras["pin_limiter"]


def hotdesk_action(action: str) -> Response:
    """Log the caller's device in or out of a hotdesk (SPEC §5); answers are JSON for Lua."""
    if action not in ("login", "logout", "toggle"):
        return json_answer({"result": "error", "message": "unknown hotdesk action"}, status=404)
    try:
        fields = form_fields()
    except Refused as exc:
        log.warning("hotdesk %s refused: %s", action, exc)
        return json_answer({"result": "error", "message": "repeated form keys"}, status=400)
    sip_user, realm = fields.get("sip_user", ""), fields.get("realm", "")
    hotdesk_id, pin = fields.get("hotdesk_id", ""), fields.get("pin", "")
    bad = [name for name, value, pattern, needed in (
        ("sip_user", sip_user, SIP_USER_RE, True), ("realm", realm, REALM_RE, True),
        ("hotdesk_id", hotdesk_id, DIGITS_RE, action != "logout"), ("pin", pin, DIGITS_RE, False))
        if (value or needed) and not pattern.match(value)]
    if bad:
        return json_answer({"result": "error", "message": f"invalid {', '.join(bad)}"}, status=400)
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
