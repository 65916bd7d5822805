"""Stored listing rows: every write path keeps a document's `listing` column equal to the row
recomputed from its document, and listings copied from it are byte for byte what encoding the
rows gives (same text, same revision)."""
from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from models import account as accounts
from models import db, hotdesk, pages
from models import device as devices
from models import documents as docs
from models import listing as listing_rows
from models import user as users
from models.tables import AccountRow, DeviceRow, DocumentTable, UserRow

pytestmark = pytest.mark.store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(database_url):
    """A connection to the fresh test database and an account `acme` (realm acme.test)."""
    with db.database.connection_context():
        yield accounts.create_account({"name": "acme", "realm": "acme.test"})


def stale_listings() -> list[str]:
    """Rows whose stored listing differs from the one their document gives."""
    stale = []
    for table in (DeviceRow, UserRow):
        for ident, doc, listing in table.select(table.id, table.doc, table.listing).tuples():
            wanted = docs.encode(table.listing_row(ident, docs.decode(doc)))
            if listing != wanted:
                stale.append(f"{table.__name__} {ident}: {listing} != {wanted}")
    return stale


def listing_of(table: type[DocumentTable], ident: str) -> dict[str, Any]:
    return docs.decode(table.get_by_id(ident).listing)


def test_the_tables_with_listings():
    assert DeviceRow.listing_row is listing_rows.device_row is devices.listing_row
    assert UserRow.listing_row is listing_rows.user_row is users.listing_row
    assert AccountRow.listing_row is None and "listing" not in AccountRow._meta.fields


def test_device_writes_keep_the_listing(store):
    owner = users.create_user(store.id, {"first_name": "Olga", "last_name": "Owner"})
    device = devices.create_device(store, {"name": "desk", "sip": {"username": "alice", "password": "secret-1"},
                                           "mac_address": "AA-BB-CC-DD-EE-FF", "owner_id": owner.id})
    assert listing_of(DeviceRow, device.id) == {
        "id": device.id, "name": "desk", "username": "alice", "mac_address": "aabbccddeeff",
        "owner_id": owner.id, "enabled": True, "device_type": "sip_device"}
    devices.update_device(store, device.id, {"name": "renamed", "enabled": False, "owner_id": None,
                                             "sip": {"username": "bob"}}, merge=True)
    assert listing_of(DeviceRow, device.id)["name"] == "renamed"
    assert "owner_id" not in listing_of(DeviceRow, device.id)  # no null: Kazoo's view rows leave it out
    devices.update_device(store, device.id, {"name": "replaced", "device_type": "softphone"}, merge=False)
    assert listing_of(DeviceRow, device.id) == {
        "id": device.id, "name": "replaced", "mac_address": "", "enabled": True,
        "device_type": "softphone"}
    assert stale_listings() == []


def test_hotdesk_writes_keep_the_listing(store):
    one = users.create_user(store.id, {"first_name": "One", "last_name": "U", "hotdesk": {"id": "1"}})
    two = users.create_user(store.id, {"first_name": "Two", "last_name": "U", "hotdesk": {"id": "2"}})
    first = devices.create_device(store, {"name": "first", "owner_id": one.id})
    second = devices.create_device(store, {"name": "second"})
    hotdesk.login(one, first.id)
    hotdesk.login(one, second.id)  # leaves the first device
    hotdesk.login(two, second.id)
    assert stale_listings() == []
    hotdesk.logout(two, second.id)
    hotdesk.logout(one)
    hotdesk.login(two, first.id)
    hotdesk.logout_all(store.id, first.id)
    assert stale_listings() == []


def test_user_writes_and_the_deletion_cascade_keep_the_listing(store):
    user = users.create_user(store.id, {"first_name": "Ann", "last_name": "Lee", "username": "ann",
                                        "password": "pa55word", "email": "ann@acme.test"})
    assert listing_of(UserRow, user.id) == {"id": user.id, "first_name": "Ann", "last_name": "Lee",
                                            "username": "ann", "email": "ann@acme.test",
                                            "priv_level": "user", "enabled": True}
    users.update_user(store.id, user.id, {"first_name": "Anne", "presence_id": "2001", "email": None},
                      merge=True)
    assert listing_of(UserRow, user.id)["first_name"] == "Anne"
    assert "email" not in listing_of(UserRow, user.id)
    users.update_user(store.id, user.id, {"first_name": "A", "last_name": "L", "username": "ann",
                                          "priv_level": "admin"}, merge=False)
    assert listing_of(UserRow, user.id)["priv_level"] == "admin"
    owned = devices.create_device(store, {"name": "owned", "owner_id": user.id})
    other = users.create_user(store.id, {"first_name": "O", "last_name": "T", "hotdesk": {"id": "7"}})
    shared = devices.create_device(store, {"name": "shared", "owner_id": other.id,
                                           "hotdesk": {"users": {user.id: {}, other.id: {}}}})
    assert stale_listings() == []
    users.delete_user(store.id, user.id)
    assert "owner_id" not in listing_of(DeviceRow, owned.id)
    assert listing_of(DeviceRow, shared.id)["owner_id"] == other.id
    assert stale_listings() == []


WRITES_OF_A_DOCUMENT = re.compile(
    r"\.(update|insert|create|insert_many|replace|get_or_create)\([^)]*\b(doc|listing)\s*=")


def test_only_the_document_helpers_write_documents():
    """Every write of `doc` (and so of `listing`) goes through `documents.document_columns`."""
    offenders = []
    for path in sorted([*(ROOT / "models").glob("*.py"), *(ROOT / "web").glob("*.py")]):
        if path.name == "documents.py":
            continue
        text = path.read_text()
        offenders += [f"{path.name}: {m.group(0)}" for m in WRITES_OF_A_DOCUMENT.finditer(text)]
    assert offenders == []
    source = (ROOT / "models" / "documents.py").read_text()
    # insert_document, update_document and rewrite_listings
    assert source.count("document_columns(table, ") == 3


# --- listings copied from the stored rows are what encoding the rows gives -------------------

AWKWARD_NAMES = ['Zoë "desk" </script>', "☎ 東京 \\ back", "tab\there", "emoji 😀", "a&b=c%20"]


def encoded_rows(rows: list[dict[str, Any]]) -> str:
    """What the listing was before rows were stored encoded: the rows encoded together."""
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False)


def revision_of(encoded: str) -> str:
    """A listing's revision: the md5 of its encoded data (SPEC §2)."""
    return hashlib.md5(encoded.encode()).hexdigest()


def test_a_page_is_its_rows_encoded(store):
    for i, name in enumerate(AWKWARD_NAMES):
        devices.create_device(store, {"name": name, "enabled": i % 2 == 0,
                                      "sip": {"username": f"u{i}", "password": "secret-1"}})
    for query in (pages.ListQuery(), pages.ListQuery(page_size=2),
                  pages.ListQuery(paginate=False), pages.ListQuery(filters=[lambda d: d["enabled"]])):
        page = devices.list_devices(store.id, query)
        assert page.encoded() == encoded_rows(page.rows)
    rows = devices.list_devices(store.id, pages.ListQuery()).rows
    assert sorted(r["name"] for r in rows) == sorted(AWKWARD_NAMES)


def _expected_listing(api, collection: str, builder) -> str:
    """The listing text built the old way: each document read by id, its row built, encoded."""
    ids = sorted(row["id"] for row in api.get(collection, params={"paginate": "false"}).json()["data"])
    docs_by_id = {}
    for ident in ids:
        doc = api.get(f"{collection}/{ident}").json()["data"]
        doc.pop("id")
        docs_by_id[ident] = doc
    return encoded_rows([builder(ident, docs_by_id[ident]) for ident in ids])


def test_listing_text_and_revision_over_http(api):
    owner = api.create_user(first_name="Ünïcode", last_name='Q"uote', email="u@acme.test",
                            presence_id="2001")
    for i, name in enumerate(AWKWARD_NAMES):
        extra: dict[str, Any] = {"owner_id": owner["id"]} if i % 2 else {"mac_address": f"00:04:f2:00:00:0{i}"}
        api.create_device(name=name, device_type="softphone" if i == 3 else "sip_device",
                          sip={"username": f"user{i}", "password": "secret-1"}, **extra)
    for collection, builder in (("devices", listing_rows.device_row),
                                ("users", listing_rows.user_row)):
        wanted = _expected_listing(api, collection, builder)
        for params, version in (({}, "v2"), ({"paginate": "false"}, "v2"), ({}, "v1"),
                                ({"has_key": "first_name" if collection == "users" else "name"}, "v2")):
            response = api.get(collection, params=params, version=version)
            assert response.status_code == 200, response.text
            assert f',"data":{wanted}'.encode() in response.content
            assert response.json()["revision"] == revision_of(wanted)
            assert response.headers["ETag"] == f'"{revision_of(wanted)}"'


def test_user_devices_rows_from_the_stored_listing(api):
    user = api.create_user(hotdesk={"id": "42"})
    owned = api.create_device(name='Ownéd ,"username":"x"', owner_id=user["id"],
                              mac_address="00:04:f2:aa:bb:cc", sip={"username": "own"})
    hot = api.create_device(name="hot", hotdesk={"users": {user["id"]: {}}})
    response = api.get(f"users/{user['id']}/devices")
    rows = response.json()["data"]
    expected = {owned["id"]: {"id": owned["id"], "name": 'Ownéd ,"username":"x"', "mac_address": "0004f2aabbcc",
                              "owner_id": user["id"], "enabled": True, "device_type": "sip_device",
                              "hotdesked": False},
                hot["id"]: {"id": hot["id"], "name": "hot", "mac_address": "",
                            "enabled": True, "device_type": "sip_device", "hotdesked": True}}
    assert rows == sorted(expected.values(), key=lambda r: r["id"])
    assert [list(r) for r in rows] == [list(expected[r["id"]]) for r in rows]  # key order too
    wanted = encoded_rows(sorted(expected.values(), key=lambda r: r["id"]))
    assert f',"data":{wanted}}}'.encode() in response.content
    assert response.json()["revision"] == revision_of(wanted)


def test_envelopes_are_their_dict_encoded(api):
    """The envelope text written out by hand is exactly what encoding its dict gives."""
    for i in range(3):
        api.create_device(name=f"Zoë {i} \"q\"", sip={"username": f"enc{i}", "password": "secret-1"})
    first = api.get("devices", params={"page_size": 1}).json()
    responses = [api.get("devices", params={"page_size": 1}),
                 api.get("devices", params={"page_size": 1, "start_key": first["next_start_key"]}),
                 api.get("devices", version="v1"), api.get("users"),
                 api.get(f"devices/{first['data'][0]['id']}"),
                 api.get(f"devices/{'0' * 32}"),
                 api.get("devices", headers={"X-Request-ID": "my.request-1"})]
    for response in responses:
        parsed = json.loads(response.content)
        assert response.content == json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode()
        assert response.headers["X-Request-ID"] == parsed["request_id"]
    assert list(json.loads(responses[1].content)) == [
        "auth_token", "status", "request_id", "revision", "data", "page_size", "start_key",
        "next_start_key"]
    assert json.loads(responses[-1].content)["request_id"] == "my.request-1"


def test_user_device_rows_cut_out_of_the_listing_are_the_rows_encoded():
    """The `users/{U}/devices` row cut out of the stored text is the row built and encoded."""
    rng = random.Random(5)
    pieces = ['"', "\\", ',"username":', ',"mac_address":', "}", "{", "é", "☎", "\n", "\x01",
              "a", " ", ':', "null", "😀"]
    for _ in range(3000):
        doc: dict[str, Any] = {"name": "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 8)))}
        if rng.random() < 0.7:
            doc["sip"] = {"username": rng.choice(["alice", "b.o-b+1", ',"mac_address":'])}
        if rng.random() < 0.5:
            doc["mac_address"] = "0004f2aabbcc"
        if rng.random() < 0.5:
            doc["owner_id"] = "c" * 32
        if rng.random() < 0.3:
            doc["enabled"] = False
        if rng.random() < 0.3:
            doc["device_type"] = "".join(rng.choice(pieces) for _ in range(3)) or "fax"
        ident = docs.new_id()
        listing = docs.encode(listing_rows.device_row(ident, doc))
        for hotdesked in (False, True):
            row = listing_rows.device_row(ident, doc)
            row.pop("username", None)
            row["hotdesked"] = hotdesked
            assert devices._user_device_text(listing, hotdesked) == docs.encode(row), doc
    odd = docs.encode({"id": "d" * 32, "name": "x", "username": None, "mac_address": ""})[:-1] + ',"x":1}'
    assert docs.decode(devices._user_device_text(odd, True))["hotdesked"] is True
