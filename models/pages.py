"""The listing engine (SPEC §2): pagination by id, Kazoo's filters (`filter_*`, `filter_not_*`,
`has_key`, `key_missing`, `has_value`, `created_*`, `modified_*`), and pages copied out of the
store as the encoded listing rows it keeps beside each document."""
from __future__ import annotations

import json
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


#: `calendar:datetime_to_gregorian_seconds` of the Unix epoch: Kazoo's `pvt_created` and
#: `pvt_modified` count seconds from year 0.
GREGORIAN_EPOCH = 62_167_219_200
_FILTERS = ("has_key", "key_missing", "has_value", "created_from", "created_to", "modified_from",
            "modified_to")


def gregorian(epoch_seconds: float) -> int:
    """Kazoo's timestamp (Gregorian seconds) of a Unix time."""
    return int(epoch_seconds) + GREGORIAN_EPOCH


@dataclass
class ListQuery:
    """Pagination and filters of a listing request (SPEC §2).

    Each filter is a predicate over a row's document, which carries `pvt_created` and
    `pvt_modified` (Gregorian seconds) when the listing has them, as Kazoo's documents do.
    """

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
        query.filters = [_filter(name, value) for name, value in values.items()
                         if name in _FILTERS or name.startswith("filter_")]
        return query

    def matches(self, doc: dict[str, Any]) -> bool:
        return all(f(doc) for f in self.filters)


# --- Kazoo's filters (crossbar_filter:filter_prop, crossbar_doc:filter_prop in 3.22) ---------

def _as_text(value: Any) -> str | None:
    """`kz_json:get_binary_value(Key, Doc, <<>>)`: a missing key is "", a scalar its text; an
    object or a list has none (Kazoo's conversion fails and the filter with it)."""
    if value is MISSING:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    return None


def _should_filter(text: str, wanted: str) -> bool:
    """`crossbar_filter:should_filter/2`: the same text, or a member of a JSON list of texts."""
    if text == wanted:
        return True
    try:
        listed = json.loads(wanted)
    except ValueError:
        return False
    return isinstance(listed, list) and text in listed


def _is_empty(value: Any) -> bool:
    """`kz_term:is_empty/1`, which `has_value` negates."""
    if value is MISSING or value is None or value is False:
        return True
    if value is True:
        return False
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, str):
        return value in ("", "0", "false", "NULL", "undefined")
    return len(value) == 0


def _stamp(doc: dict[str, Any], key: str) -> int | None:
    value = doc.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _filter(name: str, value: Any) -> Callable[[dict[str, Any]], bool]:
    """The predicate of one validated filter argument (`crossbar_filter:filter_prop/3`)."""
    if name.startswith("filter_not_"):
        key = name[len("filter_not_"):]

        def not_equal(doc: dict[str, Any]) -> bool:
            text = _as_text(dotted_get(doc, key))
            return text is not None and not _should_filter(text, value)
        return not_equal
    if name.startswith("filter_"):
        key = name[len("filter_"):]

        def equal(doc: dict[str, Any]) -> bool:
            text = _as_text(dotted_get(doc, key))
            return text is not None and _should_filter(text, value)
        return equal
    if name == "has_key":
        return lambda doc: has_path(doc, value)
    if name == "key_missing":
        return lambda doc: not has_path(doc, value)
    if name == "has_value":
        return lambda doc: not _is_empty(dotted_get(doc, value))
    stamp_key = "pvt_created" if name.startswith("created") else "pvt_modified"
    lower = name.endswith("_from")  # crossbar_filter:lowerbound, else upperbound

    def within(doc: dict[str, Any]) -> bool:
        stamp = _stamp(doc, stamp_key)
        return stamp is not None and (stamp >= value if lower else stamp <= value)
    return within


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
    for text, doc, created, modified in _scan(table, account_id, query.start_key, bool(filters)):
        if filters:
            value = decode(doc)
            value["pvt_created"] = gregorian(created)
            value["pvt_modified"] = gregorian(modified)
            if not query.matches(value):
                continue
        if limit is not None and len(texts) == limit:
            next_key = listing_id(text)
            break
        texts.append(text)
    return Page(texts, next_key, query.start_key)


_SCAN: dict[tuple[type[DocumentTable], str, bool], Prepared] = {}


def _prepared_scan(table: type[DocumentTable], start: str, with_doc: bool) -> Prepared:
    """(listing,) or (listing, doc, created, modified) of an account's rows in id order, `limit`
    rows from the start (`start` is "") or from a key on (">=" the first batch, ">" the next)."""
    found = _SCAN.get((table, start, with_doc))
    if found is None:
        columns = ((table.listing, table.doc, table.created, table.modified) if with_doc
                   else (table.listing,))

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
) -> Iterator[tuple[Any, ...]]:
    """(listing text, doc text, created, modified) of every row from `start` on, in batches
    (the last three None unless `with_doc`)."""
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
            yield row if with_doc else (row[0], None, None, None)
        first = False
        if got < _BATCH:
            return
