"""What every stored document shares: ids, revisions, JSON, merging and conditional writes
(the listing engine is `models.pages`)."""
from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

import peewee

from models import document_cache
from models.db import database
from models.document_cache import DocumentCache
from models.document_cache import Row as CachedRow
from models.errors import Conflict, IdInUse, NotFound, StaleRevision
from models.prepared import Prepared
from models.tables import DocumentTable

ID_RE = re.compile(r"^[0-9a-f]{32}\Z")


def new_id() -> str:
    """A new document id: 32 lowercase hex characters."""
    return uuid.uuid4().hex


def is_id(value: Any) -> bool:
    return isinstance(value, str) and ID_RE.match(value) is not None


def encode(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def decode(text: str) -> Any:
    return json.loads(text)


def strip_private(doc: dict[str, Any]) -> dict[str, Any]:
    """Drop keys clients may never set or see (`pvt_*`, `_*`) and the envelope's `id`."""
    return {k: v for k, v in doc.items() if not (k.startswith("pvt_") or k.startswith("_") or k == "id")}


def requested_id(data: Any) -> tuple[str | None, dict[str, Any]]:
    """The id a create asks for in `data.id`, and the errors (as `validation.Errors`) of one that
    is not an id. Kazoo saves a new document under the id it brings (`kz_doc:id` reads `_id`,
    then `id`), which lets a migration keep the ids other documents refer to."""
    value = data.get("id") if isinstance(data, dict) else None
    if value is None or is_id(value):
        return value, {}
    return None, {"id": {"pattern": {"message": "id must be 32 lowercase hexadecimal characters",
                                     "target": "^[0-9a-f]{32}$"}}}


def claim_id(ident: str | None) -> None:
    """IdInUse when a document of any kind already has the id `ident` (Kazoo keeps an account's
    documents of every kind in one database, one id space)."""
    if ident is None:
        return
    for table in DocumentTable.__subclasses__():
        if table.select(table.id).where(table.id == ident).exists():
            raise IdInUse(ident)


def merge_patch(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Merge `patch` into a copy of `base`: objects merge recursively, `null` removes the key."""
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_patch(out[key], value)
        else:
            out[key] = value
    return out


MISSING = object()


def dotted_get(doc: Any, path: str) -> Any:
    """The value at `a.b.c` in nested objects, or the `MISSING` marker."""
    node = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def has_path(doc: Any, path: str) -> bool:
    return dotted_get(doc, path) is not MISSING


@dataclass
class Document:
    """A stored document as the API sees it."""

    id: str
    doc: dict[str, Any]
    revision: str
    account_id: str | None = None
    # The table row; None for a document read only to answer with (`read`).
    row: Any = field(default=None, repr=False, compare=False)
    # `doc` as stored (`encode(doc)`), for a document read only to answer with (`read`).
    text: str | None = field(default=None, repr=False, compare=False)

    def public(self) -> dict[str, Any]:
        """The document as returned to clients, with its id."""
        return {**self.doc, "id": self.id}

    def public_encoded(self) -> str:
        """`encode(self.public())`, from the stored text when there is one (a stored document
        never holds an `id` of its own: `strip_private` takes it out)."""
        if self.text is None or not self.text.startswith("{"):
            return encode(self.public())
        head = self.text[:-1] + ("," if self.text != "{}" else "")
        return f'{head}"id":{json.encoder.encode_basestring(self.id)}}}'


def to_document(row: DocumentTable, account_id: str | None = None) -> Document:
    return Document(
        id=row.id,
        doc=decode(row.doc),
        revision=row.revision,
        account_id=account_id if account_id is not None else getattr(row, "account_id", None),
        row=row,
    )


def new_revision(doc: dict[str, Any], n: int) -> tuple[int, str]:
    """The next revision `(n, hash)`; the hash covers the content and a nonce so that two
    writes of the same content still get different revisions."""
    return n, hashlib.md5((encode(doc) + uuid.uuid4().hex).encode()).hexdigest()


def check_if_match(current: Document, if_match: Container[str] | None) -> None:
    """Refuse a write whose `If-Match` does not name the current revision (412).

    `if_match` holds the revisions the client accepts (any, for `*`); None: no precondition.
    """
    if if_match is not None and current.revision not in if_match:
        raise StaleRevision(current.revision)


# Every listing row starts `{"id":"<32 characters>"` (checked as it is written): a listing page
# reads the ids it needs (the next page's start key, a batch's end) out of the rows themselves.
_LISTING_ID = slice(7, 39)


def listing_id(listing: str) -> str:
    """The document id at the start of an encoded listing row."""
    return listing[_LISTING_ID]


def document_columns(table: type[DocumentTable], ident: str, doc: dict[str, Any]) -> dict[str, str]:
    """The columns written with every write of a document: `doc` itself, encoded, and its
    encoded listing row where the table keeps one (`DocumentTable.listing_row`)."""
    columns = {"doc": encode(doc)}
    build = table.listing_row
    if build is not None:
        listing = columns["listing"] = encode(build(ident, doc))
        if listing[:_LISTING_ID.start] != '{"id":"' or listing_id(listing) != ident \
                or listing[_LISTING_ID.stop:_LISTING_ID.stop + 1] != '"':
            raise ValueError(f"a listing row must start with its 32-character id: {listing[:60]}")
    return columns


def rewrite_listings(table: type[DocumentTable], where: Any) -> int:
    """Write the listing row of every document matching `where` again from its document (after
    the rows' shape changed); returns how many were rewritten."""
    changed = 0
    for ident, doc in table.select(table.id, table.doc).where(where).tuples():
        columns = document_columns(table, ident, decode(doc))
        table.update(listing=columns["listing"]).where(table.id == ident).execute()
        changed += 1
    return changed


def insert_document(table: type[DocumentTable], doc: dict[str, Any], **columns: Any) -> Document:
    """Insert a new document row (inside the caller's transaction)."""
    now = time.time()
    ident = columns.pop("id", None) or new_id()
    n, rev_hash = new_revision(doc, 1)
    columns.update(document_columns(table, ident, doc))
    try:
        row = table.create(
            id=ident, rev_n=n, rev_hash=rev_hash, created=now, modified=now, **columns
        )
    except peewee.IntegrityError as exc:
        raise Conflict(str(exc)) from exc
    return to_document(row)


def update_document(
    table: type[DocumentTable], current: Document, doc: dict[str, Any], **columns: Any
) -> Document:
    """Write `doc` over `current`, only if nobody wrote since `current` was read (else 409)."""
    n, rev_hash = new_revision(doc, current.row.rev_n + 1)
    columns.update(document_columns(table, current.id, doc))
    try:
        changed = (
            table.update(rev_n=n, rev_hash=rev_hash, modified=time.time(), **columns)
            .where((table.id == current.id) & (table.rev_n == current.row.rev_n)
                   & (table.rev_hash == current.row.rev_hash))
            .execute()
        )
    except peewee.IntegrityError as exc:
        raise Conflict(str(exc)) from exc
    if changed != 1:
        raise Conflict(f"{table.__name__} {current.id} changed underneath")
    if table.cached_reads:
        document_cache.notify(table._meta.table_name, current.id)
    row = table.get_by_id(current.id)
    return to_document(row, current.account_id)


def delete_document(table: type[DocumentTable], current: Document) -> None:
    """Delete `current`, only if nobody wrote since it was read (else 409)."""
    deleted = (
        table.delete()
        .where((table.id == current.id) & (table.rev_n == current.row.rev_n)
               & (table.rev_hash == current.row.rev_hash))
        .execute()
    )
    if deleted != 1:
        raise Conflict(f"{table.__name__} {current.id} changed underneath")
    if table.cached_reads:
        document_cache.notify(table._meta.table_name, current.id)


_FETCH: dict[tuple[type[DocumentTable], bool], Prepared] = {}


def _prepared_fetch(table: type[DocumentTable], of_account: bool) -> Prepared:
    """The prepared lookup by id (and account): most requests make one."""
    found = _FETCH.get((table, of_account))
    if found is None:
        if of_account:
            found = Prepared(lambda ident, account_id: table.select().where(
                (table.id == ident) & (table.account_id == account_id)).limit(1))
        else:
            found = Prepared(lambda ident: table.select().where(table.id == ident).limit(1))
        _FETCH[(table, of_account)] = found
    return found


def fetch(table: type[DocumentTable], ident: str, account_id: str | None = None) -> Document:
    """The document `ident` (of `account_id` when given), or NotFound."""
    if not is_id(ident):
        raise NotFound(ident)
    if account_id is None:
        row = _prepared_fetch(table, False).first(ident)
    else:
        row = _prepared_fetch(table, True).first(ident, account_id)
    if row is None:
        raise NotFound(ident)
    return to_document(row)


_READ: dict[type[DocumentTable], Prepared] = {}


def read(table: type[DocumentTable], ident: str, account_id: str,
         cache: DocumentCache | None = None) -> Document:
    """The document `ident` of `account_id` to answer with, or NotFound: three columns as plain
    tuples, no table row (`fetch` it to write; building the row costs as much as the query).

    With a `cache` (PostgreSQL, `models.document_cache`), outside a transaction, a document of a
    table with `cached_reads` read before and not written since is answered without a query.
    """
    if not is_id(ident):
        raise NotFound(ident)
    if cache is not None and (database.in_transaction() or not table.cached_reads):
        cache = None  # a transaction may have written it: read what it sees
    found: CachedRow | None = None
    if cache is None:
        found = _read_row(table, ident, account_id)
    else:
        name = table._meta.table_name
        found = cache.get(name, ident, account_id)
        if found is None:
            ticket = cache.ticket(ident)  # before the query
            found = _read_row(table, ident, account_id)
            cache.store(name, ident, account_id, found, ticket)
    return Document(id=ident, doc=decode(found.doc), revision=f"{found.rev_n}-{found.rev_hash}",
                    account_id=account_id, text=found.doc)


def _read_row(table: type[DocumentTable], ident: str, account_id: str) -> CachedRow:
    query = _READ.get(table)
    if query is None:
        query = _READ[table] = Prepared(lambda ident, account_id: table.select(
            table.doc, table.rev_n, table.rev_hash).where(
            (table.id == ident) & (table.account_id == account_id)).limit(1))
    row = next(query.tuples(ident, account_id), None)
    if row is None:
        raise NotFound(ident)
    return CachedRow(*row)


_EXISTS: dict[type[DocumentTable], Prepared] = {}


def require(table: type[DocumentTable], ident: str, account_id: str) -> None:
    """NotFound unless document `ident` of `account_id` exists: an index probe, nothing read."""
    if not is_id(ident):
        raise NotFound(ident)
    probe = _EXISTS.get(table)
    if probe is None:
        probe = _EXISTS[table] = Prepared(lambda ident, account_id: table.select(table.id).where(
            (table.id == ident) & (table.account_id == account_id)).limit(1))
    if next(probe.tuples(ident, account_id), None) is None:
        raise NotFound(ident)
