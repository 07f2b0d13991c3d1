"""The state store's connections and transactions: one connection per thread, kept for
its life, in autocommit; a write of several statements is an explicit transaction.

A mixin of ``adapters.store.SqlStore``, which owns ``dialect``, ``sql`` and the thread-local
state these methods use; a lock session that broke (``adapters.store_locks``) is reported
here, since that is where a broken connection is first seen.
"""

from __future__ import annotations

import contextlib

from schemas.errors import FailureCode, Transient


class StoreSession:
    # -- connections and transactions -------------------------------------------------------
    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or not self.dialect.usable(conn):
            if self._held():
                # The session that held our lock is gone, and the lock with it: a new session
                # would let the rest of the event run unlocked, beside another worker.
                raise self._lock_lost()
            conn = self.dialect.connect()
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    @contextlib.contextmanager
    def _session(self):
        """This thread's connection, for one statement or transaction."""
        conn = self._conn()
        try:
            yield conn
        except Exception as exc:
            if self._held() and not self.dialect.usable(conn):
                raise self._lock_lost() from exc
            raise

    def _held(self) -> list[str]:
        """What this thread holds session locks on (PostgreSQL), innermost last."""
        return self._local.__dict__.setdefault("held", [])

    def _lock_lost(self) -> Transient:
        return Transient(
            FailureCode.INTERNAL_ERROR,
            f"the database session holding the lock on {self._held()[0]} broke; "
            "the event is retried",
        )

    def _one(self, query: str, params: dict):
        with self._session() as conn:
            return conn.execute(self.sql[query], params).fetchone()

    def _all(self, query: str, params: dict) -> list:
        with self._session() as conn:
            return conn.execute(self.sql[query], params).fetchall()

    def _write_one(self, query: str, params: dict) -> tuple[int, list]:
        """One statement, which is its own transaction: (rows changed, rows returned).

        The rows are fetched inside: SQLite commits a RETURNING statement only once it has
        been stepped to the end."""
        with self.dialect.writers, self._session() as conn:
            cursor = conn.execute(self.sql[query], params)
            returned = cursor.fetchall() if cursor.description else []
            self.dialect.committed()
            return cursor.rowcount, returned

    @contextlib.contextmanager
    def _write(self):
        """A transaction of several statements on this thread's connection."""
        with self.dialect.writers, self._session() as conn:
            conn.execute(self.dialect.begin)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:  # a failed COMMIT too: never leave the transaction open
                with contextlib.suppress(Exception):  # the connection may be the failure
                    conn.execute("ROLLBACK")
                raise
            self.dialect.committed()

    def make_durable(self) -> None:
        self.dialect.make_durable()

    def reachable(self) -> bool:
        """The database answers a trivial query on this thread's connection (readiness)."""
        with self._session() as conn:
            conn.execute("SELECT 1").fetchone()
        return True
