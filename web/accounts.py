"""`/accounts/{A}`: the account document, sub-accounts and the API key."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, g

from models import account as accounts
from web.auth import current_identity
from web.envelope import body_data, success
from web.idempotency import idempotent
from web.resource import document_reply, if_match, route

log = logging.getLogger(__name__)


def register(bp: Blueprint) -> None:
    route(bp, "@", ["GET"])(get_account)
    route(bp, "@", ["POST"])(replace_account)
    route(bp, "@", ["PATCH"])(patch_account)
    route(bp, "@", ["PUT"])(create_sub_account)
    route(bp, "@/api_key", ["GET"])(get_api_key)
    route(bp, "@/api_key", ["PUT"])(rotate_api_key)


def get_account(account_id: str) -> Response:
    return document_reply(accounts.get_account(account_id))


def replace_account(account_id: str) -> Response:
    _, updated = accounts.update_account(account_id, body_data(), merge=False, if_match=if_match())
    return document_reply(updated)


def patch_account(account_id: str) -> Response:
    _, updated = accounts.update_account(account_id, body_data(), merge=True, if_match=if_match())
    return document_reply(updated)


@idempotent
def create_sub_account(account_id: str) -> Response:
    parent = accounts.get_account(account_id)
    return document_reply(accounts.create_account(body_data(), parent=parent), status=201)


def get_api_key(account_id: str) -> Response:
    account = accounts.get_account(account_id)
    return success({"api_key": accounts.api_key(account)})


def rotate_api_key(account_id: str) -> Response:
    """A new API key for the account; every token minted from the old one is revoked (the
    caller's own too, when it was one: the reply then carries no token)."""
    identity = current_identity()
    key, revoked = accounts.rotate_api_key(account_id)
    log.warning("API key of account %s rotated by %s of account %s; %d tokens minted from the old "
                "key revoked", account_id, identity.user_id or identity.method, identity.account_id,
                revoked)
    if identity.method == "api_auth" and identity.account_id == account_id:
        g.auth_token = None
    return success({"api_key": key})
