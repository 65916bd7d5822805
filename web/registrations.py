"""Registration status over HTTP (SPEC §6.4): which of an account's devices are registered."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from esl_bridge import actions as fs
from models import device as devices
from web.envelope import success
from web.resource import freeswitch_pool, route


def register(bp: Blueprint) -> None:
    route(bp, "@/devices/status", ["GET"])(device_status)


def device_status(account_id: str) -> Response:
    """The account's registered devices, from every node, by realm and SIP username."""
    rows: dict[str, dict[str, Any]] = {}
    for realm in devices.device_realms(account_id):
        registered = fs.registrations(freeswitch_pool(), realm)
        by_user = devices.devices_by_sip(realm, list({reg.user for reg in registered}))
        for reg in registered:
            device = by_user.get(reg.user.lower())
            if device is not None and device.account_id == account_id:
                rows[device.id] = {"device_id": device.id, "registered": True}
    return success(sorted(rows.values(), key=lambda row: row["device_id"]))
