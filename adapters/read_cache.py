"""A short-lived memory of what a timesheet tool answered to reads that repeat across
provisionings: its users by e-mail, its tasks by name. One per tool adapter, shared by the
worker's lanes (threads).

What may be kept, and why it is safe (the tool adapters hold to this):

- Only positive answers, each for ``ttl`` seconds at most: "user x@y is id 7", "task
  Design is id 9". A name or e-mail the tool did not know is never remembered; the next
  call reads again, so a user or task added meanwhile is found at once.
- A kept id the tool then refuses (a 404, or a 422 whose fresh reads show the id is stale:
  a user deactivated, a task archived or deleted) is dropped, and the read is made again.
- Client look-ups by name are never kept. ``handlers.clients`` asks for them only when a
  CRM client has no mapping yet, under the client lock, to decide between adopting a tool
  client and creating one: a remembered "no such client" would make a second client, and a
  remembered positive would save nothing, since the mapping stored right after serves every
  later provisioning of that client without a call.
- Project look-ups (``find_project``, the assignments of a project) are never kept either:
  they decide whether something was already made, which only a fresh read can tell.

Bounded: past ``max_entries`` the least recently used entry goes first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from schemas.errors import FailureCode, Transient

DEFAULT_TTL = 300.0  # seconds; PROVISIONER_TOOL_CACHE_TTL
DEFAULT_MAX_ENTRIES = 10_000


class StaleRead(Transient):
    """An id the tool gave us earlier is no longer good (a user deactivated since): the
    message is tried again, and that attempt reads afresh. Only ever raised once the stale
    entry has been dropped."""

    def __init__(self, message: str):
        super().__init__(FailureCode.VENDOR_REJECTED, message)


class ReadCache:
    def __init__(
        self,
        ttl: float = DEFAULT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        if ttl < 0 or max_entries < 1:
            raise ValueError("a read cache needs ttl >= 0 and max_entries >= 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        """The value kept under ``key`` if younger than the TTL, else None."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            expires, value = found
            if self._clock() >= expires:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        if value is None or self.ttl == 0:
            return  # None means "not kept": a negative answer is never remembered
        with self._lock:
            self._entries[key] = (self._clock() + self.ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def drop(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def drop_where(self, matches: Callable[[Hashable, Any], bool]) -> int:
        """Drops every entry for which ``matches(key, value)``; returns how many."""
        with self._lock:
            gone = [k for k, (_, v) in self._entries.items() if matches(k, v)]
            for key in gone:
                del self._entries[key]
            return len(gone)

    def went_stale(self, kind: str, value: Any, fresh: Callable[[], Iterable[Any]]) -> bool:
        """Whether ``value`` came from a kept read of ``kind`` and a fresh read (``fresh``)
        no longer has it; its entries are dropped either way. A tool refused an id: if we
        kept it, the tool may have retired it since (a user deactivated) - or the refusal
        has another cause, and the fresh read says which."""
        if not self.drop_where(lambda key, kept: key[0] == kind and kept == value):
            return False
        return value not in fresh()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
