"""The newest refresh token of each OAuth chain a CRM rotates (Salesforce's refresh token
rotation: every renewal answers with a new refresh token and invalidates the one sent), so
that the next start and every other process sign in with it rather than with the configured
one, which Salesforce no longer takes.

A chain is named by its caller with a one-way digest (``adapters.salesforce_session``),
never a token. A renewal runs under ``refresh_token_lock``, held across processes: a
PostgreSQL session advisory lock, or on SQLite an exclusive lock on a file beside the
database (the processes sharing a SQLite file share its host); among this process's threads
a lock in memory first.

A mixin of ``adapters.store.SqlStore``.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from adapters.locks import busy, flock_within
from adapters.sql import Postgres

TOKEN_SCOPE = 0x7473  # pg_advisory_lock's first key: a refresh token chain

TOKEN_SQL = {
    "refresh_token": "SELECT refresh_token FROM refresh_tokens WHERE crm = :crm AND chain = :chain",
    "save_refresh_token": """INSERT INTO refresh_tokens (crm, chain, refresh_token, rotated_at)
        VALUES (:crm, :chain, :token, :at)
        ON CONFLICT (crm, chain) DO UPDATE SET refresh_token = excluded.refresh_token,
            rotated_at = excluded.rotated_at""",
}


class StoreRefreshTokens:
    # -- rotated refresh tokens (``adapters.salesforce_session``) ---------------------------
    def refresh_token(self, crm: str, chain: str) -> str | None:
        """The newest refresh token of the chain (None: it never rotated here)."""
        row = self._one("refresh_token", {"crm": crm, "chain": chain})
        return row[0] if row else None

    def save_refresh_token(self, crm: str, chain: str, token: str) -> None:
        """The chain's newest refresh token is ``token``; the caller holds its lock."""
        at = self.dialect.stamp(datetime.now(UTC))
        self._write_one(
            "save_refresh_token", {"crm": crm, "chain": chain, "token": token, "at": at}
        )

    @contextlib.contextmanager
    def refresh_token_lock(self, crm: str, chain: str):
        """One renewal of the chain at a time, among this process's threads and among every
        process on this database: the reading of the stored token, the token request and the
        saving of the one it answers all happen under it."""
        what = f"the {crm} refresh token"
        with self._client_locks.hold(("refresh token", crm, chain), self.lock_timeout, what):
            if isinstance(self.dialect, Postgres):
                with self._session_lock(TOKEN_SCOPE, f"{crm}\n{chain}", what):
                    yield
                return
            path = self.dialect.path
            if path == ":memory:" or path.startswith("file:"):
                yield  # a database no other process can open
                return
            with open(f"{path}.refresh-token.lock", "a") as held:
                if not flock_within(held, self.lock_timeout):
                    raise busy(what, self.lock_timeout)
                yield  # closing the file releases the lock
