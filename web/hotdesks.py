"""Hotdesk listings: per user, per device and for the whole account (SPEC §1, §5)."""
from __future__ import annotations

from flask import Blueprint, Response

from models import device as devices
from models import hotdesk
from models import user as users
from web.resource import listing_query, page_reply, route


def register(bp: Blueprint) -> None:
    route(bp, "@/users/<user_id>/hotdesks", ["GET"])(user_hotdesks)
    route(bp, "@/devices/<device_id>/hotdesks", ["GET"])(device_hotdesks)
    route(bp, "@/hotdesks", ["GET"])(account_hotdesks)
    # Older SDKs call the account listing under /users.
    route(bp, "@/users/hotdesks", ["GET"])(account_hotdesks)


# Listings like the others (SPEC §2): pagination and filters from `listing_query`, an unknown
# user or device (404) before any bad listing parameter (400), as SPEC §3 orders them.

def user_hotdesks(account_id: str, user_id: str) -> Response:
    users.require_user(account_id, user_id)
    return page_reply(hotdesk.user_hotdesks_page(account_id, user_id, listing_query()))


def device_hotdesks(account_id: str, device_id: str) -> Response:
    devices.get_device(account_id, device_id)
    return page_reply(hotdesk.device_hotdesks_page(account_id, device_id, listing_query()))


def account_hotdesks(account_id: str) -> Response:
    return page_reply(hotdesk.account_hotdesks_page(account_id, listing_query()))
