"""Hotdesk listings: per user, per device and for the whole account (SPEC §1, §5)."""
from __future__ import annotations

from typing import Any, NoReturn

from flask import Blueprint, Response, request
from werkzeug.exceptions import MethodNotAllowed

from models import device as devices
from models import hotdesk
from models import user as users
from web.privileges import own_device, own_user
from web.resource import listing_query, page_reply, route

_REFUSED_METHODS = ["POST", "PATCH", "DELETE"]
_LISTING_METHODS = ["GET", "HEAD", "OPTIONS"]


def register(bp: Blueprint) -> None:
    route(bp, "@/users/<user_id>/hotdesks", ["GET"])(user_hotdesks)
    route(bp, "@/devices/<device_id>/hotdesks", ["GET"])(device_hotdesks)
    route(bp, "@/hotdesks", ["GET"])(account_hotdesks)
    # Older SDKs call the account listing under /users.
    route(bp, "@/users/hotdesks", ["GET"])(account_hotdesks)
    # Other methods of /users/hotdesks would fall through to /users/<user_id> (werkzeug tries
    # the next rule when the method does not match) and answer 404 for a user "hotdesks".
    route(bp, "@/users/hotdesks", _REFUSED_METHODS)(users_hotdesks_refused)
    bp.url_value_preprocessor(_refuse_at_routing)


# Listings like the others (SPEC §2): pagination and filters from `listing_query`, an unknown
# user or device (404) before any bad listing parameter (400), as SPEC §3 orders them.

@own_user
def user_hotdesks(account_id: str, user_id: str) -> Response:
    users.require_user(account_id, user_id)
    return page_reply(hotdesk.user_hotdesks_page(account_id, user_id, listing_query()))


@own_device
def device_hotdesks(account_id: str, device_id: str) -> Response:
    devices.get_device(account_id, device_id)
    return page_reply(hotdesk.device_hotdesks_page(account_id, device_id, listing_query()))


def account_hotdesks(account_id: str) -> Response:
    return page_reply(hotdesk.account_hotdesks_page(account_id, listing_query()))


def _not_allowed() -> MethodNotAllowed:
    return MethodNotAllowed(valid_methods=_LISTING_METHODS)


def _refuse_at_routing(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Report the refused methods as a routing failure, as werkzeug reports any other 405:
    the request line raises it before the body, the token and the account are looked at
    (SPEC §3)."""
    if endpoint is not None and endpoint.endswith("." + users_hotdesks_refused.__name__):
        request.routing_exception = _not_allowed()


def users_hotdesks_refused(account_id: str) -> NoReturn:
    """POST, PATCH or DELETE of `/users/hotdesks`: 405 (normally raised at routing already)."""
    raise _not_allowed()


users_hotdesks_refused.esl_refused = True  # type: ignore[attr-defined]
