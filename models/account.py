"""Accounts: the tree of tenants, their realms and API keys."""
from __future__ import annotations

import json
import re
import secrets
from collections.abc import Container
from typing import Any

from models import documents as docs
from models.db import database
from models.documents import Document
from models.errors import Conflict, ValidationFailed
from models.tables import AccountRow, DeviceRow
from models.token import revoke_api_key_tokens
from models.validation import Errors, add_error, validate, with_defaults

_NOT_NAME_KEY = re.compile(r"[^a-z0-9]")


def name_key(name: Any) -> str | None:
    """The name as Kazoo's `cb_user_auth` compares it (`kz_util:normalize_account_name`): lower
    case, ASCII letters and digits only, so "Acme Corp, Inc." is "acmecorpinc"."""
    if not isinstance(name, str):
        return None
    # Kazoo lowers and filters bytes: a non-ASCII letter is dropped, never folded ("K", the
    # Kelvin sign, lower-cases to "k" in Python).
    return _NOT_NAME_KEY.sub("", name.encode("ascii", "ignore").decode().lower())


def _unique_errors(doc: dict[str, Any], own_id: str | None) -> Errors:
    errors: Errors = {}
    name, realm = doc.get("name"), doc.get("realm")
    if isinstance(name, str):
        q = AccountRow.select(AccountRow.id).where(AccountRow.name_lc == name.lower())
        if own_id:
            q = q.where(AccountRow.id != own_id)
        if q.exists():
            add_error(errors, "name", "unique", "Account name already in use", cause=name)
    # Devices of another account may already register in that realm (SIP realms other than
    # their account's) as well.
    if isinstance(realm, str) and realm_of_another_account(own_id, realm):
        add_error(errors, "realm", "unique", "Account realm already in use", cause=realm)
    return errors


def _clean(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed.single("data", "type", "Value is not of type object", target="object")
    return docs.strip_private(data)


def create_account(data: Any, parent: Document | None = None) -> Document:
    """Create an account (a sub-account of `parent` when given) with a new API key, under the id
    `data.id` asks for if any."""
    doc = with_defaults("account", _clean(data))
    doc.pop("parent_id", None)
    if parent is not None:
        doc["parent_id"] = parent.id
    ident, id_errors = docs.requested_id(data)
    with database.atomic():
        validate("account", doc, {**_unique_errors(doc, None), **id_errors})
        docs.claim_id(ident)
        tree = (ancestors(parent) + [parent.id]) if parent is not None else []
        return docs.insert_document(
            AccountRow,
            doc,
            id=ident,
            name_lc=doc["name"].lower(),
            name_key=name_key(doc["name"]),
            realm=doc["realm"].lower(),
            parent_id=parent.id if parent else None,
            tree=json.dumps(tree),
            api_key=secrets.token_hex(32),
        )


def get_account(account_id: str) -> Document:
    return docs.fetch(AccountRow, account_id)


def find_account(name: str | None = None, realm: str | None = None) -> Document | None:
    """The account with that name or realm (case-insensitive), if any."""
    q = AccountRow.select()
    if name is not None:
        q = q.where(AccountRow.name_lc == name.lower())
    elif realm is not None:
        q = q.where(AccountRow.realm == realm.lower())
    else:
        return None
    row = q.first()
    return docs.to_document(row) if row else None


def login_accounts(name: Any = None, realm: Any = None) -> list[Document]:
    """The accounts a `user_auth` may mean, as Kazoo's `cb_user_auth:find_account` finds them:
    by realm when one is given and known, else by the normalised name (several accounts may
    share it; oldest first)."""
    if isinstance(realm, str) and realm:
        found = find_account(realm=realm)
        if found is not None:
            return [found]
    key = name_key(name)
    if not key:
        return []
    rows = AccountRow.select().where(AccountRow.name_key == key).order_by(AccountRow.created, AccountRow.id)
    return [docs.to_document(row) for row in rows]


def account_by_api_key(api_key: str) -> Document | None:
    row = AccountRow.select().where(AccountRow.api_key == api_key).first()
    return docs.to_document(row) if row else None


def api_key(account: Document) -> str:
    return account.row.api_key


def rotate_api_key(account_id: str) -> tuple[str, int]:
    """Give the account a new API key and revoke every token minted from the old one, in one
    transaction; returns (new key, tokens revoked)."""
    with database.atomic():
        current = docs.fetch(AccountRow, account_id)
        key = secrets.token_hex(32)
        changed = AccountRow.update(api_key=key).where(
            (AccountRow.id == account_id) & (AccountRow.api_key == current.row.api_key)).execute()
        if changed != 1:
            raise Conflict(f"account {account_id}: API key changed underneath")
        return key, revoke_api_key_tokens(account_id)


def realm_of_another_account(account_id: str | None, realm: str) -> bool:
    """Whether `realm` is the realm of an account other than `account_id` (None: of any), or a
    SIP realm another account's devices register in: a realm belongs to one account.

    A few index probes whatever the number of devices: the account's own realm is its own, and
    other accounts' devices are sought on each side of `account_id` in the (realm, account_id)
    index rather than by reading every device of the realm.
    """
    realm = realm.lower()
    owner = AccountRow.select(AccountRow.id).where(AccountRow.realm == realm).scalar()
    if owner is not None:
        return owner != account_id
    devices = DeviceRow.select(DeviceRow.id).where(DeviceRow.realm == realm)
    if account_id is None:
        return devices.exists()
    return (devices.where(DeviceRow.account_id < account_id).exists()
            or devices.where(DeviceRow.account_id > account_id).exists())


def ancestors(account: Document) -> list[str]:
    """Ancestor ids of `account`, root first."""
    return json.loads(account.row.tree)


def ancestry(account_id: str) -> list[str] | None:
    """`[root, ..., account_id]` for an existing account, else None (never changes once made)."""
    row = AccountRow.select(AccountRow.tree).where(AccountRow.id == account_id).first()
    if row is None:
        return None
    return [*json.loads(row.tree), account_id]


def has_accounts() -> bool:
    return AccountRow.select(AccountRow.id).exists()


def update_account(
    account_id: str, data: Any, *, merge: bool, if_match: Container[str] | None = None
) -> tuple[Document, Document]:
    """Replace (`merge=False`) or merge-patch the account; returns (before, after)."""
    incoming = _clean(data)
    with database.atomic():
        current = docs.fetch(AccountRow, account_id)
        docs.check_if_match(current, if_match)
        base = docs.merge_patch(current.doc, incoming) if merge else incoming
        doc = with_defaults("account", base)
        # The tree position is not the client's to change.
        if current.doc.get("parent_id"):
            doc["parent_id"] = current.doc["parent_id"]
        else:
            doc.pop("parent_id", None)
        extra = _unique_errors(doc, current.id)
        # The realm is the SIP domain every device registers in: changing it would silently cut
        # off every phone, so it is fixed at creation (differs from Kazoo).
        if isinstance(doc.get("realm"), str) and doc["realm"].lower() != current.row.realm:
            add_error(extra, "realm", "invalid", "The realm of an account cannot be changed",
                      cause=doc["realm"])
        validate("account", doc, extra)
        return current, docs.update_document(AccountRow, current, doc, name_lc=doc["name"].lower(),
                                             name_key=name_key(doc["name"]))
