"""Devices: phones and other endpoints, their SIP credentials and hotdesk members."""
from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass
from typing import Any, NoReturn

import peewee

from models import documents as docs
from models import listing as listing_rows
from models import presence
from models.account import realm_of_another_account
from models.db import database
from models.document_cache import DocumentCache
from models.documents import Document
from models.errors import ValidationFailed
from models.pages import ListQuery, Page, list_page
from models.prepared import Prepared
from models.tables import AccountRow, DeviceRow, HotdeskRow, UserRow
from models.validation import Errors, add_error, validate, with_defaults

# Keys of a device that FreeSWITCH reads through the directory; a change to one of them makes
# the web layer flush FreeSWITCH's directory cache (SPEC §6.5).
SIP_IDENTITY_KEYS = ("username", "password", "realm", "method", "ip")


def cleanse_mac(value: str) -> str:
    """A MAC address as stored: non-hex characters removed, lower case."""
    return re.sub(r"[^0-9a-fA-F]", "", value).lower()


#: Numbers are matched on their last digits: the national number of most countries (and the
#: whole North American number), whatever prefix (+, 1, 0, 00, 011) was dialled before it.
FORWARD_MATCH_DIGITS = 10


def forward_key(value: str) -> str:
    """The key a call-forward number and a dialled number are matched on.

    Only digits, ``*`` and ``#`` are kept; a number of digits alone is cut to its last
    ``FORWARD_MATCH_DIGITS``, so ``+1 (555) 000-1111``, ``15550001111`` and ``5550001111``
    meet, as do ``+44 20 7946 0958`` and ``020 7946 0958``. Empty when nothing is left.
    """
    key = re.sub(r"[^0-9*#]", "", value)
    return key[-FORWARD_MATCH_DIGITS:] if key.isdigit() else key


def _object(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """`doc[key]` when it is an object, else `{}`: the columns are computed before the schema
    has refused a document whose `sip` (say) is a string."""
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    """Only non-empty strings reach a query (PostgreSQL refuses to compare text with a number)."""
    return value if isinstance(value, str) and value else None


def _columns(account: Document, doc: dict[str, Any]) -> dict[str, Any]:
    sip = _object(doc, "sip")
    forward = _object(doc, "call_forward")
    username = _text(sip.get("username"))
    number = _text(forward.get("number")) if forward.get("enabled") else None
    return {
        "realm": (_text(sip.get("realm")) or account.doc["realm"]).lower(),
        "sip_username_lc": username.lower() if username else None,
        "mac_address": _text(doc.get("mac_address")),
        "owner_id": _text(doc.get("owner_id")),
        "sip_ip": _text(sip.get("ip")) if sip.get("method") == "ip" else None,
        "forward_number": (forward_key(number) or None) if number else None,
    }


def _normalise(doc: dict[str, Any], errors: Errors) -> dict[str, Any]:
    """Cleanse the MAC address in place; a bad one is a `mac_address.pattern` failure."""
    mac = doc.get("mac_address")
    if isinstance(mac, str):
        cleansed = cleanse_mac(mac)
        if cleansed == "" and mac == "":
            doc.pop("mac_address")
        elif len(cleansed) != 12:
            add_error(errors, "mac_address", "pattern",
                      "MAC address must be 12 hexadecimal digits", cause=mac)
        else:
            doc["mac_address"] = cleansed
    return doc


def _database_errors(account: Document, doc: dict[str, Any], own_id: str | None,
                     errors: Errors) -> None:
    cols = _columns(account, doc)

    def taken(query: Any) -> bool:
        if own_id:
            query = query.where(DeviceRow.id != own_id)
        return query.exists()

    if cols["sip_username_lc"] and taken(DeviceRow.select(DeviceRow.id).where(
            (DeviceRow.realm == cols["realm"]) & (DeviceRow.sip_username_lc == cols["sip_username_lc"]))):
        add_error(errors, "sip.username", "unique", "SIP credentials already in use",
                  cause=doc["sip"]["username"])
    realm = cols["realm"]
    if realm != account.doc["realm"].lower() and realm_of_another_account(account.id, realm):
        # A realm belongs to one account: a device naming another account's realm would answer
        # that account's directory lookups and block its SIP usernames.
        add_error(errors, "sip.realm", "invalid", "The realm belongs to another account", cause=realm)
    if cols["mac_address"] and "mac_address" not in errors and taken(DeviceRow.select(DeviceRow.id).where(
            (DeviceRow.account_id == account.id) & (DeviceRow.mac_address == cols["mac_address"]))):
        add_error(errors, "mac_address", "unique", "MAC address already in use",
                  cause=cols["mac_address"])
    # Unique within the account: another account's devices are none of this one's business.
    if cols["sip_ip"] and taken(DeviceRow.select(DeviceRow.id).where(
            (DeviceRow.account_id == account.id) & (DeviceRow.sip_ip == cols["sip_ip"]))):
        add_error(errors, "sip.ip", "unique", "SIP IP already in use", cause=cols["sip_ip"])
    presence.realm_errors(doc, account.doc["realm"], errors)

    wanted = set()
    owner = doc.get("owner_id")
    if docs.is_id(owner):
        wanted.add(owner)
    members = _object(doc, "hotdesk").get("users")
    member_ids = [m for m in members if docs.is_id(m)] if isinstance(members, dict) else []
    wanted.update(member_ids)
    if wanted:
        found = {row.id for row in UserRow.select(UserRow.id).where(
            (UserRow.account_id == account.id) & UserRow.id.in_(list(wanted)))}
        if docs.is_id(owner) and owner not in found:
            add_error(errors, "owner_id", "not_found", "Owner is not a user of this account", cause=owner)
        for member in member_ids:
            if member not in found:
                add_error(errors, f"hotdesk.users.{member}", "not_found",
                          "Hotdesk user is not a user of this account", cause=member)


def _prepare(account: Document, data: Any, current: Document | None, merge: bool) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed.single("data", "type", "Value is not of type object", target="object")
    incoming = docs.strip_private(data)
    incoming.pop("sync", None)  # an instruction, never stored (SPEC §4)
    base = docs.merge_patch(current.doc, incoming) if (merge and current) else incoming
    doc = with_defaults("device", base)
    sip = doc.get("sip")
    if isinstance(sip, dict) and "realm" not in sip:
        doc["sip"] = {**sip, "realm": account.doc["realm"]}
    return doc


def _validated(account: Document, doc: dict[str, Any], own_id: str | None,
               extra: Errors | None = None) -> dict[str, Any]:
    errors: Errors = dict(extra or {})
    _normalise(doc, errors)
    _database_errors(account, doc, own_id, errors)
    validate("device", doc, errors)
    return doc


def sync_hotdesk(device_id: str, account_id: str, doc: dict[str, Any]) -> None:
    """Mirror the device's `hotdesk.users` into the membership table (indexed by user)."""
    users = set(((doc.get("hotdesk") or {}).get("users") or {}).keys())
    existing = {r.user_id for r in HotdeskRow.select(HotdeskRow.user_id).where(HotdeskRow.device_id == device_id)}
    gone = existing - users
    if gone:
        HotdeskRow.delete().where((HotdeskRow.device_id == device_id) & HotdeskRow.user_id.in_(list(gone))).execute()
    for user_id in sorted(users - existing):
        HotdeskRow.insert(device_id=device_id, user_id=user_id, account_id=account_id).execute()


def create_device(account: Document, data: Any) -> Document:
    """A new device, under the id `data.id` asks for if any (else a new one)."""
    doc = _prepare(account, data, None, merge=False)
    ident, errors = docs.requested_id(data)
    with database.atomic():
        _validated(account, doc, None, errors)
        docs.claim_id(ident)
        device = docs.insert_document(DeviceRow, doc, id=ident, account_id=account.id,
                                      **_columns(account, doc))
        sync_hotdesk(device.id, account.id, doc)
        return device


def refuse_device(account: Document, data: Any, errors: Errors, *, device_id: str | None = None,
                  merge: bool = False) -> NoReturn:
    """Raise ValidationFailed with ``errors`` (found outside the document, such as a bad
    ``sync``) together with every rule the create or update would break; writes nothing."""
    current = docs.read(DeviceRow, device_id, account.id) if device_id else None
    _validated(account, _prepare(account, data, current, merge), device_id, errors)
    raise ValidationFailed(errors)


def get_device(account_id: str, device_id: str, cache: DocumentCache | None = None) -> Document:
    """The device to answer with (read only: `docs.fetch` it to write)."""
    return docs.read(DeviceRow, device_id, account_id, cache)


def update_device(account: Document, device_id: str, data: Any, *, merge: bool,
                  if_match: Container[str] | None = None) -> tuple[Document, Document]:
    """Replace or merge-patch a device in one transaction; returns (before, after)."""
    with database.atomic():
        current = docs.fetch(DeviceRow, device_id, account.id)
        docs.check_if_match(current, if_match)
        doc = _prepare(account, data, current, merge)
        _validated(account, doc, device_id)
        updated = docs.update_document(DeviceRow, current, doc, **_columns(account, doc))
        sync_hotdesk(device_id, account.id, doc)
        return current, updated


def delete_device(account_id: str, device_id: str, if_match: Container[str] | None = None) -> Document:
    with database.atomic():
        current = docs.fetch(DeviceRow, device_id, account_id)
        docs.check_if_match(current, if_match)
        HotdeskRow.delete().where(HotdeskRow.device_id == device_id).execute()
        docs.delete_document(DeviceRow, current)
        return current


listing_row = listing_rows.device_row


def list_devices(account_id: str, query: ListQuery) -> Page:
    return list_page(DeviceRow, account_id, query)


def _of_user(user_id: Any) -> peewee.SelectQuery:
    """Ids of the devices a user owns or is hotdesked into: two indexed lookups. (With `owner_id
    = U OR id IN (hotdesked)` beside the account, SQLite walks the whole account instead.)"""
    owned = DeviceRow.alias("owned")
    return (owned.select(owned.id).where(owned.owner_id == user_id)
            | HotdeskRow.select(HotdeskRow.device_id).where(HotdeskRow.user_id == user_id))


_USER_DEVICE_ROWS = Prepared(lambda account_id, user_id: (
    DeviceRow.select(DeviceRow.listing, DeviceRow.owner_id)
    .where((DeviceRow.account_id == account_id) & DeviceRow.id.in_(_of_user(user_id)))
    .order_by(DeviceRow.id)))


def user_device_rows(account_id: str, user_id: str) -> list[dict[str, Any]]:
    """SPEC §5: one row per device the user owns or is hotdesked into, with `hotdesked`: the
    device's listing row without `username`."""
    return [docs.decode(text) for text in user_device_texts(account_id, user_id)]


def user_device_texts(account_id: str, user_id: str) -> list[str]:
    """`user_device_rows`, each row JSON-encoded (exactly as `docs.encode` writes it)."""
    return [_user_device_text(listing, owner_id != user_id)
            for listing, owner_id in _USER_DEVICE_ROWS.tuples(account_id, user_id)]  # both text


def _user_device_text(listing: str, hotdesked: bool) -> str:
    """The stored listing row without `username` and with `hotdesked` last."""
    row = docs.decode(listing)
    row.pop("username", None)
    row["hotdesked"] = hotdesked
    return docs.encode(row)


def user_devices(account_id: str, user_id: str) -> list[Document]:
    """Full documents of the devices a user owns or is hotdesked into."""
    rows = (
        DeviceRow.select()
        .where((DeviceRow.account_id == account_id) & DeviceRow.id.in_(_of_user(user_id)))
        .order_by(DeviceRow.id)
    )
    return [docs.to_document(row) for row in rows]


def owner_of(account_id: str, device_id: Any) -> str | None:
    """The `owner_id` of the account's device (None: it has none, or there is no such device)."""
    if not docs.is_id(device_id):
        return None
    return DeviceRow.select(DeviceRow.owner_id).where(
        (DeviceRow.id == device_id) & (DeviceRow.account_id == account_id)).scalar()


def device_realms(account_id: str) -> list[str]:
    """The SIP realms the account's devices use (normally just the account realm)."""
    query = (DeviceRow.select(DeviceRow.realm).where(
        (DeviceRow.account_id == account_id) & DeviceRow.sip_username_lc.is_null(False)).distinct())
    return sorted(realm for (realm,) in query.tuples())


def devices_by_sip(realm: str, usernames: list[str]) -> dict[str, Document]:
    """Devices of `realm` by lower-cased SIP username (one query)."""
    if not usernames:
        return {}
    rows = DeviceRow.select().where(
        (DeviceRow.realm == realm.lower()) & DeviceRow.sip_username_lc.in_([u.lower() for u in usernames]))
    return {row.sip_username_lc: docs.to_document(row) for row in rows}


@dataclass
class DirectoryEntry:
    """What FreeSWITCH needs to authenticate and dial a device: the device, its account and
    its owner (when it has one)."""

    device: Document
    account: Document
    owner: Document | None


def _directory_query(realm: Any, username: Any) -> peewee.ModelSelect:
    owner = UserRow.alias()
    return (
        DeviceRow.select(DeviceRow.id, DeviceRow.doc, DeviceRow.rev_n, DeviceRow.rev_hash,
                         DeviceRow.account_id, AccountRow.doc, AccountRow.rev_n, AccountRow.rev_hash,
                         owner.id, owner.doc, owner.rev_n, owner.rev_hash)
        .join(AccountRow, on=(DeviceRow.account_id == AccountRow.id))
        .switch(DeviceRow)
        .join(owner, peewee.JOIN.LEFT_OUTER, on=(DeviceRow.owner_id == owner.id))
        .where((DeviceRow.realm == realm) & (DeviceRow.sip_username_lc == username))
        .limit(1)
    )


# FreeSWITCH asks on every REGISTER, SUBSCRIBE and INVITE: prepared (peewee builds the SQL once)
# and only the columns a Document needs, read as plain tuples.
_DIRECTORY = Prepared(_directory_query)


def _read_only(ident: str, doc: str, rev_n: int, rev_hash: str, account_id: str | None) -> Document:
    return Document(id=ident, doc=docs.decode(doc), revision=f"{rev_n}-{rev_hash}",
                    account_id=account_id)


def directory_entry(realm: str, username: str) -> DirectoryEntry | None:
    """The device with SIP `username@realm`, its account and owner, in one indexed query.

    The documents carry no table row: fetch one again to write it.
    """
    row = next(_DIRECTORY.tuples(realm.lower(), username.lower()), None)
    if row is None:
        return None
    (device_id, device_doc, device_n, device_hash, account_id, account_doc, account_n,
     account_hash, owner_id, owner_doc, owner_n, owner_hash) = row
    return DirectoryEntry(
        device=_read_only(device_id, device_doc, device_n, device_hash, account_id),
        account=_read_only(account_id, account_doc, account_n, account_hash, None),
        owner=_read_only(owner_id, owner_doc, owner_n, owner_hash, account_id)
        if owner_id is not None else None)


def device_by_forward_number(account_id: str, number: str) -> Document | None:
    """The cellphone-style device whose enabled call-forward number is `number`."""
    key = forward_key(number)
    if not key:
        return None
    row = DeviceRow.select().where(
        (DeviceRow.account_id == account_id) & (DeviceRow.forward_number == key)).first()
    return docs.to_document(row) if row else None
