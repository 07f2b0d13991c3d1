"""Locks among worker processes: a PostgreSQL session advisory lock per project, and one
per client name in one tool (with a lock in memory among this process's lanes). SQLite
serves one worker process, whose lanes already keep a project to one at a time.

A mixin of ``adapters.store.SqlStore``; the lock lives with this thread's session
(``adapters.store_session``).
"""

from __future__ import annotations

import contextlib
import hashlib

from adapters.locks import busy, take_advisory_lock
from adapters.sql import Postgres
from handlers.ports import client_name_key
from schemas.inbound import Tool

# pg_advisory_lock(int4, int4): our own first keys, so other applications' locks never clash.
ADVISORY_SCOPE = 0x7470  # "tp": a project
CLIENT_SCOPE = 0x7472  # a client name in one tool
# How long a lock is awaited before the event is given back to be retried later: far above
# any one event's work on a project, far below the broker's consumer timeout.
LOCK_TIMEOUT = 30.0

LOCK_SQL = {
    "unlock": "SELECT pg_advisory_unlock(:scope, :key)",
}


def _lock_key(text: str) -> int:
    # Two texts of one key only share a lock: they wait for each other, nothing worse.
    digest = hashlib.blake2b(text.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


class StoreLocks:
    # -- several workers --------------------------------------------------------------------
    @contextlib.contextmanager
    def project_lock(self, project_id: str):
        """A PostgreSQL session advisory lock per project, so that two worker processes never
        work one project at once (two copies of an event could otherwise both create). SQLite
        serves one worker process, whose lanes already do this."""
        if not isinstance(self.dialect, Postgres):
            yield
            return
        with self._session_lock(ADVISORY_SCOPE, project_id, f"project {project_id}"):
            yield

    @contextlib.contextmanager
    def client_lock(self, tool: Tool, name: str):
        """One resolution of a client name per tool at a time: among this process's lanes by
        a lock in memory, and among worker processes on PostgreSQL by an advisory lock."""
        folded = client_name_key(name)
        what = f"{tool} client {name.strip()!r}"
        with self._client_locks.hold((tool, folded), self.lock_timeout, what):
            if not isinstance(self.dialect, Postgres):
                yield
                return
            with self._session_lock(CLIENT_SCOPE, f"{tool}\n{folded}", what):
                yield

    @contextlib.contextmanager
    def _session_lock(self, scope: int, name: str, what: str):
        key = {"scope": scope, "key": _lock_key(name)}
        with self._session() as conn:  # the lock lives with this thread's session
            taken = take_advisory_lock(conn, scope, key["key"], self.lock_timeout)
        if not taken:
            raise busy(what, self.lock_timeout)
        held = self._held()
        held.append(what)
        try:
            yield
        finally:
            held.remove(what)
            try:
                conn.execute(self.sql["unlock"], key)
            except Exception:
                # A session that broke took its locks with it; one that failed otherwise is
                # closed so that it cannot keep the lock (the next call opens another).
                with contextlib.suppress(Exception):
                    conn.close()
