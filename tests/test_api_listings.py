"""Listings over HTTP: pagination across pages, v1, filters and row shapes (SPEC §2, §4)."""
from __future__ import annotations

import pytest
from fixtures_web import assert_invalid

from models import account as store_accounts
from models import db
from models import device as store_devices

pytestmark = pytest.mark.store

DEVICE_ROW_KEYS = {"id", "name", "username", "mac_address", "owner_id", "enabled", "device_type"}


def make_devices(api, count: int) -> list[str]:
    """`count` devices created in the store directly (fast), named dev-000...; their ids."""
    with db.database.connection_context():
        account = store_accounts.get_account(api.account_id)
        return [store_devices.create_device(account, {"name": f"dev-{i:03d}"}).id for i in range(count)]


def walk(api, path: str, **params) -> tuple[list[dict], list[dict]]:
    """Follow `next_start_key` from the first page to the last: (rows, envelopes)."""
    rows, pages = [], []
    query = dict(params)
    while True:
        response = api.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body)
        rows += body["data"]
        if "next_start_key" not in body:
            return rows, pages
        assert len(pages) < 100
        query = {**params, "start_key": body["next_start_key"]}


def test_pages_cover_every_row_exactly_once(api):
    ids = make_devices(api, 7)
    rows, pages = walk(api, "devices", page_size=3)
    assert [len(p["data"]) for p in pages] == [3, 3, 1]
    assert [p["page_size"] for p in pages] == [3, 3, 1]
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert len({r["id"] for r in rows}) == 7
    assert "start_key" not in pages[0]
    assert pages[1]["start_key"] == pages[0]["next_start_key"]
    assert pages[1]["data"][0]["id"] == pages[0]["next_start_key"]


def test_page_boundary_exactly_full(api):
    make_devices(api, 6)
    rows, pages = walk(api, "devices", page_size=3)
    assert [len(p["data"]) for p in pages] == [3, 3]
    assert len({r["id"] for r in rows}) == 6


def test_default_page_size_is_50(api):
    ids = make_devices(api, 51)
    first = api.get("devices").json()
    assert len(first["data"]) == 50 and first["page_size"] == 50
    second = api.get("devices", params={"start_key": first["next_start_key"]}).json()
    assert len(second["data"]) == 1 and "next_start_key" not in second
    assert {r["id"] for r in first["data"] + second["data"]} == set(ids)


def test_paginate_false_returns_everything(api):
    ids = make_devices(api, 53)
    body = api.get("devices", params={"paginate": "false", "page_size": "2"}).json()
    assert len(body["data"]) == 53 and "next_start_key" not in body
    assert {r["id"] for r in body["data"]} == set(ids)


@pytest.mark.parametrize("value", ["maybe", "", "0", "no"])
def test_a_bad_paginate_value_is_refused(api, value):
    assert_invalid(api.get("devices", params={"paginate": value}), "paginate:enum", exact=True)


def test_v1_listings_are_not_paginated(api):
    ids = make_devices(api, 52)
    body = api.get("devices", version="v1", params={"page_size": "5"}).json()
    assert {r["id"] for r in body["data"]} == set(ids)
    assert "next_start_key" not in body and "page_size" not in body
    users = api.get("users", version="v1").json()
    assert [r["id"] for r in users["data"]] == [api.admin_id] and "page_size" not in users


def test_v1_ignores_start_key(api):
    """v1 has no pagination: a start_key must not silently cut the listing short."""
    ids = sorted(make_devices(api, 4))
    body = api.get("devices", version="v1", params={"start_key": ids[2]}).json()
    assert sorted(r["id"] for r in body["data"]) == ids


def test_a_page_changes_when_a_device_is_added_between_pages(api):
    """A row created behind the cursor is not repeated; every original row is still seen once."""
    ids = make_devices(api, 5)
    first = api.get("devices", params={"page_size": 2}).json()
    extra = api.create_device(name="late")
    rest, _ = walk(api, "devices", page_size=2, start_key=first["next_start_key"])
    seen = [r["id"] for r in first["data"] + rest]
    assert len(seen) == len(set(seen))
    assert set(ids) <= set(seen)
    assert (extra["id"] in seen) == (extra["id"] >= first["next_start_key"])


@pytest.mark.parametrize("param, value", [
    ("page_size", "0"), ("page_size", "-1"), ("page_size", "abc"), ("page_size", "1.5"),
    ("page_size", ""), ("page_size", "²"), ("page_size", "1001"), ("page_size", "9" * 30),
    ("page_size", " 5"), ("start_key", "nope"), ("start_key", "A" * 32), ("start_key", ""),
    ("start_key", "0" * 31), ("filter_bad key", "x"), ("filter_", "x"), ("filter_not_a..b", "x"),
    ("has_key", "a b"), ("key_missing", ""),
])
def test_invalid_listing_parameters_are_400_naming_the_parameter(api, param, value):
    make_devices(api, 2)
    for path in ("devices", "users"):
        data = assert_invalid(api.get(path, params={param: value}))
        assert param in data, data


def test_filters(api):
    alice = api.create_user()
    a = api.create_device(name="a", device_type="softphone", sip={"username": "alice", "password": "secret-1"},
                          owner_id=alice["id"], mac_address="00:00:00:00:00:0a", enabled=False)
    b = api.create_device(name="b", sip={"username": "bob", "password": "secret-1", "expire_seconds": 60},
                          provision={"check_sync_event": "resync"})
    c = api.create_device(name="c", device_type="fax", custom={"tier": 2})

    def names(**params) -> list[str]:
        response = api.get("devices", params=params)
        assert response.status_code == 200, response.text
        return sorted(r["name"] for r in response.json()["data"])

    assert names(filter_name="b") == ["b"]
    assert names(**{"filter_sip.username": "alice"}) == ["a"]
    assert names(**{"filter_sip.username": "nobody"}) == []
    assert names(filter_enabled="false") == ["a"]
    assert names(filter_enabled="true") == ["b", "c"]
    assert names(**{"filter_sip.expire_seconds": "60"}) == ["b"]
    assert names(**{"filter_custom.tier": "2"}) == ["c"]
    assert names(filter_not_device_type="sip_device") == ["a", "c"]
    assert names(**{"filter_not_sip.username": "alice"}) == ["b", "c"]
    assert names(has_key="mac_address") == ["a"]
    assert names(has_key="provision.check_sync_event") == ["b"]
    assert names(key_missing="sip.username") == ["c"]
    assert names(key_missing="owner_id") == ["b", "c"]
    assert names(filter_owner_id=alice["id"]) == ["a"]
    assert names(has_key="sip.username", filter_not_name="a") == ["b"]
    assert {a["id"], b["id"], c["id"]} == {r["id"] for r in api.get("devices").json()["data"]}


def test_filters_across_pages(api):
    for i in range(10):
        api.create_device(name=f"d{i}", device_type="fax" if i % 2 else "sip_device")
    rows, pages = walk(api, "devices", page_size=2, filter_device_type="fax")
    assert sorted(r["name"] for r in rows) == ["d1", "d3", "d5", "d7", "d9"]
    assert [len(p["data"]) for p in pages] == [2, 2, 1]


def test_device_listing_rows(api):
    owner = api.create_user()
    full = api.create_device(name="full", sip={"username": "alice", "password": "secret-1"}, owner_id=owner["id"],
                             mac_address="AA:BB:CC:DD:EE:FF", enabled=False, device_type="softphone",
                             caller_id={"internal": {"number": "2001"}})
    bare = api.create_device(name="bare")
    rows = {r["id"]: r for r in api.get("devices").json()["data"]}
    assert rows[full["id"]] == {"id": full["id"], "name": "full", "username": "alice",
                                "mac_address": "aabbccddeeff", "owner_id": owner["id"], "enabled": False,
                                "device_type": "softphone"}
    # A key without a value is left out, as Kazoo's devices/crossbar_listing view does.
    assert set(rows[bare["id"]]) == DEVICE_ROW_KEYS - {"owner_id", "username"}
    assert rows[bare["id"]]["mac_address"] == "" and rows[bare["id"]]["enabled"] is True
    assert rows[bare["id"]]["device_type"] == "sip_device"
    assert "password" not in api.get("devices").text


def test_user_listing_rows(api):
    user = api.create_user(username="alice", password="pa55word", email="a@acme.test", presence_id="2001",
                           hotdesk={"id": "5", "pin": "1234"})
    rows = {r["id"]: r for r in api.get("users").json()["data"]}
    assert rows[user["id"]]["first_name"] == "Alice" and rows[user["id"]]["username"] == "alice"
    assert rows[user["id"]]["email"] == "a@acme.test" and rows[user["id"]]["priv_level"] == "user"
    assert "hotdesk" not in rows[user["id"]] and "password" not in api.get("users").text
    assert set(rows) == {api.admin_id, user["id"]}


def test_user_listing_paginates_and_filters(api):
    for i in range(5):
        api.create_user(first_name=f"U{i}", priv_level="admin" if i == 3 else "user")
    rows, pages = walk(api, "users", page_size=2)
    assert len(rows) == 6 and len({r["id"] for r in rows}) == 6 and len(pages) == 3
    admins = api.get("users", params={"filter_priv_level": "admin"}).json()["data"]
    assert sorted(r["first_name"] for r in admins) == ["Ada", "U3"]


def test_listings_show_only_the_account(api, other):
    other.create_device(name="theirs")
    other.create_user(first_name="Theirs")
    mine = api.create_device(name="mine")
    assert [r["id"] for r in api.get("devices", params={"paginate": "false"}).json()["data"]] == [mine["id"]]
    assert "Theirs" not in api.get("users").text
    # A start key of another account's row does not open it up.
    their_id = other.get("devices").json()["data"][0]["id"]
    rows = api.get("devices", params={"start_key": their_id}).json()["data"]
    assert all(r["name"] == "mine" for r in rows)
