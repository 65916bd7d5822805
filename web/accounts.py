"""`/accounts/{A}`: the account document, sub-accounts and the API key."""
from __future__ import annotations

from flask import Blueprint, Response

from models import account as accounts
from web.envelope import body_data, success
from web.resource import document_reply, if_match, route


def register(bp: Blueprint) -> None:
    route(bp, "@", ["GET"])(get_account)
    route(bp, "@", ["POST"])(replace_account)
    route(bp, "@", ["PATCH"])(patch_account)
    route(bp, "@", ["PUT"])(create_sub_account)
    route(bp, "@/api_key", ["GET"])(get_api_key)


def get_account(account_id: str) -> Response:
    return document_reply(accounts.get_account(account_id))


def replace_account(account_id: str) -> Response:
    _, updated = accounts.update_account(account_id, body_data(), merge=False, if_match=if_match())
    return document_reply(updated)


def patch_account(account_id: str) -> Response:
    _, updated = accounts.update_account(account_id, body_data(), merge=True, if_match=if_match())
    return document_reply(updated)


def create_sub_account(account_id: str) -> Response:
    parent = accounts.get_account(account_id)
    return document_reply(accounts.create_account(body_data(), parent=parent), status=201)


def get_api_key(account_id: str) -> Response:
    account = accounts.get_account(account_id)
    return success({"api_key": accounts.api_key(account)})
