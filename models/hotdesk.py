"""Hotdesking (SPEC §5): which users are logged into which devices, and the rules to change it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models import documents as docs
from models.db import database
from models.device import sync_hotdesk
from models.documents import Document
from models.tables import DeviceRow, HotdeskRow, UserRow


@dataclass
class HotdeskChange:
    """What a login or logout did: the devices whose document changed."""

    action: str
    changed: list[Document]


def _set_members(device: Document, users: dict[str, Any]) -> Document:
    doc = dict(device.doc)
    hotdesk = dict(doc.get("hotdesk") or {})
    hotdesk["users"] = users
    doc["hotdesk"] = hotdesk
    updated = docs.update_document(DeviceRow, device, doc)
    sync_hotdesk(device.id, device.account_id, doc)
    return updated


def _members(device: Document) -> dict[str, Any]:
    return dict(((device.doc.get("hotdesk") or {}).get("users")) or {})


def login(user: Document, device_id: str) -> HotdeskChange:
    """Put the user on the device; first off every other device unless they keep those."""
    changed: list[Document] = []
    with database.atomic():
        device = docs.fetch(DeviceRow, device_id, user.account_id)
        if not (user.doc.get("hotdesk") or {}).get("keep_logged_in_elsewhere"):
            changed += _remove_everywhere(user, except_device=device_id)
        members = _members(device)
        if user.id not in members:
            members[user.id] = {}
            changed.append(_set_members(device, members))
    return HotdeskChange("login", changed)


def _remove_everywhere(user: Document, except_device: str | None = None) -> list[Document]:
    changed = []
    query = HotdeskRow.select(HotdeskRow.device_id).where(HotdeskRow.user_id == user.id)
    for (other_id,) in query.tuples():
        if other_id == except_device:
            continue
        other = docs.fetch(DeviceRow, other_id, user.account_id)
        members = _members(other)
        members.pop(user.id, None)
        changed.append(_set_members(other, members))
    return changed


def logout(user: Document, device_id: str | None = None) -> HotdeskChange:
    """Take the user off the device, or off every device when `device_id` is None."""
    with database.atomic():
        if device_id is None:
            return HotdeskChange("logout", _remove_everywhere(user))
        device = docs.fetch(DeviceRow, device_id, user.account_id)
        members = _members(device)
        if user.id not in members:
            return HotdeskChange("logout", [])
        members.pop(user.id)
        return HotdeskChange("logout", [_set_members(device, members)])


def logout_all(account_id: str, device_id: str) -> HotdeskChange:
    """Take every hotdesked user off the device."""
    with database.atomic():
        device = docs.fetch(DeviceRow, device_id, account_id)
        if not _members(device):
            return HotdeskChange("logout", [])
        return HotdeskChange("logout", [_set_members(device, {})])


def hotdesked_devices(user_id: str) -> set[str]:
    """Ids of the devices the user is hotdesked into (indexed by user)."""
    query = HotdeskRow.select(HotdeskRow.device_id).where(HotdeskRow.user_id == user_id)
    return {device_id for (device_id,) in query.tuples()}


def _device_summary(listing: dict[str, Any]) -> dict[str, Any]:
    return {"device_id": listing["id"], "device_name": listing.get("name"),
            "mac_address": listing.get("mac_address", ""), "owner_id": listing.get("owner_id")}


def _device_listings(account_id: str, device_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The listing rows of the account's devices among `device_ids`, read by id."""
    if not device_ids:
        return {}
    query = DeviceRow.select(DeviceRow.id, DeviceRow.listing).where(
        (DeviceRow.account_id == account_id) & DeviceRow.id.in_(device_ids))
    return {ident: docs.decode(listing) for ident, listing in query.tuples()}


def _user_docs(account_id: str, user_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The documents of the account's users among `user_ids`, read by id."""
    if not user_ids:
        return {}
    query = UserRow.select(UserRow.id, UserRow.doc).where(
        (UserRow.account_id == account_id) & UserRow.id.in_(user_ids))
    return {ident: docs.decode(doc) for ident, doc in query.tuples()}


def user_hotdesks(account_id: str, user_id: str) -> list[dict[str, Any]]:
    """Devices the user is hotdesked into, in device id order.

    Driven from the membership table by user, then the devices by id: its cost follows the
    user's hotdesks, not the account's devices (SPEC §5).
    """
    query = (HotdeskRow.select(HotdeskRow.device_id).where(HotdeskRow.user_id == user_id)
             .order_by(HotdeskRow.device_id))
    device_ids = [device_id for (device_id,) in query.tuples()]
    listings = _device_listings(account_id, device_ids)
    return [_device_summary(listings[d]) for d in device_ids if d in listings]


def _user_summary(user_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {"user_id": user_id, "first_name": doc.get("first_name"), "last_name": doc.get("last_name"),
            "hotdesk_id": (doc.get("hotdesk") or {}).get("id")}


def device_hotdesks(account_id: str, device_id: str) -> list[dict[str, Any]]:
    """Users hotdesked into the device, in user id order (by device, then the users by id)."""
    query = (HotdeskRow.select(HotdeskRow.user_id).where(HotdeskRow.device_id == device_id)
             .order_by(HotdeskRow.user_id))
    user_ids = [user_id for (user_id,) in query.tuples()]
    found = _user_docs(account_id, user_ids)
    return [_user_summary(u, found[u]) for u in user_ids if u in found]


def account_hotdesks(account_id: str) -> list[dict[str, Any]]:
    """Every (device, user) hotdesk pair of the account."""
    pairs = list(HotdeskRow.select(HotdeskRow.device_id, HotdeskRow.user_id)
                 .where(HotdeskRow.account_id == account_id)
                 .order_by(HotdeskRow.device_id, HotdeskRow.user_id).tuples())
    if not pairs:
        return []
    device_names = {r.id: docs.decode(r.doc).get("name") for r in DeviceRow.select(DeviceRow.id, DeviceRow.doc)
                    .where(DeviceRow.id.in_(list({d for d, _ in pairs})))}
    users = {r.id: docs.decode(r.doc) for r in UserRow.select(UserRow.id, UserRow.doc)
             .where(UserRow.id.in_(list({u for _, u in pairs})))}
    return [{"device_id": d, "device_name": device_names.get(d), **_user_summary(u, users.get(u, {}))}
            for d, u in pairs]
