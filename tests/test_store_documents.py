"""The store without HTTP: conditional writes under a forced race, tokens, merging, listings."""
from __future__ import annotations

import gevent
import pytest
from fixtures_web import rival_commits_in_between

from models import account as accounts
from models import db, pages, schema
from models import device as devices
from models import documents as docs
from models import token as tokens
from models import user as users
from models.errors import Conflict, NotFound, StaleRevision, ValidationFailed
from models.tables import DeviceRow, TokenRow, UserRow

pytestmark = pytest.mark.store


@pytest.fixture
def store(database_url):
    """A connection to the fresh test database and an account `acme` (realm acme.test)."""
    with db.database.connection_context():
        yield accounts.create_account({"name": "acme", "realm": "acme.test"})


def committed_elsewhere(write) -> None:
    """Run `write` in another greenlet, on its own connection, and let it commit."""
    def run():
        with db.database.connection_context():
            write()

    job = gevent.spawn(run)
    job.join()
    assert job.successful(), job.exception


# --- a stale write never overwrites a newer one -------------------------------------------------

def test_stale_update_is_a_conflict(store):
    device = devices.create_device(store, {"name": "one"})
    stale = docs.fetch(DeviceRow, device.id)
    committed_elsewhere(lambda: devices.update_device(store, device.id, {"name": "two"}, merge=True))
    with pytest.raises(Conflict):
        docs.update_document(DeviceRow, stale, {**stale.doc, "name": "three"})
    assert devices.get_device(store.id, device.id).doc["name"] == "two"


def test_stale_delete_is_a_conflict(store):
    device = devices.create_device(store, {"name": "one"})
    stale = docs.fetch(DeviceRow, device.id)
    committed_elsewhere(lambda: devices.update_device(store, device.id, {"name": "two"}, merge=True))
    with pytest.raises(Conflict):
        docs.delete_document(DeviceRow, stale)
    assert devices.get_device(store.id, device.id).doc["name"] == "two"


@pytest.fixture
def race_after_read(monkeypatch):
    """The next update reads its document, then `write` commits on another connection."""
    real = docs.check_if_match
    pending = []

    def check(current, if_match):
        real(current, if_match)
        if pending:
            committed_elsewhere(pending.pop())

    monkeypatch.setattr(docs, "check_if_match", check)
    return pending.append


@rival_commits_in_between
def test_update_inside_its_transaction_loses_the_race(store, race_after_read):
    device = devices.create_device(store, {"name": "one", "hotdesk": {"users": {}}})
    race_after_read(lambda: devices.update_device(store, device.id, {"rival": 1}, merge=True))
    with pytest.raises(Conflict):
        devices.update_device(store, device.id, {"mine": 1}, merge=True)
    doc = devices.get_device(store.id, device.id)
    assert doc.doc.get("rival") == 1 and "mine" not in doc.doc
    assert doc.revision.startswith("2-")


@rival_commits_in_between
def test_user_delete_inside_its_transaction_loses_the_race(store, race_after_read):
    user = users.create_user(store.id, {"first_name": "A", "last_name": "B"})
    device = devices.create_device(store, {"name": "one", "owner_id": user.id,
                                           "hotdesk": {"users": {user.id: {}}}})
    race_after_read(lambda: users.update_user(store.id, user.id, {"first_name": "Rival"}, merge=True))
    with pytest.raises(Conflict):
        users.delete_user(store.id, user.id)
    # Nothing of the delete happened: the device still has its owner and hotdesk user.
    assert users.get_user(store.id, user.id).doc["first_name"] == "Rival"
    assert devices.get_device(store.id, device.id).doc["owner_id"] == user.id
    assert devices.user_device_rows(store.id, user.id)[0]["hotdesked"] is False


@rival_commits_in_between
def test_device_delete_inside_its_transaction_loses_the_race(store, race_after_read):
    user = users.create_user(store.id, {"first_name": "A", "last_name": "B"})
    device = devices.create_device(store, {"name": "one", "sip": {"username": "alice"},
                                           "hotdesk": {"users": {user.id: {}}}})
    race_after_read(lambda: devices.update_device(store, device.id, {"name": "renamed"}, merge=True))
    with pytest.raises(Conflict):
        devices.delete_device(store.id, device.id)
    assert devices.directory_entry("acme.test", "alice") is not None
    assert [r["id"] for r in devices.user_device_rows(store.id, user.id)] == [device.id]


def test_stale_if_match_and_unknown_ids(store):
    device = devices.create_device(store, {"name": "one"})
    with pytest.raises(StaleRevision) as caught:
        devices.update_device(store, device.id, {"name": "x"}, merge=True, if_match={"1-" + "0" * 32})
    assert caught.value.current == device.revision
    devices.update_device(store, device.id, {"name": "x"}, merge=True, if_match={device.revision})
    for ident in ("0" * 32, "nope", device.id.upper()):
        with pytest.raises(NotFound):
            devices.get_device(store.id, ident)
    other = accounts.create_account({"name": "other", "realm": "other.test"})
    with pytest.raises(NotFound):
        devices.get_device(other.id, device.id)


def test_a_failed_validation_writes_nothing(store):
    device = devices.create_device(store, {"name": "one", "mac_address": "001122334455"})
    with pytest.raises(ValidationFailed) as caught:
        devices.update_device(store, device.id, {"name": "", "mac_address": "12"}, merge=True)
    assert set(caught.value.errors) == {"name", "mac_address"}
    assert devices.get_device(store.id, device.id).revision == device.revision
    assert DeviceRow.select().count() == 1


def test_passwords_are_stored_only_as_hashes(store):
    users.create_user(store.id, {"first_name": "A", "last_name": "B", "username": "alice",
                                 "password": "pa55-word-xyz"})
    row = UserRow.get()
    assert "pa55-word-xyz" not in row.doc and '"password"' not in row.doc
    md5, sha1 = users.credentials("alice", "pa55-word-xyz")
    assert (row.md5_creds, row.sha1_creds) == (md5, sha1)


# --- tokens -----------------------------------------------------------------------------------

def test_tokens_expire_when_idle_and_refresh_on_use(store):
    token = tokens.issue_token(store.id, None, "api_auth")
    issued = TokenRow.get_by_id(token).last_used
    assert len(token) >= 22
    assert tokens.identify(token, now=issued + 30).account_id == store.id
    assert TokenRow.get_by_id(token).last_used == issued  # not refreshed within the minute
    assert tokens.identify(token, now=issued + 3000) is not None  # refreshed
    assert TokenRow.get_by_id(token).last_used == issued + 3000
    assert tokens.identify(token, now=issued + 3000 + 3599) is not None
    assert tokens.identify(token, now=issued + 3000 + 3599 + 3601) is None
    assert tokens.identify(token, now=issued + 3000 + 3599) is None  # gone for good


def test_api_key_identifies_the_account_but_is_no_token(store):
    key = accounts.api_key(store)
    identity = tokens.identify_api_key(key)
    assert identity.account_id == store.id and identity.method == "api_key" and identity.admin
    assert tokens.identify(key) is None
    assert tokens.identify_api_key("0" * 64) is None
    assert tokens.identify_api_key("nonsense") is None


def test_purge_expired(store):
    old = tokens.issue_token(store.id, None, "api_auth")
    TokenRow.update(last_used=TokenRow.last_used - 7200).where(TokenRow.token == old).execute()
    fresh = tokens.issue_token(store.id, None, "api_auth")
    assert tokens.purge_expired() == 1
    assert tokens.identify(fresh) is not None and tokens.identify(old) is None


# --- merge and listing helpers ------------------------------------------------------------------

def test_merge_patch():
    base = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]}
    assert docs.merge_patch(base, {"b": {"c": None, "x": 1}, "e": [3], "a": None}) == \
        {"b": {"d": 3, "x": 1}, "e": [3]}
    assert base == {"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]}  # untouched
    assert docs.merge_patch({"a": {"b": 1}}, {"a": 5}) == {"a": 5}


def test_listing_query_arguments():
    query = pages.ListQuery.from_args({"page_size": "7", "start_key": "a" * 32, "filter_sip.username": "x"})
    assert (query.page_size, query.start_key, len(query.filters)) == (7, "a" * 32, 1)
    assert pages.ListQuery.from_args({"paginate": "false"}).paginate is False
    with pytest.raises(ValidationFailed) as caught:
        pages.ListQuery.from_args({"page_size": "0", "start_key": "x", "has_key": "a b"})
    assert set(caught.value.errors) == {"page_size", "start_key", "has_key"}


def test_listing_pages_in_the_store(store):
    ids = sorted(devices.create_device(store, {"name": f"d{i}", "enabled": i % 3 != 0}).id for i in range(9))
    seen, start = [], None
    while True:
        page = devices.list_devices(store.id, pages.ListQuery(page_size=2, start_key=start,
                                                             filters=[lambda d: d["enabled"]]))
        seen += [r["id"] for r in page.rows]
        if page.next_start_key is None:
            break
        start = page.next_start_key
    enabled = {r["id"] for r in devices.list_devices(store.id, pages.ListQuery(paginate=False)).rows if r["enabled"]}
    assert sorted(seen) == sorted(enabled) and len(seen) == 6
    assert set(ids) >= set(seen)


def test_directory_entry_is_case_insensitive_and_gone_after_delete(store):
    device = devices.create_device(store, {"name": "one", "sip": {"username": "Alice", "password": "secret-1"}})
    entry = devices.directory_entry("ACME.test", "ALICE")
    assert entry is not None and entry.device.id == device.id and entry.account.id == store.id
    devices.delete_device(store.id, device.id)
    assert devices.directory_entry("acme.test", "alice") is None


# --- forward numbers stored by an older version --------------------------------------------------

def test_forward_numbers_stored_in_the_old_form_are_rewritten_as_keys(store):
    cell = devices.create_device(store, {"name": "cell", "device_type": "cellphone",
                                         "call_forward": {"enabled": True, "number": "+1 555 000 1111"}})
    assert devices.device_by_forward_number(store.id, "5550001111").id == cell.id
    # as an earlier version kept it: every digit and the +
    DeviceRow.update(forward_number="+15550001111").where(DeviceRow.id == cell.id).execute()
    assert devices.device_by_forward_number(store.id, "15550001111") is None
    assert schema.upgrade_forward_keys() == 1
    assert devices.device_by_forward_number(store.id, "15550001111").id == cell.id
    assert schema.upgrade_forward_keys() == 0  # once is enough


def test_a_document_read_to_answer_with_is_encoded_from_its_stored_text(store):
    """GET answers the stored text with the id appended: exactly what encoding the document
    with its id gives, whatever the document holds."""
    for data in ({"name": "plain"}, {"name": 'é "quoted" \\ back', "nested": {"a": [1, {"b": None}]}},
                 {"name": "x", "emoji": "\U0001f600", "n": 1.5, "flag": False}):
        made = devices.create_device(store, data)
        read = docs.read(DeviceRow, made.id, store.id)
        assert read.public_encoded() == docs.encode(read.public())
        assert docs.decode(read.public_encoded())["id"] == made.id
