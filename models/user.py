"""Users: people of an account, their credentials and hotdesk settings."""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Container
from typing import Any

from models import device as devices
from models import documents as docs
from models import listing as listing_rows
from models import presence
from models.db import database
from models.document_cache import DocumentCache
from models.documents import Document
from models.errors import ValidationFailed
from models.pages import ListQuery, Page, list_page
from models.tables import AccountRow, DeviceRow, HotdeskRow, UserRow
from models.token import revoke_user_tokens, set_user_priv_level
from models.validation import Errors, add_error, validate, with_defaults


def credentials(username: str, password: str) -> tuple[str, str]:
    """Kazoo's md5 and sha1 credentials of `username:password` (username lower-cased)."""
    text = f"{username.lower()}:{password}".encode()
    return hashlib.md5(text).hexdigest(), hashlib.sha1(text).hexdigest()


def _columns(doc: dict[str, Any]) -> dict[str, Any]:
    username = doc.get("username")
    hotdesk = doc.get("hotdesk")
    if not isinstance(hotdesk, dict):
        hotdesk = {}
    return {
        "username_lc": username.lower() if isinstance(username, str) else None,
        "hotdesk_id": hotdesk.get("id") if isinstance(hotdesk.get("id"), str) else None,
    }


def _database_errors(account_id: str, doc: dict[str, Any], own_id: str | None) -> Errors:
    errors: Errors = {}
    cols = _columns(doc)
    if cols["username_lc"]:
        q = UserRow.select(UserRow.id).where(
            (UserRow.account_id == account_id) & (UserRow.username_lc == cols["username_lc"]))
        if own_id:
            q = q.where(UserRow.id != own_id)
        if q.exists():
            add_error(errors, "username", "unique", "Username already in use", cause=doc["username"])
    if cols["hotdesk_id"]:
        q = UserRow.select(UserRow.id).where(
            (UserRow.account_id == account_id) & (UserRow.hotdesk_id == cols["hotdesk_id"]))
        if own_id:
            q = q.where(UserRow.id != own_id)
        if q.exists():
            add_error(errors, "hotdesk.id", "unique", "Hotdesk id already in use",
                      cause=cols["hotdesk_id"])
    if "@" in str(doc.get("presence_id", "")):
        realm = AccountRow.select(AccountRow.realm).where(AccountRow.id == account_id).scalar()
        presence.realm_errors(doc, realm or "", errors)
    return errors


def _prepare(data: Any) -> tuple[dict[str, Any], str | None]:
    if not isinstance(data, dict):
        raise ValidationFailed.single("data", "type", "Value is not of type object", target="object")
    doc = docs.strip_private(data)
    password = doc.get("password")
    return doc, password


def _credential_columns(doc: dict[str, Any], password: Any, errors: Errors,
                        current: Document | None) -> dict[str, Any]:
    """md5/sha1 credential columns for the new document; the password itself is never kept."""
    username = doc.get("username")
    if isinstance(password, str) and isinstance(username, str):
        md5, sha1 = credentials(username, password)
        return {"md5_creds": md5, "sha1_creds": sha1}
    if isinstance(password, str) and not username:
        add_error(errors, "username", "required", "A password needs a username")
        return {}
    if current is not None:
        old = current.doc.get("username")
        if isinstance(username, str) and isinstance(old, str) and username.lower() != old.lower():
            if current.row.md5_creds:
                add_error(errors, "password", "required",
                          "Changing the username needs the password again")
            return {}
        if not username:
            return {"md5_creds": None, "sha1_creds": None}
    return {}


def create_user(account_id: str, data: Any) -> Document:
    """A new user, under the id `data.id` asks for if any (else a new one)."""
    doc, password = _prepare(data)
    doc = with_defaults("user", doc)
    ident, id_errors = docs.requested_id(data)
    with database.atomic():
        errors = {**_database_errors(account_id, doc, None), **id_errors}
        creds = _credential_columns(doc, password, errors, None)
        validate("user", doc, errors)
        doc.pop("password", None)
        docs.claim_id(ident)
        return docs.insert_document(UserRow, doc, id=ident, account_id=account_id,
                                    **_columns(doc), **creds)


def get_user(account_id: str, user_id: str, cache: DocumentCache | None = None) -> Document:
    """The user to answer with (read only: `docs.fetch` it to write)."""
    return docs.read(UserRow, user_id, account_id, cache)


def require_user(account_id: str, user_id: str) -> None:
    """NotFound unless the user exists in the account."""
    docs.require(UserRow, user_id, account_id)


#: Checks a change (before, after) inside the update's transaction; raises to refuse it.
Guard = Callable[[dict[str, Any], dict[str, Any]], None]


def update_user(account_id: str, user_id: str, data: Any, *, merge: bool,
                if_match: Container[str] | None = None, guard: Guard | None = None
                ) -> tuple[Document, Document]:
    """Replace or merge-patch a user; returns (before, after). `guard` sees the documents
    before and after, once the new one is valid, and may refuse the change by raising."""
    incoming, password = _prepare(data)
    with database.atomic():
        current = docs.fetch(UserRow, user_id, account_id)
        docs.check_if_match(current, if_match)
        base = docs.merge_patch(current.doc, incoming) if merge else incoming
        doc = with_defaults("user", base)
        errors = _database_errors(account_id, doc, user_id)
        creds = _credential_columns(doc, password, errors, current)
        validate("user", doc, errors)
        doc.pop("password", None)
        if guard is not None:
            guard(current.doc, doc)
        updated = docs.update_document(UserRow, current, doc, **_columns(doc), **creds)
        # The tokens after the user's row: a login storing a token holds that row
        # (`token.issue_user_token`), so it either waits for this change and reads it, or
        # stores its token before these statements see the tokens.
        if doc.get("enabled") is False:
            revoke_user_tokens(user_id)
        elif doc.get("priv_level") != current.doc.get("priv_level"):
            set_user_priv_level(user_id, doc["priv_level"])
        return current, updated


def delete_user(account_id: str, user_id: str, if_match: Container[str] | None = None) -> Document:
    """Delete a user, take them out of every hotdesk and clear `owner_id` on their devices."""
    with database.atomic():
        current = docs.fetch(UserRow, user_id, account_id)
        docs.check_if_match(current, if_match)
        # By owner and by hotdesked user, two indexed lookups (never the account's devices).
        for device in devices.user_devices(account_id, user_id):
            doc = dict(device.doc)
            if doc.get("owner_id") == user_id:
                doc.pop("owner_id")
            users = dict((doc.get("hotdesk") or {}).get("users") or {})
            if user_id in users:
                users.pop(user_id)
                doc["hotdesk"] = {**doc["hotdesk"], "users": users}
            docs.update_document(DeviceRow, device, doc, owner_id=doc.get("owner_id"))
        HotdeskRow.delete().where(HotdeskRow.user_id == user_id).execute()
        docs.delete_document(UserRow, current)
        revoke_user_tokens(user_id)  # after the row, as in `update_user`
        return current


listing_row = listing_rows.user_row


def list_users(account_id: str, query: ListQuery) -> Page:
    return list_page(UserRow, account_id, query)


def user_by_credentials(account_id: str, creds: str, method: str) -> Document | None:
    column = UserRow.sha1_creds if method == "sha" else UserRow.md5_creds
    row = UserRow.select().where((UserRow.account_id == account_id) & (column == creds.lower())).first()
    return docs.to_document(row) if row else None


def user_by_hotdesk_id(account_id: str, hotdesk_id: str) -> Document | None:
    row = UserRow.select().where(
        (UserRow.account_id == account_id) & (UserRow.hotdesk_id == hotdesk_id)).first()
    return docs.to_document(row) if row else None
