"""Hotdesk listings: per user, per device and for the whole account (SPEC §1, §5)."""
from __future__ import annotations

from flask import Blueprint, Response

from models import device as devices
from models import hotdesk
from models import user as users
from web.envelope import success
from web.resource import route


def register(bp: Blueprint) -> None:
    route(bp, "@/users/<user_id>/hotdesks", ["GET"])(user_hotdesks)
    route(bp, "@/devices/<device_id>/hotdesks", ["GET"])(device_hotdesks)
    route(bp, "@/hotdesks", ["GET"])(account_hotdesks)
    # Older SDKs call the account listing under /users.
    route(bp, "@/users/hotdesks", ["GET"])(account_hotdesks)


def user_hotdesks(account_id: str, user_id: str) -> Response:
    users.get_user(account_id, user_id)
    return success(hotdesk.user_hotdesks(account_id, user_id))


def device_hotdesks(account_id: str, device_id: str) -> Response:
    devices.get_device(account_id, device_id)
    return success(hotdesk.device_hotdesks(account_id, device_id))


def account_hotdesks(account_id: str) -> Response:
    return success(hotdesk.account_hotdesks(account_id))
