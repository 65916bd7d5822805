"""Hotdesking (SPEC §5): which users are logged into which devices, and the rules to change it
from a phone (login, logout, toggle, the PIN and the lockout of guessers)."""
from __future__ import annotations

import hmac
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import peewee

from models import documents as docs
from models import lockout
from models import user as users
from models.db import database
from models.device import sync_hotdesk
from models.documents import Document
from models.pages import ListQuery, Page
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
    assert device.account_id is not None  # fetched within its account
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


# --- the rules of a request from a phone (SPEC §5): which user, the PIN, the lockout ---------

@dataclass(frozen=True)
class Outcome:
    """What a hotdesk request from a phone came to.

    ``result``: ``ok``, ``unknown_id``, ``disabled``, ``pin_required``, ``invalid_pin`` or
    ``too_many_attempts``; ``action``: ``login`` or ``logout`` (what a toggle turned into).
    """

    result: str
    action: str
    user_id: str | None = None


def _phone_key(device_id: str) -> str:
    return f"device:{device_id}"


def _user_key(user_id: str) -> str:
    return f"user:{user_id}"


def request_from_phone(action: str, device: Document, hotdesk_id: str, pin: str) -> Outcome:
    """Log the user with ``hotdesk_id`` in or out of ``device`` (the phone asking), or toggle.

    A logout without a hotdesk id empties the phone. Unknown ids and wrong PINs count against
    the phone, wrong PINs also against the user (``models.lockout``); a locked phone or user
    gets ``too_many_attempts`` whatever it sends.
    """
    account_id = device.account_id
    assert account_id is not None  # a device is read within its account
    if action == "logout" and not hotdesk_id:
        logout_all(account_id, device.id)
        return Outcome("ok", "logout")
    phone = _phone_key(device.id)
    with lockout.guard(phone) as attempts:
        if attempts.locked(phone):
            return Outcome("too_many_attempts", action)
        user = users.user_by_hotdesk_id(account_id, hotdesk_id)
        if user is None:
            attempts.failed(phone)
            return Outcome("unknown_id", action)
    if action == "logout":
        # Off this phone: whoever stands at it may, even once the user's hotdesking is off.
        logout(user, device.id)
        return Outcome("ok", "logout", user.id)
    settings = user.doc.get("hotdesk") or {}
    if not settings.get("enabled", False) or not user.doc.get("enabled", True):
        return Outcome("disabled", action, user.id)
    if action == "toggle":
        on = hotdesked_devices(user.id)
        if on:
            # Out of every phone: from another phone than one the user is on, that needs the
            # PIN as a login would.
            refusal = None if device.id in on else check_pin(user, pin, device.id)
            if refusal is not None:
                return Outcome(refusal, "logout", user.id)
            logout(user)
            return Outcome("ok", "logout", user.id)
    refusal = check_pin(user, pin, device.id)
    if refusal is not None:
        return Outcome(refusal, "login", user.id)
    login(user, device.id)
    return Outcome("ok", "login", user.id)


def check_pin(user: Document, pin: str, device_id: str) -> str | None:
    """None when the user needs no PIN or gave the right one; else the result to answer
    (``pin_required``, ``invalid_pin``, ``too_many_attempts``).

    A wrong PIN counts against the user and against the phone it came from; the right one
    clears the user's count.
    """
    settings = user.doc.get("hotdesk") or {}
    if not settings.get("require_pin"):
        return None
    phone, who = _phone_key(device_id), _user_key(user.id)
    with lockout.guard(phone, who) as attempts:
        if attempts.locked(who) or attempts.locked(phone):
            return "too_many_attempts"
        if not pin:
            return "pin_required"
        expected = str(settings.get("pin") or "")
        if not expected or not hmac.compare_digest(pin.encode(), expected.encode()):
            attempts.failed(who, phone)
            return "invalid_pin"
        attempts.succeeded(who)
    return None


# --- the listings (SPEC §1, §2): pages of membership rows, each row's device and user by id ---

_BATCH = 500

Membership = dict[str, str]  # {"device_id": ..., "user_id": ...}


def _memberships(scope: peewee.Expression, order: tuple[str, ...], start: str | None,
                 first_batch: int) -> Iterator[list[Membership]]:
    """Batches of the membership rows in `scope`, in `order` (column names), from `start` (a
    value of the first column) on: one indexed range query per batch."""
    columns = tuple(getattr(HotdeskRow, name) for name in order)
    cursor: tuple[str, ...] | None = None
    size = first_batch
    while True:
        query = HotdeskRow.select(HotdeskRow.device_id, HotdeskRow.user_id).where(scope)
        if cursor is not None:
            query = query.where(peewee.Tuple(*columns) > peewee.Tuple(*cursor))
        elif start is not None:
            query = query.where(columns[0] >= start)
        batch = list(query.order_by(*columns).limit(size).dicts())
        if batch:
            yield batch
        if len(batch) < size:
            return
        cursor = tuple(batch[-1][name] for name in order)
        size = _BATCH


def _first_batch(query: ListQuery) -> int:
    """An unfiltered page needs one row past its end to know where the next starts."""
    return query.page_size + 1 if query.paginate and not query.filters else _BATCH


def _page(rows: Iterable[dict[str, Any]], key: str, query: ListQuery) -> Page:
    """One page of listing rows that start at `query.start_key`, filtered.

    `key` names the column the start keys are values of; rows sharing a key are never split
    over two pages (the next page could not start inside them): a page ends early before them,
    or holds all of them when they are more than a page.
    """
    limit = query.page_size if query.paginate else None
    page: list[dict[str, Any]] = []
    group_start = 0  # where the rows of the page's last key begin
    for row in rows:
        if query.filters and not query.matches(row):
            continue
        same = bool(page) and row[key] == page[-1][key]
        if limit is not None and len(page) >= limit:
            if not same:
                return _encoded_page(page, row[key], query)
            if group_start > 0:
                return _encoded_page(page[:group_start], row[key], query)
        if not same:
            group_start = len(page)
        page.append(row)
    return _encoded_page(page, None, query)


def _encoded_page(rows: list[dict[str, Any]], next_key: str | None, query: ListQuery) -> Page:
    return Page([docs.encode(row) for row in rows], next_key, query.start_key)


def _present(row: dict[str, Any]) -> dict[str, Any]:
    """The row without the keys that have no value: Kazoo's view rows leave them out."""
    return {key: value for key, value in row.items() if value is not None}


def _device_summary(listing: dict[str, Any]) -> dict[str, Any]:
    return _present({"device_id": listing["id"], "device_name": listing.get("name"),
                     "mac_address": listing.get("mac_address", ""),
                     "owner_id": listing.get("owner_id")})


def _user_summary(user_id: str, doc: dict[str, Any], id_key: str = "user_id") -> dict[str, Any]:
    """A hotdesked user. The device's own listing names the user `id`, as Kazoo's
    `users/list_by_id` view rows do (`cb_hotdesks:fetch_users`)."""
    hotdesk = doc.get("hotdesk")
    return _present({id_key: user_id, "first_name": doc.get("first_name"),
                     "last_name": doc.get("last_name"),
                     "hotdesk_id": hotdesk.get("id") if isinstance(hotdesk, dict) else None})


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


def _user_hotdesk_rows(account_id: str, batches: Iterable[list[Membership]]) -> Iterator[dict[str, Any]]:
    for batch in batches:
        listings = _device_listings(account_id, [m["device_id"] for m in batch])
        yield from (_device_summary(listings[m["device_id"]]) for m in batch if m["device_id"] in listings)


def _device_hotdesk_rows(account_id: str, batches: Iterable[list[Membership]]) -> Iterator[dict[str, Any]]:
    for batch in batches:
        found = _user_docs(account_id, [m["user_id"] for m in batch])
        yield from (_user_summary(m["user_id"], found[m["user_id"]], "id")
                    for m in batch if m["user_id"] in found)


def _account_hotdesk_rows(account_id: str, batches: Iterable[list[Membership]]) -> Iterator[dict[str, Any]]:
    for batch in batches:
        listings = _device_listings(account_id, list({m["device_id"] for m in batch}))
        found = _user_docs(account_id, list({m["user_id"] for m in batch}))
        for m in batch:
            device = listings.get(m["device_id"], {})
            yield _present({"device_id": m["device_id"], "device_name": device.get("name"),
                            **_user_summary(m["user_id"], found.get(m["user_id"], {}))})


def user_hotdesks_page(account_id: str, user_id: str, query: ListQuery) -> Page:
    """Devices the user is hotdesked into, by device id (`start_key` is a device id).

    Driven from the membership table by user, then the devices by id: its cost follows the
    user's hotdesks, not the account's devices (SPEC §5).
    """
    batches = _memberships(HotdeskRow.user_id == user_id, ("device_id",), query.start_key,
                           _first_batch(query))
    return _page(_user_hotdesk_rows(account_id, batches), "device_id", query)


def device_hotdesks_page(account_id: str, device_id: str, query: ListQuery) -> Page:
    """Users hotdesked into the device, by user id (`start_key` is a user id, the rows' `id`)."""
    batches = _memberships(HotdeskRow.device_id == device_id, ("user_id",), query.start_key,
                           _first_batch(query))
    return _page(_device_hotdesk_rows(account_id, batches), "id", query)


def account_hotdesks_page(account_id: str, query: ListQuery) -> Page:
    """Every (device, user) hotdesk pair of the account, by device then user id.

    `start_key` is a device id: a device's users are on one page.
    """
    batches = _memberships(HotdeskRow.account_id == account_id, ("device_id", "user_id"),
                           query.start_key, _first_batch(query))
    return _page(_account_hotdesk_rows(account_id, batches), "device_id", query)


def _everything() -> ListQuery:
    return ListQuery(paginate=False)


def user_hotdesks(account_id: str, user_id: str) -> list[dict[str, Any]]:
    """Every device the user is hotdesked into (`user_hotdesks_page`, unpaginated)."""
    return user_hotdesks_page(account_id, user_id, _everything()).rows


def device_hotdesks(account_id: str, device_id: str) -> list[dict[str, Any]]:
    """Every user hotdesked into the device (`device_hotdesks_page`, unpaginated)."""
    return device_hotdesks_page(account_id, device_id, _everything()).rows


def account_hotdesks(account_id: str) -> list[dict[str, Any]]:
    """Every (device, user) hotdesk pair of the account (`account_hotdesks_page`, unpaginated)."""
    return account_hotdesks_page(account_id, _everything()).rows
