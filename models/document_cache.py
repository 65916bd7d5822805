"""What a process remembers of the documents it read to answer with (PostgreSQL), and how a
write in any process makes every process forget them.

A `GET` of a device or a user is otherwise one query; on PostgreSQL that query costs the server
and the worker more than the rest of the request, and with several workers on few cores it is
what keeps a second worker from doubling the throughput. So `models.documents.read` answers from
a `DocumentCache` when it can, and two mechanisms keep every answer as fresh as a query's:

- **The workers of one `esl-bridge serve`** share `Versions`: one 64-bit stamp per slot of
  document ids, in memory the master maps before it forks. Every write of a document puts a
  new stamp in the document's slot right after its transaction commits, before the reply
  leaves; an entry is used only while its slot still holds the stamp read *before* the query
  that filled it. So once a write has been answered, no worker of that master can answer with
  what it replaced, and a read that raced the write cannot keep the old text either.
- **Every other process** (other hosts, another `esl-bridge serve`, the command line) hears of
  the write from PostgreSQL: the write's transaction sends `NOTIFY` on `CHANNEL` naming the
  document, and each process's listener (`models.cache_listener`) changes the slot's stamp
  when it arrives, a few milliseconds after the commit. Until then, a read there may still get
  the previous revision, as Kazoo's own document cache does until its change notice arrives
  over AMQP.

Besides, the cache answers only while its listener is connected (emptied when it is lost or
reconnects), outside transactions (a write reads the row itself), and for `ttl` seconds at most
per entry since it was read or last checked: the listener checks every entry's revision in one
query every `ttl / 2` (`revalidate`), which bounds what a write that sent no notification (an
operator's `UPDATE` in psql, an older esl-bridge) can cost, without re-reading each document.
Missing documents are never remembered. Only the tables that `read` serves from it send notifications
(`DocumentTable.cached_reads`: devices and users). SQLite keeps no cache: its reads are
in-process and cheap.
"""
from __future__ import annotations

import hashlib
import logging
import mmap
import os
import random
import time
import weakref
import zlib
from collections.abc import Callable
from typing import NamedTuple

from models.db import database, is_postgresql
from models.process_cache import ProcessCache

log = logging.getLogger(__name__)

#: The PostgreSQL notification channel of document writes; payload `<table>:<id>`, or `*`.
CHANNEL = "esl_bridge_documents"
EVERYTHING = "*"
TTL_SECONDS = 5.0
MAX_ENTRIES = 20_000
#: Slots of `Versions` (a power of two): 512 kB of stamps.
SLOTS = 1 << 16


class Versions:
    """One stamp per slot of document ids, in anonymous shared memory: processes forked after it
    was made see each other's stamps. A stamp is a random 64-bit value, so that two writers
    never leave the same stamp behind. Were a read ever to see half of a new stamp and half of
    the old, the mix would still differ from the stamp an entry holds: the entry goes, as it
    should."""

    def __init__(self, slots: int = SLOTS):
        self._memory = mmap.mmap(-1, slots * 8)  # MAP_SHARED | MAP_ANONYMOUS
        self._stamps = memoryview(self._memory).cast("Q")
        self._mask = slots - 1
        self._random = random.Random()
        self._pid = os.getpid()

    def _slot(self, ident: str) -> int:
        return zlib.crc32(ident.encode()) & self._mask

    def stamp(self, ident: str) -> int:
        """The stamp of `ident`'s slot now."""
        return self._stamps[self._slot(ident)]

    def bump(self, ident: str) -> None:
        """A new stamp in `ident`'s slot: what every process remembers of it there is stale."""
        if self._pid != os.getpid():  # a forked child: its own sequence of stamps
            self._random, self._pid = random.Random(), os.getpid()
        self._stamps[self._slot(ident)] = self._random.getrandbits(64)


#: This process's stamps; `share_between_processes` replaces them in a master before it forks.
_versions = Versions()


def share_between_processes() -> None:
    """Called by a master before it forks workers: they will all see each other's writes through
    the same stamps (the ones made at import are shared as well, but only by children forked
    after them; this makes the moment explicit)."""
    global _versions
    _versions = Versions()


class Row(NamedTuple):
    """What `models.documents.read` reads of a document: its stored text and revision."""

    doc: str
    rev_n: int
    rev_hash: str


#: What `revalidate` compares: the revision and the MD5 (hex) of the stored text.
Stored = tuple[int, str, str]


def stored(row: Row) -> Stored:
    """What `revalidate` compares of a row (PostgreSQL's `md5(doc)` gives the same digest)."""
    return row.rev_n, row.rev_hash, hashlib.md5(row.doc.encode()).hexdigest()


class Ticket(NamedTuple):
    """What a lookup notes before its query, so that `store` can refuse a row it raced."""

    stamp: int
    generation: int


class _Entry(NamedTuple):
    account_id: str
    row: Row
    stamp: int
    stored: float


class DocumentCache(ProcessCache[tuple[str, str], _Entry]):
    """Rows by (table, document id) for one process; see the module's docstring for when it
    answers. `generation` changes only when the cache is emptied."""

    channel = CHANNEL

    def __init__(self, ttl: float = TTL_SECONDS, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(ttl, max_entries, clock)
        _caches.add(self)

    def get(self, table: str, ident: str, account_id: str) -> Row | None:
        """The document's row, if this process may answer with it without a query."""
        entry = self._entries.get((table, ident))
        if entry is None or entry.account_id != account_id:
            return None
        if entry.stamp != _versions.stamp(ident) or self._clock() - entry.stored > self.ttl:
            self._entries.pop((table, ident), None)
            return None
        return entry.row

    def ticket(self, ident: str) -> Ticket:
        """Noted before the query whose row `store` may keep."""
        return Ticket(_versions.stamp(ident), self.generation)

    def store(self, table: str, ident: str, account_id: str, row: Row, ticket: Ticket) -> bool:
        """Remember `row`, read after `ticket` was noted, unless the listener is off or the cache
        was emptied since; whether it was stored. (A write since then changed the slot's stamp:
        the entry is stored, and never used.)"""
        if not self._may_store(ticket.generation):
            return False
        self._keep((table, ident), _Entry(account_id, row, ticket.stamp, self._clock()))
        return True

    def revalidate(self, current: Callable[[str, list[str]], dict[str, Stored]]) -> int:
        """Check every entry against the database in one query per table (`current(table, ids)`:
        what is stored of those of `ids` that exist, as `stored`): an entry whose revision or
        text changed (an `UPDATE` by hand may leave the revision alone), or whose document is
        gone, is dropped; the others may answer for another `ttl` from when the check began.
        Returns how many were dropped. (The listener runs it every `ttl / 2`, so that entries
        are checked, not re-read one request at a time, and a change made without a
        notification is still seen within `ttl`.)"""
        began, generation = self._clock(), self.generation
        ids: dict[str, list[str]] = {}
        for table, ident in list(self._entries):
            ids.setdefault(table, []).append(ident)
        found = {table: current(table, idents) for table, idents in ids.items()}
        if generation != self.generation:
            return 0  # emptied meanwhile: nothing checked is left
        dropped = 0
        for table, revisions in found.items():
            for ident in ids[table]:
                key = (table, ident)
                entry = self._entries.get(key)
                if entry is None:
                    continue
                if revisions.get(ident) != stored(entry.row):
                    del self._entries[key]  # changed or gone (or read anew since: read it again)
                    dropped += 1
                elif entry.stored < began:
                    self._entries[key] = entry._replace(stored=began)
        return dropped

    def forget(self, payload: str) -> int:
        """Drop what a notification names (`<table>:<id>` or everything); how many went. A
        document's new stamp reaches every worker of this master, and a read of it in flight
        here cannot keep what it read either."""
        table, _, ident = payload.partition(":")
        if payload == EVERYTHING or not ident:
            if payload != EVERYTHING:
                log.warning("document cache: unknown notification %r: forgetting everything", payload)
            return self._empty()
        _versions.bump(ident)
        return 0 if self._entries.pop((table, ident), None) is None else 1


# The caches of this process (one per app; tests run several).
_caches: weakref.WeakSet[DocumentCache] = weakref.WeakSet()


def _written(table: str, ident: str) -> None:
    _versions.bump(ident)
    for cache in list(_caches):
        cache._entries.pop((table, ident), None)


def notify(table: str, ident: str) -> None:
    """Document `ident` of `table` is being written: when the current transaction commits, the
    workers of this master stop answering with what they remember of it (at once), and every
    other process too (as its notification arrives). SQLite: nothing to do."""
    if not is_postgresql(database.obj):
        return
    database.execute_sql("SELECT pg_notify(%s, %s)", (CHANNEL, f"{table}:{ident}"))
    database.after_commit(lambda: _written(table, ident))

