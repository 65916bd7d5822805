"""A database made by an older esl-bridge keeps working (`models.schema`): missing columns,
tables and indexes are added, the global SIP IP index goes, and new columns are filled in from
the documents, on SQLite and PostgreSQL alike."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import peewee
import pytest
import requests
from fixtures_web import client_for
from playhouse.migrate import SchemaMigrator

from models import account as accounts
from models import db
from models import device as devices
from models import user as users
from models.schema import drop_tables, upgrade
from models.tables import ALL_TABLES, AccountRow, IdempotencyRow, TokenRow
from models.token import issue_token

pytestmark = pytest.mark.store

ROOT = Path(__file__).resolve().parent.parent


def _columns(table: str) -> set[str]:
    return {column.name for column in db.database.get_columns(table)}


def _indexes(table: str) -> set[str]:
    return {index.name for index in db.database.get_indexes(table)}


def _make_it_old() -> None:
    """The tables as the version before account name keys, token privilege levels, idempotency
    keys, per-account SIP IPs and room for lower-cased names left them (their values are lost
    with the columns)."""
    migrator = SchemaMigrator.from_database(db.database)
    db.database.drop_tables([IdempotencyRow])
    for table, index in (("account", "account_name_key"), ("device", "device_account_id_sip_ip")):
        migrator.drop_index(table, index).run()
    migrator.drop_column("account", "name_key").run()
    migrator.drop_column("auth_token", "priv_level").run()
    migrator.add_index("device", ("sip_ip",), True).run()
    if isinstance(db.database.obj, peewee.PostgresqlDatabase):  # SQLite keeps no widths
        db.database.execute_sql('ALTER TABLE "account" ALTER COLUMN "name_lc" TYPE VARCHAR(128)')
        db.database.execute_sql('ALTER TABLE "user" ALTER COLUMN "username_lc" TYPE VARCHAR(256)')


@pytest.fixture
def old_database(database_url: str) -> dict:
    """An old database with an account named "Acme Corp", an admin and a user with live tokens
    and an IP-authenticated device."""
    with db.database.connection_context():
        account = accounts.create_account({"name": "Acme Corp", "realm": "acme.test"})
        other = accounts.create_account({"name": "Other", "realm": "other.test"})
        admin = users.create_user(account.id, {"first_name": "A", "last_name": "D", "username": "root",
                                               "password": "pa55-word", "priv_level": "admin"})
        staff = users.create_user(account.id, {"first_name": "S", "last_name": "T", "username": "bob",
                                               "password": "pa55-word"})
        tokens = {"admin": issue_token(account.id, admin.id, "user_auth", "admin"),
                  "staff": issue_token(account.id, staff.id, "user_auth", "user")}
        devices.create_device(account, {"name": "ata", "sip": {"method": "ip", "ip": "192.0.2.10"}})
        _make_it_old()
        assert "name_key" not in _columns("account") and "priv_level" not in _columns("auth_token")
        assert "device_sip_ip" in _indexes("device")
        return {"account": account.id, "other": other.id, "key": accounts.api_key(other), **tokens}


def test_an_old_database_is_brought_up_to_date_at_start(old_database, start_bridge):
    bridge = start_bridge()  # connects the database: the upgrade runs
    with db.database.connection_context():
        assert "name_key" in _columns("account") and "priv_level" in _columns("auth_token")
        assert db.database.table_exists("idempotency_key")
        assert "device_sip_ip" not in _indexes("device")
        assert "device_account_id_sip_ip" in _indexes("device")
        assert AccountRow.get_by_id(old_database["account"]).name_key == "acmecorp"
        assert {row.priv_level for row in TokenRow.select()} == {"admin", "user"}
    base = f"{bridge.url}/v2/accounts/{old_database['account']}"  # type: ignore[attr-defined]
    # tokens issued before the upgrade keep their user's rights
    admin = requests.get(f"{base}/users", headers={"X-Auth-Token": old_database["admin"]}, timeout=10)
    assert admin.status_code == 200, admin.text
    staff = requests.get(f"{base}/users", headers={"X-Auth-Token": old_database["staff"]}, timeout=10)
    assert staff.status_code == 403
    # the stored name is found as Kazoo normalises it
    creds = hashlib.md5(b"bob:pa55-word").hexdigest()
    login = requests.put(f"{bridge.url}/v2/user_auth", timeout=10,  # type: ignore[attr-defined]
                         json={"data": {"credentials": creds, "account_name": "ACME corp"}})
    assert login.status_code == 201, login.text
    # another account may use the address the first one's device has
    other = client_for(bridge.url, old_database["other"], old_database["key"])  # type: ignore[attr-defined]
    assert other.put("devices", {"name": "ata", "sip": {"method": "ip", "ip": "192.0.2.10"}}).status_code == 201
    # a name or username that lower-cases longer than it is ("İ" becomes two characters) fits
    long_name = other.put(f"/v2/accounts/{old_database['other']}", {"name": "İ" * 128, "realm": "i.other.test"})
    assert long_name.status_code == 201, long_name.text
    long_user = other.put("users", {"first_name": "I", "last_name": "I", "username": "İ" * 256,
                                    "password": "pa55-word"})
    assert long_user.status_code == 201, long_user.text
    # and creates take an Idempotency-Key
    created = other.put("devices", {"name": "desk"}, headers={"Idempotency-Key": "k"})
    again = other.put("devices", {"name": "desk"}, headers={"Idempotency-Key": "k"})
    assert created.json()["data"]["id"] == again.json()["data"]["id"]


def test_the_upgrade_is_idempotent(old_database):
    with db.database.connection_context():
        upgrade()
        before = (_columns("account"), _indexes("device"), [r.name_key for r in AccountRow.select()])
        upgrade()
        assert (_columns("account"), _indexes("device"), [r.name_key for r in AccountRow.select()]) == before


def test_processes_starting_together_on_an_empty_database_all_start(database_url: str) -> None:
    """Several hosts (or `esl-bridge init` beside `serve`) at the same moment: on PostgreSQL two
    concurrent creations of one table fail, so they take turns; every one ends ready."""
    with db.database.connection_context():
        drop_tables()
    code = f"from models import schema; schema.connect({database_url!r})"
    starting = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True)
                for _ in range(5)]
    for process in starting:
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err[-2000:]
    with db.database.connection_context():
        assert all(db.database.table_exists(table._meta.table_name) for table in ALL_TABLES)
