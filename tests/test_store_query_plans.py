"""Every lookup the API or FreeSWITCH makes is an indexed query (SPEC §5): by id, by (realm,
lower-cased SIP username), by (account, MAC), by owner, by hotdesked user, by credentials.

Each test runs the store's own function, records every statement it sends to SQLite (the
driver's trace callback, so prepared queries are seen too) and asks SQLite for the plan of each:
the device, user and hotdesk tables may only be SEARCHed through an index on a key narrower than
the account, never SCANned nor walked by `account_id` alone. SQLite only: the plans are
SQLite's, so these tests are skipped when the test database is PostgreSQL.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import peewee
import pytest

from models import account as accounts
from models import db, hotdesk
from models import device as devices
from models import documents as docs
from models import user as users
from models.documents import Document
from models.pages import ListQuery
from models.tables import DeviceRow, HotdeskRow, UserRow

pytestmark = pytest.mark.store

WATCHED = {DeviceRow._meta.table_name, UserRow._meta.table_name, HotdeskRow._meta.table_name}
_ALIAS = re.compile(r'"(\w+)" AS "(\w+)"')
_SEARCH = re.compile(r"^SEARCH (\w+) USING (?:COVERING )?(?:INDEX (\w+)|PRIMARY KEY|INTEGER PRIMARY KEY)"
                     r" \(([^)]*)\)")


@pytest.fixture
def store(database_url: str) -> Iterator[Document]:
    if not isinstance(db.database.obj, peewee.SqliteDatabase):
        pytest.skip("query plans are checked on SQLite only")
    with db.database.connection_context():
        yield accounts.create_account({"name": "acme", "realm": "acme.test"})


@pytest.fixture
def desk(store: Document) -> dict[str, Document]:
    """A user with credentials who owns one phone and is hotdesked into another."""
    alice = users.create_user(store.id, {"first_name": "Alice", "last_name": "L", "username": "alice",
                                         "password": "secret", "hotdesk": {"id": "101"}})
    owned = devices.create_device(store, {"name": "owned", "owner_id": alice.id,
                                          "mac_address": "00:00:00:00:00:01",
                                          "sip": {"username": "alice", "password": "secret-1"}})
    visiting = devices.create_device(store, {"name": "visiting", "hotdesk": {"users": {alice.id: {}}}})
    return {"account": store, "alice": alice, "owned": owned, "visiting": visiting}


@contextmanager
def recorded() -> Iterator[list[str]]:
    """The statements sent to SQLite inside the block, with their values written in."""
    statements: list[str] = []
    connection = db.database.connection()
    connection.set_trace_callback(statements.append)
    try:
        yield statements
    finally:
        connection.set_trace_callback(None)


def table_of(name: str, aliases: dict[str, str]) -> str:
    return aliases.get(name, name)


def walks(statement: str) -> list[str]:
    """The plan lines of `statement` that read a watched table other than by a narrow key."""
    aliases = {alias: table for table, alias in _ALIAS.findall(statement)}
    plan = db.database.execute_sql("EXPLAIN QUERY PLAN " + statement).fetchall()
    bad = []
    for *_, detail in plan:
        if detail.startswith("SCAN "):
            name = detail.split()[1]
            if table_of(name, aliases) in WATCHED:
                bad.append(detail)
            continue
        found = _SEARCH.match(detail)
        if detail.startswith("SEARCH ") and found is None:
            bad.append(detail)  # a SEARCH without an index
        elif found and table_of(found.group(1), aliases) in WATCHED:
            keys = {c.split("=")[0].split(">")[0].split("<")[0] for c in found.group(3).split(" AND ")}
            if keys <= {"account_id"}:
                bad.append(detail)  # the whole account, key by key
    return bad


def assert_indexed(run: Callable[[], Any]) -> list[str]:
    """Run `run` and fail on any statement that scans or walks a watched table."""
    with recorded() as statements:
        run()
    reads = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE"))]
    assert reads, "nothing was read"
    bad = {s: walks(s) for s in reads}
    assert not any(bad.values()), {s: lines for s, lines in bad.items() if lines}
    return reads


# --- the key lookups ----------------------------------------------------------------------------

def test_device_by_id(desk):
    assert_indexed(lambda: devices.get_device(desk["account"].id, desk["owned"].id))
    assert_indexed(lambda: docs.fetch(DeviceRow, desk["owned"].id, desk["account"].id))


def test_user_by_id(desk):
    assert_indexed(lambda: users.get_user(desk["account"].id, desk["alice"].id))


def test_device_by_realm_and_sip_username(desk):
    assert_indexed(lambda: devices.directory_entry("acme.test", "ALICE"))
    assert_indexed(lambda: devices.devices_by_sip("acme.test", ["alice", "bob"]))


def test_device_by_account_and_mac(desk):
    query = DeviceRow.select(DeviceRow.id).where(
        (DeviceRow.account_id == desk["account"].id) & (DeviceRow.mac_address == "000000000001"))
    assert_indexed(lambda: list(query))
    # The uniqueness check of a write asks the same.
    assert_indexed(lambda: devices.update_device(desk["account"], desk["owned"].id,
                                                 {"mac_address": "00:00:00:00:00:02"}, merge=True))


def test_devices_by_owner_and_hotdesked_user(desk):
    assert_indexed(lambda: devices.user_device_rows(desk["account"].id, desk["alice"].id))
    assert_indexed(lambda: devices.user_devices(desk["account"].id, desk["alice"].id))


def test_hotdesk_by_user(desk):
    assert_indexed(lambda: hotdesk.hotdesked_devices(desk["alice"].id))
    assert_indexed(lambda: hotdesk.logout(desk["alice"]))


def test_user_by_hotdesk_id(desk):
    assert_indexed(lambda: users.user_by_hotdesk_id(desk["account"].id, "101"))


# --- the lookups the audit found walking the account ------------------------------------------

def test_user_hotdesks(desk):
    assert_indexed(lambda: hotdesk.user_hotdesks(desk["account"].id, desk["alice"].id))


def test_device_hotdesks(desk):
    assert_indexed(lambda: hotdesk.device_hotdesks(desk["account"].id, desk["visiting"].id))


def test_account_hotdesks_page_reads_hotdesks_not_devices(desk):
    """The account listing walks the account's hotdesk rows (it lists them), in an index's
    order, and reads each device and user by id."""
    with recorded() as statements:
        hotdesk.account_hotdesks_page(desk["account"].id, ListQuery(page_size=1))
    for statement in statements:
        aliases = {alias: table for table, alias in _ALIAS.findall(statement)}
        plan = [d for *_, d in db.database.execute_sql("EXPLAIN QUERY PLAN " + statement).fetchall()]
        assert not [d for d in plan if d.startswith("SCAN ")], (statement, plan)
        assert not [d for d in plan if "TEMP B-TREE" in d], (statement, plan)
        if HotdeskRow._meta.table_name not in aliases.values():
            assert walks(statement) == [], statement


def test_delete_user(desk):
    assert_indexed(lambda: users.delete_user(desk["account"].id, desk["alice"].id))
    assert DeviceRow.get_by_id(desk["owned"].id).owner_id is None


@pytest.mark.parametrize("method", ["md5", "sha"])
def test_user_by_credentials(desk, method):
    md5, sha1 = users.credentials("alice", "secret")
    creds = sha1 if method == "sha" else md5
    found = []
    assert_indexed(lambda: found.append(users.user_by_credentials(desk["account"].id, creds, method)))
    assert found[0].id == desk["alice"].id
