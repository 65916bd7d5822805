"""The listing engine (SPEC §2): pagination by id, `filter_*`, `has_key`, `key_missing`, and
pages copied out of the store as the encoded listing rows it keeps beside each document."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import peewee

from models.documents import MISSING, decode, dotted_get, has_path, listing_id
from models.errors import ValidationFailed
from models.prepared import Prepared
from models.query_params import read_query
from models.tables import DocumentTable
from models.validation import Errors

PAGE_SIZE_DEFAULT = 50
_BATCH = 500


@dataclass
class ListQuery:
    """Pagination and filters of a listing request (SPEC §2)."""

    paginate: bool = True
    page_size: int = PAGE_SIZE_DEFAULT
    start_key: str | None = None
    filters: list[Callable[[dict[str, Any]], bool]] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: Mapping[str, str], paginate: bool = True) -> ListQuery:
        """Parse query-string arguments (`listing` in schemas/query.json); bad values raise
        ValidationFailed naming each argument."""
        errors: Errors = {}
        values = read_query("listing", args, errors)
        if errors:
            raise ValidationFailed(errors)
        query = cls(paginate=paginate and values.get("paginate", True),
                    page_size=values.get("page_size", PAGE_SIZE_DEFAULT),
                    start_key=values.get("start_key"))
        for name, value in values.items():
            predicate = _filter_predicate(name, value)
            if predicate is not None:
                query.filters.append(predicate)
        return query


def _matches(value: Any, wanted: str) -> bool:
    if value is MISSING:
        return False
    if isinstance(value, bool):
        return ("true" if value else "false") == wanted.lower()
    if isinstance(value, int | float):
        return str(value) == wanted
    return value == wanted


def _filter_predicate(name: str, value: str) -> Callable[[dict[str, Any]], bool] | None:
    """The filter a (validated) listing argument asks for, or None for any other argument."""
    if name.startswith("filter_not_"):
        key = name[len("filter_not_"):]
        return lambda doc: not _matches(dotted_get(doc, key), value)
    if name.startswith("filter_"):
        key = name[len("filter_"):]
        return lambda doc: _matches(dotted_get(doc, key), value)
    if name == "has_key":
        return lambda doc: has_path(doc, value)
    if name == "key_missing":
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
            assert doc is not None  # _scan reads the document whenever there are filters
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
