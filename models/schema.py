"""The schema: the tables and indexes created when missing, and a database made by an older
esl-bridge brought up to the current form, when esl-bridge connects to its database.

Each step is idempotent and cheap when there is nothing to do, on SQLite and PostgreSQL alike:

1. columns a table gained are added (always nullable, so existing rows stay valid);
2. indexes that no longer exist in the tables' definitions are dropped (`OBSOLETE_INDEXES`);
3. missing tables and indexes are created;
4. values that new columns derive from the documents are filled in (`upgrade_data`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import peewee
from playhouse.migrate import SchemaMigrator

from models import documents as docs
from models.account import name_key
from models.db import database, open_database, redacted
from models.device import forward_key
from models.tables import ALL_TABLES, AccountRow, DeviceRow, TokenRow, UserRow
from models.token_cache import EVERYTHING, notify

log = logging.getLogger(__name__)

#: (table, index): indexes older versions made and the current tables no longer want.
OBSOLETE_INDEXES = (
    # sip.ip was unique across accounts, which told one tenant another's addresses; it is
    # unique within an account now (`device_account_id_sip_ip`).
    ("device", "device_sip_ip"),
)

# SQLite: a listing page is read from an index holding the listing rows in (account, id)
# order, a few index pages per page of rows, instead of one table page per row (rows lie in
# insertion order). PostgreSQL keeps the plain (account_id, id) index: its btree keys are
# limited to ~2.7 kB, which a user's listing row may exceed.
LISTING_INDEXES = ((DeviceRow, "device_account_id_id_listing"), (UserRow, "user_account_id_id_listing"))


#: PostgreSQL advisory lock held while one process upgrades the schema ("esl-brdg").
UPGRADE_LOCK = 0x65736C2D62726467


def connect(url: str) -> peewee.Database:
    """Point the models at the database of `url`, create what is missing and upgrade the data."""
    db = open_database(url)
    database.initialize(db)
    with db.connection_context(), _one_upgrade_at_a_time():
        upgrade()
    log.info("database ready: %s", redacted(url))
    return db


@contextmanager
def _one_upgrade_at_a_time() -> Iterator[None]:
    """PostgreSQL: hosts starting together on an empty database take turns (two concurrent
    `CREATE TABLE IF NOT EXISTS` of one table fail in PostgreSQL); the next finds nothing to do.
    SQLite's own write lock already serialises them."""
    if not isinstance(database.obj, peewee.PostgresqlDatabase):
        yield
        return
    database.execute_sql("SELECT pg_advisory_lock(%s)", (UPGRADE_LOCK,))
    try:
        yield
    finally:
        database.execute_sql("SELECT pg_advisory_unlock(%s)", (UPGRADE_LOCK,))


def upgrade() -> None:
    """Bring the tables and the data to the current form (inside the caller's connection)."""
    with database.atomic():
        added = _add_missing_columns()
        widened = _widen_text_columns()
        dropped = _drop_obsolete_indexes()
    create_tables()
    for name in added:
        log.info("added column %s", name)
    for name in widened:
        log.info("widened column %s", name)
    for name in dropped:
        log.info("dropped index %s", name)
    upgrade_data()


def _add_missing_columns() -> list[str]:
    migrator = SchemaMigrator.from_database(database)
    tables = set(database.get_tables())
    added = []
    for model in ALL_TABLES:
        table = model._meta.table_name
        if table not in tables:
            continue  # created whole by create_tables
        present = {column.name for column in database.get_columns(table)}
        for field in model._meta.sorted_fields:
            if field.column_name not in present:
                if not field.null:
                    raise RuntimeError(f"cannot add the non-null column {table}.{field.column_name}")
                migrator.add_column(table, field.column_name, field).run()
                added.append(f"{table}.{field.column_name}")
    return added


def _widen_text_columns() -> list[str]:
    """PostgreSQL: make a VARCHAR column as wide as its field says now (SQLite ignores widths)."""
    if not isinstance(database.obj, peewee.PostgresqlDatabase):
        return []
    widened = []
    for model in ALL_TABLES:
        table = model._meta.table_name
        widths = dict(database.execute_sql(
            "SELECT column_name, character_maximum_length FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s "
            "AND data_type = 'character varying'", (table,)).fetchall())
        for field in model._meta.sorted_fields:
            width = widths.get(field.column_name)
            if isinstance(field, peewee.CharField) and width and width < field.max_length:
                # Widening a VARCHAR rewrites nothing in PostgreSQL: only the catalogue changes.
                database.execute_sql(f'ALTER TABLE "{table}" ALTER COLUMN "{field.column_name}" '
                                     f"TYPE VARCHAR({int(field.max_length)})")
                widened.append(f"{table}.{field.column_name}")
    return widened


def _drop_obsolete_indexes() -> list[str]:
    migrator = SchemaMigrator.from_database(database)
    tables = set(database.get_tables())
    dropped = []
    for table, index in OBSOLETE_INDEXES:
        if table in tables and index in {found.name for found in database.get_indexes(table)}:
            migrator.drop_index(table, index).run()
            dropped.append(index)
    return dropped


def upgrade_data() -> None:
    """Fill in what new columns derive from the documents, each kind in one transaction."""
    fills: list[tuple[str, Callable[[], int]]] = [
        ("call-forward numbers rewritten as match keys", upgrade_forward_keys),
        ("account name keys", fill_account_name_keys),
        ("token privilege levels", fill_token_priv_levels),
        ("device listing rows rewritten without null values", upgrade_listing_rows),
    ]
    for what, fill in fills:
        with database.atomic():
            count = fill()
        if count:
            log.info("filled in %d %s", count, what)


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


def fill_account_name_keys() -> int:
    """Write `name_key` where an older version left none; returns how many."""
    rows = AccountRow.select(AccountRow.id, AccountRow.doc).where(AccountRow.name_key.is_null())
    filled = 0
    for ident, doc in rows.tuples():
        AccountRow.update(name_key=name_key(docs.decode(doc).get("name"))).where(
            AccountRow.id == ident).execute()
        filled += 1
    return filled


def fill_token_priv_levels() -> int:
    """Give user tokens issued by an older version their user's `priv_level`; returns how many."""
    users = TokenRow.select(TokenRow.user_id).where(
        TokenRow.user_id.is_null(False) & TokenRow.priv_level.is_null()).distinct()
    filled = 0
    for (user_id,) in users.tuples():
        found = UserRow.select(UserRow.doc).where(UserRow.id == user_id).first()
        level = docs.decode(found.doc).get("priv_level", "user") if found else "user"
        filled += TokenRow.update(priv_level=level).where(
            (TokenRow.user_id == user_id) & TokenRow.priv_level.is_null()).execute()
    if filled:
        notify(EVERYTHING)  # a running process may have read them without their level
    return filled


def upgrade_listing_rows() -> int:
    """Rewrite stored listing rows that still carry `null`s (written before rows left keys
    without a value out); returns how many. A scan of the listing text."""
    return docs.rewrite_listings(DeviceRow, DeviceRow.listing.contains(":null"))
