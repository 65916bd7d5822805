"""The hotdesk callouts of the Lua scripts (SPEC §5): log the calling device in or out of a
user's hotdesk, with the user's hotdesk id and PIN; JSON answers the script acts on."""
from __future__ import annotations

import logging
import re
from typing import Any

from flask import Response

from models import device as devices
from models import hotdesk
from web.callouts.guard import REALM_RE, SIP_USER_RE, Refused, form_fields, json_answer

log = logging.getLogger(__name__)

DIGITS_RE = re.compile(r"^[0-9]{1,15}\Z")

PROMPT_LOGGED_IN = "ivr/ivr-you_are_now_logged_in.wav"
PROMPT_LOGGED_OUT = "ivr/ivr-you_are_now_logged_out.wav"
PROMPT_ENTER_PIN = "ivr/ivr-please_enter_pin_followed_by_pound.wav"
PROMPT_INVALID = "ivr/ivr-that_was_an_invalid_entry.wav"


def _answer(result: str, action: str, prompt: str = "", **extra: Any) -> Response:
    return json_answer({"result": result, "action": action, "prompt": prompt, **extra})


#: The prompt the caller hears for each result of a hotdesk request.
PROMPTS = {"unknown_id": PROMPT_INVALID, "disabled": PROMPT_INVALID, "invalid_pin": PROMPT_INVALID,
           "too_many_attempts": PROMPT_INVALID, "pin_required": PROMPT_ENTER_PIN}


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
    outcome = hotdesk.request_from_phone(action, device, hotdesk_id, pin)
    if outcome.result == "too_many_attempts":
        log.warning("hotdesk attempts from device %s (user %s) are locked out", device.id,
                    outcome.user_id or "unknown")
    elif outcome.result == "invalid_pin":
        log.warning("wrong hotdesk PIN for user %s from device %s", outcome.user_id, device.id)
    ids = {"device_id": device.id, **({"user_id": outcome.user_id} if outcome.user_id else {})}
    if outcome.result == "ok":
        prompt = PROMPT_LOGGED_IN if outcome.action == "login" else PROMPT_LOGGED_OUT
    else:
        prompt = PROMPTS[outcome.result]
    return _answer(outcome.result, outcome.action, prompt, **ids)
