"""The listing engine (SPEC §2): pagination by id, `filter_*`, `has_key`, `key_missing`, and
pages copied out of the store as the encoded listing rows it keeps beside each document."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import peewee

from models.documents import MISSING, decode, dotted_get, has_path, is_id, listing_id
from models.errors import ValidationFailed
from models.prepared import Prepared
from models.tables import DocumentTable

PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 1000
_BATCH = 500


@dataclass
class ListQuery:
    """Pagination and filters of a listing request (SPEC §2)."""

    paginate: bool = True
    page_size: int = PAGE_SIZE_DEFAULT
    start_key: str | None = None
    filters: list[Callable[[dict[str, Any]], bool]] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: dict[str, str], paginate: bool = True) -> ListQuery:
        """Parse query-string arguments; bad values raise ValidationFailed naming the argument."""
        errors: dict[str, dict[str, dict[str, Any]]] = {}
        query = cls(paginate=paginate)
        if "paginate" in args:
            flag = args["paginate"].lower()
            if flag not in ("true", "false"):
                errors["paginate"] = {"enum": {"message": "paginate must be true or false",
                                               "target": ["true", "false"]}}
            elif flag == "false":
                query.paginate = False
        if "page_size" in args:
            raw = args["page_size"]
            # str.isdigit() also holds for "²" and other Unicode digits that int() refuses.
            if not (raw.isascii() and raw.isdigit()):
                errors["page_size"] = {"type": {"message": "page_size must be an integer", "target": "integer"}}
            elif len(raw) > 9:  # int() refuses over 4300 digits; anything this long is too big
                errors["page_size"] = {"maximum": {"message": f"page_size must be at most {PAGE_SIZE_MAX}", "target": PAGE_SIZE_MAX}}
            else:
                size = int(raw)
                if size < 1:
                    errors["page_size"] = {"minimum": {"message": "page_size must be at least 1", "target": 1}}
                elif size > PAGE_SIZE_MAX:
                    errors["page_size"] = {"maximum": {"message": f"page_size must be at most {PAGE_SIZE_MAX}", "target": PAGE_SIZE_MAX}}
                else:
                    query.page_size = size
        if "start_key" in args:
            if not is_id(args["start_key"]):
                errors["start_key"] = {"pattern": {"message": "start_key must be a document id"}}
            else:
                query.start_key = args["start_key"]
        for name, value in args.items():
            predicate = _filter_predicate(name, value)
            if predicate is _INVALID:
                errors[name] = {"invalid": {"message": "filter key must be a dotted path of word characters"}}
            elif predicate is not None:
                query.filters.append(predicate)
        if errors:
            raise ValidationFailed(errors)
        return query


_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*\Z")
_INVALID = object()


def _matches(value: Any, wanted: str) -> bool:
    if value is MISSING:
        return False
    if isinstance(value, bool):
        return ("true" if value else "false") == wanted.lower()
    if isinstance(value, int | float):
        return str(value) == wanted
    return value == wanted


def _filter_predicate(name: str, value: str) -> Any:
    if name.startswith("filter_not_"):
        key = name[len("filter_not_"):]
        if not _KEY_RE.match(key):
            return _INVALID
        return lambda doc: not _matches(dotted_get(doc, key), value)
    if name.startswith("filter_"):
        key = name[len("filter_"):]
        if not _KEY_RE.match(key):
            return _INVALID
        return lambda doc: _matches(dotted_get(doc, key), value)
    if name == "has_key":
        if not _KEY_RE.match(value):
            return _INVALID
        return lambda doc: has_path(doc, value)
    if name == "key_missing":
        if not _KEY_RE.match(value):
            return _INVALID
        return lambda doc: not has_path(doc, value)
    return None


@dataclass
class Page:
    """One page of a listing: its rows as JSON texts, copied from the store as they are."""

    encoded_rows: list[str]
    next_start_key: str | None = None
    start_key: str | None = None

    def encoded(self) -> str:
        """The rows as one JSON array: exactly `encode(self.rows)`."""
        return "[" + ",".join(self.encoded_rows) + "]"

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [decode(text) for text in self.encoded_rows]


def list_page(table: type[DocumentTable], account_id: str, query: ListQuery) -> Page:
    """One page of the account's listing rows in id order, filtered.

    The rows are the stored `listing` texts (see `document_columns`), never decoded. Without
    filters this is one indexed range query of `page_size + 1` rows. Filters look inside the
    JSON documents, so those are read too and the filters applied here, batch by batch, until
    the page is full.
    """
    limit = query.page_size if query.paginate else None
    filters = query.filters
    if limit is not None and not filters:
        scan = _prepared_scan(table, "" if query.start_key is None else ">=", False)
        args = (account_id, limit + 1) if query.start_key is None else (
            account_id, limit + 1, query.start_key)
        texts = [text for (text,) in scan.tuples(*args)]  # text: as the driver gives it
        next_key = listing_id(texts.pop()) if len(texts) > limit else None
        return Page(texts, next_key, query.start_key)
    texts = []
    next_key = None
    for text, doc in _scan(table, account_id, query.start_key, bool(filters)):
        if filters:
            value = decode(doc)
            if not all(f(value) for f in filters):
                continue
        if limit is not None and len(texts) == limit:
            next_key = listing_id(text)
            break
        texts.append(text)
    return Page(texts, next_key, query.start_key)


_SCAN: dict[tuple[type[DocumentTable], str, bool], Prepared] = {}


def _prepared_scan(table: type[DocumentTable], start: str, with_doc: bool) -> Prepared:
    """(listing,) or (listing, doc) of an account's rows in id order, `limit` rows from the
    start (`start` is "") or from a key on (">=" the first batch, ">" the next ones)."""
    found = _SCAN.get((table, start, with_doc))
    if found is None:
        columns = (table.listing, table.doc) if with_doc else (table.listing,)

        def build(account_id: Any, limit: Any, cursor: Any = None) -> peewee.ModelSelect:
            scope = table.account_id == account_id
            if start == ">=":
                scope = scope & (table.id >= cursor)
            elif start == ">":
                scope = scope & (table.id > cursor)
            return table.select(*columns).where(scope).order_by(table.id).limit(limit)

        found = _SCAN[(table, start, with_doc)] = Prepared(build, arity=2 if start == "" else 3)
    return found


def _scan(
    table: type[DocumentTable], account_id: str, start: str | None, with_doc: bool,
) -> Iterator[tuple[str, str | None]]:
    """(listing text, doc text or None) of every row from `start` on, in batches."""
    cursor = start
    first = True
    while True:
        # Plain driver tuples: the columns are text, peewee's per-field conversion adds nothing.
        if cursor is None:
            found = _prepared_scan(table, "", with_doc).tuples(account_id, _BATCH)
        else:
            found = _prepared_scan(table, ">=" if first else ">", with_doc).tuples(
                account_id, _BATCH, cursor)
        got = 0
        for row in found:
            got += 1
            cursor = listing_id(row[0])
            yield (row[0], row[1]) if with_doc else (row[0], None)
        first = False
        if got < _BATCH:
            return
