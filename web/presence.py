"""BLF presence over HTTP (SPEC §6.3): reset a device's or a user's lamps, or set a state."""
from __future__ import annotations

from flask import Blueprint, Response, g

from esl_bridge import actions as fs
from esl_bridge.quoting import PRESENCE_STATES
from models import account as accounts
from models import device as devices
from models import presence
from models import user as users
from models.errors import ValidationFailed
from models.validation import Errors
from web.envelope import success
from web.privileges import own_device, own_user
from web.resource import freeswitch_pool, gate, route


def register(bp: Blueprint) -> None:
    route(bp, "@/devices/<device_id>/presence", ["POST"])(device_presence)
    route(bp, "@/users/<user_id>/presence", ["POST"])(user_presence)


def _presence_request() -> str | None:
    """The asked state: None for a reset, else one of `PRESENCE_STATES`; 400 otherwise."""
    body = g.get("body")
    # No body, or one carrying only the token (SPEC §3 allows it there): a reset.
    if body is None or set(body) <= {"auth_token"} or ("data" in body and body["data"] in (None, {})):
        return None
    data = body.get("data")
    if isinstance(data, dict):
        # `is True`: a dict comparison would also take {"reset": 1} (1 == True in Python).
        if (set(data) == {"reset"} and data["reset"] is True) or data == {"action": "reset"}:
            return None
        if data.get("action") == "set" and set(data) == {"action", "state"}:
            if data["state"] in PRESENCE_STATES:
                return data["state"]
            raise ValidationFailed.single("state", "enum", "Value not found in enumerated list of values",
                                          target=list(PRESENCE_STATES))
    raise ValidationFailed.single("data", "invalid",
                                  'expected no body, {"reset": true}, {"action": "reset"} or '
                                  f'{{"action": "set", "state": "{"|".join(PRESENCE_STATES)}"}}')


def _send_presence(presence_ids: list[str], state: str | None) -> Response:
    errors: Errors = {}
    for pid in presence_ids:
        gate(pid, "presence_id", "presence_id", errors)
    if errors:
        raise ValidationFailed(errors)
    fs.presence_many(freeswitch_pool(), presence_ids, state)
    return success("reset commands sent" if state is None else "presence state sent")


def _refuse_foreign_realm(doc: dict, realm: str) -> None:
    """400 for a presence id stored (before the rule existed) with another account's realm:
    sent, it would light that account's lamps."""
    errors: Errors = {}
    presence.realm_errors(doc, realm, errors)
    if errors:
        raise ValidationFailed(errors)


@own_device
def device_presence(account_id: str, device_id: str) -> Response:
    state = _presence_request()
    device = devices.get_device(account_id, device_id)
    realm = accounts.get_account(account_id).doc["realm"]
    _refuse_foreign_realm(device.doc, realm)
    pid = presence.presence_id(device.doc, realm)
    if pid is None:
        raise ValidationFailed.single("presence_id", "required", "the device has no presence id or SIP username")
    return _send_presence([pid], state)


@own_user
def user_presence(account_id: str, user_id: str) -> Response:
    state = _presence_request()
    user = users.get_user(account_id, user_id)
    realm = accounts.get_account(account_id).doc["realm"]
    _refuse_foreign_realm(user.doc, realm)
    static = presence.static_presence_id(user.doc, realm)
    if static:
        ids = [static]
    else:
        # A device's foreign presence id is skipped (logged by static_presence_id): its SIP
        # username at the account realm stands in.
        found = (presence.presence_id(d.doc, realm) for d in devices.user_devices(account_id, user_id))
        ids = list(dict.fromkeys(pid for pid in found if pid))
    if not ids:
        raise ValidationFailed.single("presence_id", "required", "the user has no presence id and no device")
    return _send_presence(ids, state)
