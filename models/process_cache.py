"""What the caches a process keeps of PostgreSQL lookups share (`models.token_cache`,
`models.document_cache`): bounded entries, a TTL clock, and the two conditions under which a
lookup may store what it read: the listener is connected (`listening`), and the cache was not
emptied since the lookup began (`generation`)."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar, Generic, TypeVar

K = TypeVar("K")
E = TypeVar("E")


class ProcessCache(Generic[K, E]):
    """Entries `E` by key `K`, at most `max_entries`, answering for `ttl` seconds at most."""

    #: The PostgreSQL notification channel that keeps the cache right (`models.cache_listener`).
    channel: ClassVar[str]

    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[K, E] = {}
        #: Bumped whenever the cache is emptied (and by whatever else a subclass says).
        self.generation = 0
        #: True while a listener is connected and listening on `channel`.
        self.listening = False

    def __len__(self) -> int:
        return len(self._entries)

    def _may_store(self, generation: int) -> bool:
        """Whether a lookup that began at `generation` may store what it read."""
        return self.listening and generation == self.generation

    def _keep(self, key: K, entry: E) -> None:
        entries = self._entries
        if key not in entries and len(entries) >= self.max_entries:
            del entries[next(iter(entries))]  # the first stored of those left
        entries[key] = entry

    def forget(self, payload: str) -> int:
        """Drop what a notification on `channel` names; returns how many entries went."""
        raise NotImplementedError

    def _empty(self) -> int:
        """Forget everything, and every lookup in flight; returns how many entries went."""
        self.generation += 1
        gone = len(self._entries)
        self._entries.clear()
        return gone

    def listening_changed(self, listening: bool) -> None:
        """The listener connected (its LISTEN done) or lost its connection: start empty."""
        self.listening = listening
        self._empty()
