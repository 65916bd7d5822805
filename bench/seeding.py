"""Seeding a benchmark database: one account, N devices and a user per four devices.

The first user and device of each shape go through the store's own functions; the rest are
built by the same preparation code and bulk-inserted, and checked to match the store's rows.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peewee

from models import account as accounts
from models import device as devices
from models import documents as docs
from models import schema
from models import user as users
from models.tables import DeviceRow, DocumentTable, HotdeskRow, UserRow

REALM = "acme.test"
# Every user owns two devices (the first with the next user hotdesked into it), and two more
# devices have no owner: `GET /users/{U}/devices` answers 3 rows at every size.
DEVICES_PER_USER = 4


@dataclass
class Seeded:
    """A seeded database and what the load needs to know about it."""

    url: str
    account_id: str
    api_key: str
    device_ids: list[str]
    sip_usernames: list[str]
    user_ids: list[str]
    seconds: float = 0.0


def _user_input(i: int) -> dict[str, Any]:
    return {"first_name": f"User{i}", "last_name": "Bench", "username": f"user{i}@{REALM}",
            "password": f"pass-{i:06d}", "email": f"user{i}@{REALM}",
            "hotdesk": {"enabled": True, "id": str(100000 + i)}}


def _device_input(d: int, owner: str | None, member: str | None) -> dict[str, Any]:
    mac = f"0004f2{d:06x}"
    doc: dict[str, Any] = {
        "name": f"Desk {d}",
        "mac_address": ":".join(mac[k:k + 2] for k in range(0, 12, 2)),
        "sip": {"username": f"{200000 + d}", "password": f"secret{d:06d}"},
        "caller_id": {"internal": {"name": f"Desk {d}", "number": f"{200000 + d}"}},
    }
    if owner is not None:
        doc["owner_id"] = owner
        doc["presence_id"] = f"{200000 + d}"
    if member is not None:
        doc["hotdesk"] = {"users": {member: {}}}
    return doc


def _row(table: type[DocumentTable], doc: dict[str, Any], now: float,
         **columns: Any) -> dict[str, Any]:
    ident = docs.new_id()
    _, rev_hash = docs.new_revision(doc, 1)
    return {"id": ident, **docs.document_columns(table, ident, doc), "rev_n": 1,
            "rev_hash": rev_hash, "created": now, "modified": now, **columns}


def _user_row(account_id: str, data: dict[str, Any], now: float) -> dict[str, Any]:
    """The row `models.user.create_user` would insert, without its checks (ours are unique by
    construction)."""
    doc, password = users._prepare(data)
    doc = users.with_defaults("user", doc)
    creds = users._credential_columns(doc, password, {}, None)
    doc.pop("password", None)
    return _row(UserRow, doc, now, account_id=account_id, **users._columns(doc), **creds)


def _device_row(account: docs.Document, data: dict[str, Any], now: float) -> dict[str, Any]:
    """The row `models.device.create_device` would insert, without its checks."""
    doc = devices._prepare(account, data, None, merge=False)
    devices._normalise(doc, {})
    return _row(DeviceRow, doc, now, account_id=account.id, **devices._columns(account, doc))


def _same_as_store(made: docs.Document, row: dict[str, Any], table: type[peewee.Model]) -> None:
    """The bulk path builds exactly the row the store built for the same input."""
    stored = table.get_by_id(made.id)
    for name in table._meta.fields:
        if name in ("id", "rev_hash", "created", "modified"):
            continue
        if name == "doc":
            ours, theirs = docs.decode(row["doc"]), made.doc
        elif name == "listing":  # the row's own id inside: compare the rest
            ours = {**docs.decode(row["listing"]), "id": made.id}
            theirs = docs.decode(stored.listing)
        else:
            ours, theirs = row[name], getattr(stored, name)
        if ours != theirs:
            raise RuntimeError(f"seeding builds {table.__name__}.{name} = {ours!r}, "
                               f"the store {theirs!r}")


def _insert(table: type[peewee.Model], rows: list[dict[str, Any]]) -> None:
    per_chunk = max(1, 30000 // (len(rows[0]) if rows else 1))
    for chunk in peewee.chunked(rows, per_chunk):
        table.insert_many(chunk).execute()


def seed(path: Path, n_devices: int, url: str | None = None) -> Seeded:
    """An SQLite database at `path` (or the empty database at `url`) with one account,
    `n_devices` devices and a user per four devices.

    The first user and device of each shape go through the store's own functions; the rest are
    built by the same preparation code and bulk-inserted, and checked to match the store's rows.
    """
    started = time.perf_counter()
    url = url or f"sqlite:///{path}"
    database = schema.connect(url)
    n_users = max(2, n_devices // DEVICES_PER_USER)
    now = time.time()
    try:
        with database.connection_context(), database.atomic():
            account = accounts.create_account({"name": "bench", "realm": REALM})
            made_users = [users.create_user(account.id, _user_input(i)) for i in (0, 1)]
            _same_as_store(made_users[1], _user_row(account.id, _user_input(1), now), UserRow)
            user_rows = [_user_row(account.id, _user_input(i), now) for i in range(2, n_users)]
            _insert(UserRow, user_rows)
            user_ids = [u.id for u in made_users] + [r["id"] for r in user_rows]

            device_ids: list[str] = []
            device_rows: list[dict[str, Any]] = []
            hotdesk_rows: list[dict[str, Any]] = []
            for d in range(n_devices):
                i, shape = divmod(d, DEVICES_PER_USER)
                owner = user_ids[i % n_users] if shape in (0, 1) else None
                member = user_ids[(i + 1) % n_users] if shape == 0 else None
                data = _device_input(d, owner, member)
                if d < 3:  # one of each shape (owned and hotdesked, owned, no owner) by the store
                    made = devices.create_device(account, data)
                    _same_as_store(made, _device_row(account, data, now), DeviceRow)
                    device_ids.append(made.id)
                    continue
                row = _device_row(account, data, now)
                device_rows.append(row)
                device_ids.append(row["id"])
                if member is not None:
                    hotdesk_rows.append({"device_id": row["id"], "user_id": member,
                                         "account_id": account.id})
            _insert(DeviceRow, device_rows)
            _insert(HotdeskRow, hotdesk_rows)
            api_key = accounts.api_key(account)
    finally:
        database.close_all()
    return Seeded(url=url, account_id=account.id, api_key=api_key, device_ids=device_ids,
                  sip_usernames=[f"{200000 + d}" for d in range(n_devices)],
                  user_ids=user_ids,
                  seconds=time.perf_counter() - started)


