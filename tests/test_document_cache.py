"""The per-process document cache (PostgreSQL): `GET` of a device or a user answered from what the
process read, never after a write on this host has been answered, and after one made elsewhere
once its NOTIFY is delivered.

The cache's rules are tested on their own first (no database), then in a server over a real
PostgreSQL, run only when a PostgreSQL test database is configured (CI's second pass). The
workers' side (one worker's write, the other's next read; a write from another process) is in
`test_workers.py`, which runs on both databases.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fixtures_web import TEST_DATABASE_ENV, client_for, make_account
from test_actions_support import Clock, wait_until

from models import db
from models import document_cache as cache_module
from models import documents as docs
from models.account import get_account
from models.device import create_device, update_device
from models.document_cache import (
    EVERYTHING,
    TTL_SECONDS,
    DocumentCache,
    Row,
    Stored,
    Versions,
    stored,
)
from models.tables import DeviceRow

pytestmark = pytest.mark.store

needs_postgresql = pytest.mark.skipif(
    not os.environ.get(TEST_DATABASE_ENV, "").startswith(("postgres://", "postgresql://")),
    reason=f"the document cache is PostgreSQL's: set {TEST_DATABASE_ENV} to a PostgreSQL database")

DEVICE = "d" * 32
ACCOUNT = "a" * 32
ROW = Row('{"name":"desk"}', 3, "f" * 32)
#: Seconds a delivered notification may take to show (generous: the machine is shared).
DELIVERY = 20.0


# --- the cache's rules ---------------------------------------------------------------------------

def listening_cache(**options: Any) -> DocumentCache:
    cache = DocumentCache(**options)
    cache.listening_changed(True)
    return cache


def cached(cache: DocumentCache, ident: str = DEVICE, row: Row = ROW) -> DocumentCache:
    assert cache.store("device", ident, ACCOUNT, row, cache.ticket(ident))
    return cache


def test_a_stored_row_answers_for_its_table_id_and_account_only() -> None:
    cache = cached(listening_cache())
    assert cache.get("device", DEVICE, ACCOUNT) == ROW
    assert cache.get("user", DEVICE, ACCOUNT) is None
    assert cache.get("device", "e" * 32, ACCOUNT) is None
    assert cache.get("device", DEVICE, "b" * 32) is None  # another account's path


def test_a_write_in_this_process_or_a_sibling_is_never_answered_over() -> None:
    cache = cached(listening_cache())
    cache_module._written("device", DEVICE)  # what a commit here does
    assert cache.get("device", DEVICE, ACCOUNT) is None
    cached(cache)
    cache_module._versions.bump(DEVICE)  # a sibling worker's commit: only the shared stamp changes
    assert cache.get("device", DEVICE, ACCOUNT) is None


def test_a_row_read_while_a_write_committed_is_stored_but_never_answered() -> None:
    cache = listening_cache()
    ticket = cache.ticket(DEVICE)  # before the query
    cache_module._versions.bump(DEVICE)  # the write commits while the query runs
    cache.store("device", DEVICE, ACCOUNT, ROW, ticket)  # what the query read may be the old row
    assert cache.get("device", DEVICE, ACCOUNT) is None


def test_nothing_is_kept_or_answered_while_no_listener_is_connected() -> None:
    cache = DocumentCache()
    assert not cache.store("device", DEVICE, ACCOUNT, ROW, cache.ticket(DEVICE))
    cache.listening_changed(True)
    ticket = cache.ticket(DEVICE)
    cached(cache, "e" * 32)
    cache.listening_changed(False)  # the connection is lost: everything goes
    assert len(cache) == 0 and cache.get("device", "e" * 32, ACCOUNT) is None
    cache.listening_changed(True)
    assert not cache.store("device", DEVICE, ACCOUNT, ROW, ticket)  # read before the reconnection


def test_entries_live_the_ttl_and_the_oldest_goes_first_when_full() -> None:
    clock = Clock()
    cache = listening_cache(ttl=5.0, max_entries=2, clock=clock)
    cached(cache, "1" * 32)
    clock.now = 1.0
    cached(cache, "2" * 32)
    cached(cache, "3" * 32)
    assert len(cache) == 2 and cache.get("device", "1" * 32, ACCOUNT) is None
    clock.now = 5.5  # the second is 4.5 s old: still answered
    assert cache.get("device", "2" * 32, ACCOUNT) == ROW
    clock.now = 6.5
    assert cache.get("device", "2" * 32, ACCOUNT) is None and len(cache) == 1


def test_a_notification_forgets_what_it_names_or_everything() -> None:
    cache = cached(cached(listening_cache(), "1" * 32), "2" * 32)
    assert cache.forget(f"device:{'1' * 32}") == 1
    assert cache.get("device", "1" * 32, ACCOUNT) is None and cache.get("device", "2" * 32, ACCOUNT) == ROW
    ticket = cache.ticket("3" * 32)
    assert cache.forget(EVERYTHING) == 1 and len(cache) == 0
    assert not cache.store("device", "3" * 32, ACCOUNT, ROW, ticket)  # read before the purge
    cached(cache)
    assert cache.forget("garbled") == 1  # not understood: nothing is trusted


def test_a_check_drops_changed_and_gone_entries_and_keeps_the_others_another_ttl() -> None:
    clock = Clock()
    cache = listening_cache(ttl=5.0, clock=clock)
    same, changed, gone = "1" * 32, "2" * 32, "3" * 32
    for ident in (same, changed, gone):
        cached(cache, ident)
    clock.now = 4.0
    asked = []

    by_hand = "4" * 32
    cached(cache, by_hand)

    def current(table: str, ids: list[str]) -> dict[str, Stored]:
        asked.append((table, sorted(ids)))
        return {same: stored(ROW), changed: (ROW.rev_n + 1, "0" * 32, stored(ROW)[2]),
                by_hand: stored(ROW._replace(doc='{"name":"by hand"}'))}

    assert cache.revalidate(current) == 3
    assert asked == [("device", [same, changed, gone, by_hand])]  # one query for the table
    clock.now = 8.5  # 8.5 s after it was read, 4.5 s after the check
    assert cache.get("device", same, ACCOUNT) == ROW
    assert cache.get("device", changed, ACCOUNT) is None and cache.get("device", gone, ACCOUNT) is None


def test_a_check_that_overlaps_an_emptying_keeps_nothing_it_read() -> None:
    cache = cached(listening_cache())

    def current(table: str, ids: list[str]) -> dict[str, Stored]:
        cache.listening_changed(False)  # the connection is lost while the check runs
        cache.listening_changed(True)
        cached(cache, "e" * 32)  # read anew after the reconnection
        return {}

    assert cache.revalidate(current) == 0
    assert cache.get("device", "e" * 32, ACCOUNT) == ROW


def test_workers_forked_after_the_stamps_were_made_see_each_others_writes() -> None:
    versions = Versions(slots=16)
    before = versions.stamp(DEVICE)
    cache = cached(listening_cache())
    child = os.fork()
    if child == 0:  # the sibling worker commits a write of the device
        try:
            cache_module._written("device", DEVICE)
        finally:
            os._exit(0)
    _, status = os.waitpid(child, 0)
    assert status == 0
    assert cache.get("device", DEVICE, ACCOUNT) is None  # this process's entry is stale
    assert versions.stamp(DEVICE) == before  # stamps made apart are not shared


# --- a server over PostgreSQL --------------------------------------------------------------------

def listening_server(start_bridge: Any, seconds: float) -> tuple[Any, DocumentCache]:
    """A server whose document cache keeps entries `seconds`, once its listener listens."""
    server = start_bridge(document_cache_seconds=seconds)
    cache = server.runtime.document_cache
    assert cache is not None and wait_until(lambda: cache.listening, DELIVERY)
    return server, cache


def office_device(server: Any) -> tuple[Any, str]:
    account_id, key, _ = make_account()
    api = client_for(server.url, account_id, key)
    created = api.put("devices", {"name": "desk", "sip": {"username": "3001", "password": "secret1"}})
    assert created.status_code == 201, created.text
    return api, created.json()["data"]["id"]


def name_of(api: Any, device_id: str) -> str:
    read = api.get(f"devices/{device_id}")
    assert read.status_code == 200, read.text
    return read.json()["data"]["name"]


@needs_postgresql
def test_a_device_read_twice_is_answered_from_the_cache_then_its_write_read_at_once(start_bridge) -> None:
    server, cache = listening_server(start_bridge, 600)
    api, device_id = office_device(server)
    assert name_of(api, device_id) == "desk" and len(cache) == 1
    # Answered from memory: a change made behind esl-bridge's back (no notification) is not seen...
    with db.database.connection_context():
        DeviceRow.update(doc='{"name":"by hand"}').where(DeviceRow.id == device_id).execute()
    assert name_of(api, device_id) == "desk"
    # ...but a write through the API is, by the very next read, and so is its revision.
    patched = api.patch(f"devices/{device_id}", {"name": "front desk"})
    assert patched.status_code == 200, patched.text
    read = api.get(f"devices/{device_id}")
    assert read.json()["data"]["name"] == "front desk"
    assert read.json()["revision"] == patched.json()["revision"]
    assert api.delete(f"devices/{device_id}").status_code == 200
    assert api.get(f"devices/{device_id}").status_code == 404
    health = api.get("/health").json()["data"]
    assert health["document_cache"] == {"listening": True, "entries": 0}


@needs_postgresql
def test_a_change_made_without_a_notification_shows_within_the_ttl(start_bridge) -> None:
    server, cache = listening_server(start_bridge, 0.5)
    api, device_id = office_device(server)
    assert name_of(api, device_id) == "desk"
    with db.database.connection_context():  # the text only, as an UPDATE by hand may do
        DeviceRow.update(doc='{"name":"by hand"}').where(DeviceRow.id == device_id).execute()
    assert wait_until(lambda: cache.get("device", device_id, api.account_id) is None, DELIVERY)
    assert name_of(api, device_id) == "by hand"


@needs_postgresql
def test_a_write_sent_by_another_process_is_forgotten_when_its_notification_arrives(
        start_bridge, monkeypatch) -> None:
    """As another host's write: only the NOTIFY tells this process (its stamps are not shared,
    and the listener's checks are held back)."""
    server, cache = listening_server(start_bridge, 600)
    monkeypatch.setattr(cache, "revalidate", lambda current: 0)
    api, device_id = office_device(server)
    assert name_of(api, device_id) == "desk"
    with db.database.connection_context(), db.database.atomic():  # delivered when it commits
        DeviceRow.update(doc='{"name":"elsewhere"}').where(DeviceRow.id == device_id).execute()
        db.database.execute_sql("SELECT pg_notify(%s, %s)", (cache_module.CHANNEL, f"device:{device_id}"))
    assert wait_until(lambda: name_of(api, device_id) == "elsewhere", DELIVERY)


@needs_postgresql
def test_a_read_inside_a_transaction_sees_its_own_write_not_the_cache(start_bridge) -> None:
    server, cache = listening_server(start_bridge, TTL_SECONDS)
    account_id, _, _ = make_account()
    with db.database.connection_context():
        account = get_account(account_id)
        device = create_device(account, {"name": "desk", "sip": {"username": "3001", "password": "secret1"}})
        assert docs.read(DeviceRow, device.id, account_id, cache).doc["name"] == "desk"
        assert cache.get("device", device.id, account_id) is not None
        with db.database.atomic():
            update_device(account, device.id, {"name": "renamed"}, merge=True)
            assert docs.read(DeviceRow, device.id, account_id, cache).doc["name"] == "renamed"
        assert docs.read(DeviceRow, device.id, account_id, cache).doc["name"] == "renamed"


@needs_postgresql
def test_a_read_that_raced_a_write_is_not_answered_again(start_bridge, monkeypatch) -> None:
    """The query reads the device, a write commits before the row is stored: with notifications
    held back, only the stamp noted before the query keeps the old row from being answered."""
    server, cache = listening_server(start_bridge, 600)
    monkeypatch.setattr(cache, "forget", lambda payload: 0)  # no notification arrives
    api, device_id = office_device(server)
    other = api.put("devices", {"name": "other"}).json()["data"]["id"]
    assert name_of(api, other) == "other"  # the prepared read exists
    read = docs._READ[DeviceRow]

    class WriteMidRead:
        def tuples(self, ident: str, account_id: str) -> Iterator[tuple[Any, ...]]:
            rows = list(read.tuples(ident, account_id))  # the device before the write
            update_device(get_account(account_id), ident, {"name": "renamed"}, merge=True)
            return iter(rows)

    monkeypatch.setitem(docs._READ, DeviceRow, WriteMidRead())
    assert name_of(api, device_id) == "desk"  # read before the write committed
    monkeypatch.setitem(docs._READ, DeviceRow, read)
    assert name_of(api, device_id) == "renamed"


@needs_postgresql
def test_a_user_is_answered_from_the_cache_until_it_is_written(start_bridge) -> None:
    server, cache = listening_server(start_bridge, 600)
    api, _ = office_device(server)
    created = api.put("users", {"first_name": "Bo", "last_name": "Ng", "username": "bo", "password": "bo-pw-123"})
    assert created.status_code == 201, created.text
    path = f"users/{created.json()['data']['id']}"
    assert api.get(path).json()["data"]["first_name"] == "Bo"
    assert cache.get("user", created.json()["data"]["id"], api.account_id) is not None
    patched = api.patch(path, {"first_name": "Bob"})
    assert patched.status_code == 200, patched.text
    again = api.get(path)
    assert again.json()["data"]["first_name"] == "Bob"
    assert again.json()["revision"] == patched.json()["revision"]


@needs_postgresql
def test_an_unchanged_document_is_checked_not_read_again_when_its_ttl_passes(start_bridge) -> None:
    server, cache = listening_server(start_bridge, 0.5)
    api, device_id = office_device(server)
    assert name_of(api, device_id) == "desk"
    time.sleep(1.5)  # three TTLs: the listener's checks (every 0.25 s) keep the entry
    assert cache.get("device", device_id, api.account_id) is not None
