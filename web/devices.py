"""`/accounts/{A}/devices`: devices CRUD; FreeSWITCH side effects run after each commit."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g

from models import account as accounts
from models import device as devices
from models.documents import Document
from web import side_effects
from web.envelope import body_data
from web.idempotency import idempotent
from web.privileges import own_device
from web.resource import document_reply, if_match, listing_query, page_reply, route, runtime


def register(bp: Blueprint) -> None:
    route(bp, "@/devices", ["GET"])(list_devices)
    route(bp, "@/devices", ["PUT"])(create_device)
    route(bp, "@/devices/<device_id>", ["GET"])(get_device)
    route(bp, "@/devices/<device_id>", ["POST"])(replace_device)
    route(bp, "@/devices/<device_id>", ["PATCH"])(patch_device)
    route(bp, "@/devices/<device_id>", ["DELETE"])(delete_device)


def _sync_flag(account: Document, data: dict[str, Any], device_id: str | None = None,
               merge: bool = False) -> bool:
    """`"sync": true` asks for a check-sync after the update; it is never stored. `null` is
    as absent. Anything else is a 400 that also names whatever else the document breaks."""
    value = data.get("sync")
    if value is None or isinstance(value, bool):
        return bool(value)
    devices.refuse_device(account, data, {"sync": {"type": {
        "message": "Value is not of type boolean", "target": "boolean"}}}, device_id=device_id, merge=merge)


def list_devices(account_id: str) -> Response:
    return page_reply(devices.list_devices(account_id, listing_query()))


@idempotent
def create_device(account_id: str) -> Response:
    data = body_data()
    account = accounts.get_account(account_id)
    _sync_flag(account, data)
    created = devices.create_device(account, data)
    response = document_reply(created, status=201)
    response.headers["Location"] = f"/{g.api_version}/accounts/{account_id}/devices/{created.id}"
    return response


@own_device
def get_device(account_id: str, device_id: str) -> Response:
    return document_reply(devices.get_device(account_id, device_id, runtime().document_cache))


def _update(account_id: str, device_id: str, merge: bool) -> Response:
    data = body_data()
    account = accounts.get_account(account_id)
    sync = _sync_flag(account, data, device_id, merge)
    before, after = devices.update_device(account, device_id, data, merge=merge, if_match=if_match())
    side_effects.device_changed(before, after, sync=sync)
    return document_reply(after)


def replace_device(account_id: str, device_id: str) -> Response:
    return _update(account_id, device_id, merge=False)


def patch_device(account_id: str, device_id: str) -> Response:
    return _update(account_id, device_id, merge=True)


def delete_device(account_id: str, device_id: str) -> Response:
    removed = devices.delete_device(account_id, device_id, if_match=if_match())
    side_effects.device_changed(removed, None, sync=False)
    return document_reply(removed)
