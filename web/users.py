"""`/accounts/{A}/users`: users CRUD and the devices a user owns or is hotdesked into."""
from __future__ import annotations

from flask import Blueprint, Response

from models import device as devices
from models import user as users
from web.auth import current_identity
from web.envelope import body_data, success_encoded
from web.idempotency import idempotent
from web.privileges import own_user, user_edit_guard
from web.resource import document_reply, if_match, listing_query, page_reply, route, runtime


def register(bp: Blueprint) -> None:
    route(bp, "@/users", ["GET"])(list_users)
    route(bp, "@/users", ["PUT"])(create_user)
    route(bp, "@/users/<user_id>", ["GET"])(get_user)
    route(bp, "@/users/<user_id>", ["POST"])(replace_user)
    route(bp, "@/users/<user_id>", ["PATCH"])(patch_user)
    route(bp, "@/users/<user_id>", ["DELETE"])(delete_user)
    route(bp, "@/users/<user_id>/devices", ["GET"])(user_devices)


def list_users(account_id: str) -> Response:
    return page_reply(users.list_users(account_id, listing_query()))


@idempotent
def create_user(account_id: str) -> Response:
    return document_reply(users.create_user(account_id, body_data()), status=201)


@own_user
def get_user(account_id: str, user_id: str) -> Response:
    return document_reply(users.get_user(account_id, user_id, runtime().document_cache))


def _update(account_id: str, user_id: str, merge: bool) -> Response:
    _, updated = users.update_user(account_id, user_id, body_data(), merge=merge, if_match=if_match(),
                                   guard=user_edit_guard(current_identity()))
    return document_reply(updated)


@own_user
def replace_user(account_id: str, user_id: str) -> Response:
    return _update(account_id, user_id, merge=False)


@own_user
def patch_user(account_id: str, user_id: str) -> Response:
    return _update(account_id, user_id, merge=True)


def delete_user(account_id: str, user_id: str) -> Response:
    return document_reply(users.delete_user(account_id, user_id, if_match=if_match()))


@own_user
def user_devices(account_id: str, user_id: str) -> Response:
    rows = devices.user_device_texts(account_id, user_id)
    if not rows:
        # 404 for an unknown user. One with devices exists: a device's owner and hotdesk users
        # are users of its account, and deleting a user takes them off in the same transaction.
        users.require_user(account_id, user_id)
    return success_encoded("[" + ",".join(rows) + "]")
