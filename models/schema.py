"""The schema: the tables and indexes created when missing, and stored data brought up to its
current form, when esl-bridge connects to its database."""
from __future__ import annotations

import logging

import peewee

from models.db import database, open_database, redacted
from models.device import forward_key
from models.tables import ALL_TABLES, DeviceRow, UserRow

log = logging.getLogger(__name__)

# SQLite: a listing page is read from an index holding the listing rows in (account, id)
# order, a few index pages per page of rows, instead of one table page per row (rows lie in
# insertion order). PostgreSQL keeps the plain (account_id, id) index: its btree keys are
# limited to ~2.7 kB, which a user's listing row may exceed.
LISTING_INDEXES = ((DeviceRow, "device_account_id_id_listing"), (UserRow, "user_account_id_id_listing"))


def connect(url: str) -> peewee.Database:
    """Point the models at the database of `url`, create what is missing and upgrade the data."""
    db = open_database(url)
    database.initialize(db)
    with db.connection_context():
        create_tables()
        upgraded = upgrade_forward_keys()
    if upgraded:
        log.info("rewrote %d call-forward numbers as match keys", upgraded)
    log.info("database ready: %s", redacted(url))
    return db


def create_tables() -> None:
    """Create every table and index that does not exist yet."""
    database.create_tables(ALL_TABLES, safe=True)
    if isinstance(database.obj, peewee.SqliteDatabase):
        for table, name in LISTING_INDEXES:
            database.execute_sql(
                f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table._meta.table_name}" '
                '("account_id", "id", "listing")')


def drop_tables() -> None:
    """Drop every table (tests use it to start from nothing)."""
    database.drop_tables(ALL_TABLES, safe=True)


def upgrade_forward_keys() -> int:
    """Rewrite stored forward numbers kept in an older form (``+15550001111``, before
    ``forward_key``) as keys; returns how many changed. Cheap when there is nothing to do."""
    changed = 0
    with database.atomic():
        query = DeviceRow.select(DeviceRow.id, DeviceRow.forward_number).where(
            DeviceRow.forward_number.is_null(False))
        for ident, stored in query.tuples():
            key = forward_key(stored) or None
            if key != stored:
                DeviceRow.update(forward_number=key).where(DeviceRow.id == ident).execute()
                changed += 1
    return changed
