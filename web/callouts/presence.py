"""The presence lookup of the dialplan's Lua script (SPEC §7): the static presence id to apply
to a call a device takes part in, found by the calling device or by a dialled number that is a
cellphone device's call-forward number."""
from __future__ import annotations

import logging
import re

from flask import Response

from models import account as accounts
from models import device as devices
from models import presence
from models.documents import Document
from web.callouts.guard import REALM_RE, SIP_USER_RE, Refused, form_fields, json_answer

log = logging.getLogger(__name__)

NUMBER_RE = re.compile(r"^[0-9+*#]{1,35}\Z")


def presence_lookup() -> Response:
    """The static presence id for a calling device (`sip_user`) or a dialled `number` that is
    a cellphone device's call-forward number; `null` when there is none."""
    try:
        fields = form_fields()
    except Refused as exc:
        log.warning("presence lookup refused: %s", exc)
        return json_answer({"result": "error", "message": "repeated form keys"}, status=400)
    realm, sip_user, number = fields.get("realm", ""), fields.get("sip_user"), fields.get("number")
    nothing = {"presence_id": None, "device_id": None}
    if not REALM_RE.match(realm) or (sip_user is None) == (number is None):
        return json_answer({"result": "error", "message": "give realm and one of sip_user, number"}, status=400)
    device: Document | None
    if sip_user is not None:
        if not SIP_USER_RE.match(sip_user):
            return json_answer({"result": "error", "message": "invalid sip_user"}, status=400)
        entry = devices.directory_entry(realm, sip_user)
        if entry is None or not entry.device.doc.get("enabled", True):
            return json_answer(nothing)
        device, account_realm = entry.device, entry.account.doc["realm"]
    else:
        if number is None or not NUMBER_RE.match(number):
            return json_answer({"result": "error", "message": "invalid number"}, status=400)
        account = accounts.find_account(realm=realm)
        device = devices.device_by_forward_number(account.id, number) if account else None
        if account is None or device is None or not device.doc.get("enabled", True):
            return json_answer(nothing)
        account_realm = account.doc["realm"]
    return json_answer({"presence_id": presence.static_presence_id(device.doc, account_realm),
                  "device_id": device.id})
