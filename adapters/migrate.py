"""Versions of the state store's schema: the SQL migrations in ``adapters/migrations/<database>/``,
applied with yoyo-migrations when the store opens, one process at a time.

A database made by release 0.1.0 has the tables and no bookkeeping of migrations: it is
baselined, recorded as at 0001 without running it, and later migrations apply on top. A
database that has a migration this code does not know belongs to a newer release and is
refused, never written to.

While one process migrates, the others starting beside it wait, then find nothing left to
do: on PostgreSQL it holds a session advisory lock keyed by the schema, on SQLite an
exclusive lock on a file beside the database. The server or the kernel drops either if the
process dies, so a crash mid-migration never blocks the next start-up.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from yoyo import read_migrations
from yoyo.backends.base import DatabaseBackend
from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
from yoyo.backends.core.sqlite3 import SQLiteBackend
from yoyo.connections import DatabaseURI

from adapters.locks import flock_within, take_advisory_lock
from adapters.sql import SCHEMA_LOCK_SCOPE, Postgres, Sqlite

MIGRATIONS = Path(__file__).parent / "migrations"
BOOKKEEPING = "_yoyo_migration"  # yoyo's table of applied migrations (its default name)
# Release 0.1.0 made its tables with no bookkeeping; this one stands for them all (it made
# the seven in one transaction).
RELEASE_0_1_TABLE = "projects"
# How long a start-up waits for another process's migration before it gives up.
LOCK_TIMEOUT = 120.0


class MigrationError(Exception):
    """The schema could not be brought to this release's version."""


class DatabaseTooNew(MigrationError):
    """The database has migrations this release does not know: a newer release's."""


@dataclass(frozen=True)
class Versions:
    """Where a database stands against the migrations this release knows. A version is a
    migration's number: ``0001`` for ``0001_initial``."""

    current: str | None  # the newest applied; None: nothing recorded
    latest: str  # the newest this release knows
    pending: tuple[str, ...]  # known, not applied (a baseline not yet recorded among them)
    unknown: tuple[str, ...]  # applied, not known: a newer release's
    unversioned: bool  # made by release 0.1.0 and not yet baselined

    def too_new(self) -> DatabaseTooNew:
        return DatabaseTooNew(
            f"the database is at schema version {self.current}, newer than this release "
            f"knows (latest {self.latest}; unknown migrations {', '.join(self.unknown)}); "
            "run the release that made it"
        )


def version_of(migration_id: str) -> str:
    return migration_id.split("_", 1)[0]


def known_migrations(dialect: Sqlite | Postgres, source: Path | None = None):
    """This release's migrations for ``dialect``, in order (``source``: another directory)."""
    return _read(str(source or MIGRATIONS / dialect.name))


@functools.cache
def _read(directory: str):
    # Once a process: every store opening asks, and yoyo reads the files afresh each time.
    return read_migrations(directory)


def status(dialect: Sqlite | Postgres, source: Path | None = None) -> Versions:
    """Where the database stands; reads only, takes no lock."""
    with _backend(dialect) as backend:
        return _versions(backend, known_migrations(dialect, source))


def upgrade(
    dialect: Sqlite | Postgres, source: Path | None = None, timeout: float = LOCK_TIMEOUT
) -> Versions:
    """Brings the database to the latest known version, baselining a 0.1.0 database first;
    ``DatabaseTooNew`` for a newer release's database, which is left untouched."""
    migrations = known_migrations(dialect, source)
    with _backend(dialect) as backend:
        before = _versions(backend, migrations)
        if before.unknown:
            raise before.too_new()
        if not before.pending:
            return before  # the usual start-up: nothing to do, no lock to wait for
        with _exclusive(dialect, backend, timeout):
            return _migrate(backend, migrations)


def _migrate(backend, migrations) -> Versions:
    """Under the lock: another process may have migrated while this one waited."""
    before = _versions(backend, migrations)
    if before.unknown:
        raise before.too_new()
    if not before.pending:
        return before
    backend.init_database()
    # yoyo's own lock is a row that a killed process leaves behind for ever. Under our lock
    # nobody else is migrating, so a row found now is such a leftover.
    backend.break_lock()
    if before.unversioned:
        backend.mark_migrations(migrations[:1])
    backend.apply_migrations(backend.to_apply(migrations))
    after = _versions(backend, migrations)
    # Through the standard library: the worker's log setup renders it as one JSON line,
    # and a command (``clients``, ``db``) leaves it unprinted, its stdout being its output.
    logging.getLogger(__name__).info(
        "schema_migrated",
        extra={
            "before": before.current,
            "after": after.current,
            "baselined": before.unversioned,
            "applied": [m for m in before.pending if m not in after.pending],
        },
    )
    return after


def _versions(backend, migrations) -> Versions:
    known = [m.id for m in migrations]
    applied = []
    if _has_table(backend, BOOKKEEPING):
        sql = f"SELECT migration_id FROM {BOOKKEEPING} ORDER BY applied_at_utc, migration_id"
        applied = [row[0] for row in backend.execute(sql).fetchall()]
    return Versions(
        current=max(map(version_of, applied), default=None),
        latest=version_of(known[-1]),
        pending=tuple(m for m in known if m not in applied),
        unknown=tuple(m for m in applied if m not in known),
        unversioned=not applied and _has_table(backend, RELEASE_0_1_TABLE),
    )


def _has_table(backend, name: str) -> bool:
    if isinstance(backend, SQLiteBackend):
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name"
    else:  # the schema the store works in: the first of its search_path
        sql = (
            "SELECT 1 FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = :name"
        )
    return backend.execute(sql, {"name": name}).fetchone() is not None


def _backend(dialect: Sqlite | Postgres):
    """A yoyo backend whose connections are made as the store makes its own: the same
    conninfo, options and search_path; WAL and the busy timeout on SQLite. yoyo would read
    our URL its own way, and opens further connections (``copy``) for each migration."""
    if isinstance(dialect, Postgres):

        class Backend(PostgresqlPsycopgBackend):
            def connect(self, dburi):
                return dialect.connect()

    else:

        class Backend(SQLiteBackend):
            # yoyo's SQLite backend registers datetime adapters in the sqlite3 module, for
            # every connection of the process; its few timestamps go as text here instead.
            __enter__ = DatabaseBackend.__enter__
            __exit__ = DatabaseBackend.__exit__

            def connect(self, dburi):
                return dialect.connect()

            def execute(self, sql, params=None):
                if params:
                    params = {k: _text(v) for k, v in params.items()}
                return super().execute(sql, params)

    # Only a cache key inside yoyo: the connection comes from ``dialect``.
    return Backend(DatabaseURI(dialect.name, None, None, None, None, None, {}), BOOKKEEPING)


def _text(value):
    return value.isoformat(" ") if isinstance(value, datetime) else value


@contextlib.contextmanager
def _exclusive(dialect: Sqlite | Postgres, backend, timeout: float):
    if isinstance(dialect, Postgres):
        with _advisory_lock(backend.connection, timeout):
            yield
    else:
        with _file_lock(f"{dialect.path}.migrating", timeout):
            yield


@contextlib.contextmanager
def _advisory_lock(conn, timeout: float):
    # Keyed by schema: workers of different schemas (tests, tenants) migrate side by side.
    schema = conn.execute("SELECT current_schema()").fetchone()[0] or ""
    key = int.from_bytes(hashlib.blake2b(schema.encode(), digest_size=4).digest(), signed=True)
    if not take_advisory_lock(conn, SCHEMA_LOCK_SCOPE, key, timeout):
        raise MigrationError(f"another process kept the migration lock over {timeout:g} s")
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # a broken session has dropped it already
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (SCHEMA_LOCK_SCOPE, key))


@contextlib.contextmanager
def _file_lock(path: str, timeout: float):
    with open(path, "a") as held:
        if not flock_within(held, timeout):
            raise MigrationError(f"another process kept {path} locked over {timeout:g} s")
        yield  # closing the file releases the lock
