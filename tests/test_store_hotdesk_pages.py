"""The hotdesk listings' pages (models.hotdesk): rows sharing a start key stay on one page, and
batches read from the membership table meet no gap nor repeat, even inside one device."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from models import account as accounts
from models import db, hotdesk
from models import device as devices
from models import user as users
from models.documents import Document
from models.pages import ListQuery

pytestmark = pytest.mark.store


def rows(*keys: str) -> list[dict[str, str]]:
    return [{"device_id": key, "n": str(i)} for i, key in enumerate(keys)]


def page_keys(page) -> list[str]:
    return [row["device_id"] for row in page.rows]


def test_a_page_ends_before_a_key_it_cannot_hold_whole():
    listing = rows("a", "b", "b", "b", "c")
    first = hotdesk._page(listing, "device_id", ListQuery(page_size=2))
    assert page_keys(first) == ["a"] and first.next_start_key == "b"
    second = hotdesk._page(listing[1:], "device_id", ListQuery(page_size=2, start_key="b"))
    assert page_keys(second) == ["b", "b", "b"] and second.next_start_key == "c"
    assert second.start_key == "b"
    last = hotdesk._page(listing[4:], "device_id", ListQuery(page_size=2, start_key="c"))
    assert page_keys(last) == ["c"] and last.next_start_key is None


def test_a_page_of_distinct_keys_is_page_size_rows():
    page = hotdesk._page(rows("a", "b", "c"), "device_id", ListQuery(page_size=2))
    assert page_keys(page) == ["a", "b"] and page.next_start_key == "c"
    page = hotdesk._page(rows("a", "b"), "device_id", ListQuery(page_size=2))
    assert page_keys(page) == ["a", "b"] and page.next_start_key is None


def test_filters_skip_rows_before_counting():
    query = ListQuery(page_size=1, filters=[lambda row: row["device_id"] != "b"])
    page = hotdesk._page(rows("b", "a", "b", "c"), "device_id", query)
    assert page_keys(page) == ["a"] and page.next_start_key == "c"


@pytest.fixture
def store(database_url: str) -> Iterator[Document]:
    with db.database.connection_context():
        yield accounts.create_account({"name": "acme", "realm": "acme.test"})


def test_batches_meet_inside_a_device(store, monkeypatch):
    monkeypatch.setattr(hotdesk, "_BATCH", 2)
    people = [users.create_user(store.id, {"first_name": f"U{i}", "last_name": "L"}) for i in range(5)]
    ids = [p.id for p in people]
    crowded = devices.create_device(store, {"name": "crowded", "hotdesk": {"users": {u: {} for u in ids}}})
    quiet = devices.create_device(store, {"name": "quiet", "hotdesk": {"users": {ids[0]: {}}}})
    wanted = sorted([(crowded.id, u) for u in ids] + [(quiet.id, ids[0])])
    for query in (ListQuery(paginate=False), ListQuery(page_size=1000),
                  ListQuery(page_size=1000, filters=[lambda row: True])):
        got = [(r["device_id"], r["user_id"]) for r in hotdesk.account_hotdesks_page(store.id, query).rows]
        assert got == wanted
    assert [r["id"] for r in hotdesk.device_hotdesks(store.id, crowded.id)] == sorted(ids)
    assert hotdesk.device_hotdesks_page(store.id, crowded.id, ListQuery(page_size=3)).next_start_key == \
        sorted(ids)[3]
