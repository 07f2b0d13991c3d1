"""What differs between the two databases the state store runs on: how to connect, how a
write transaction begins, how timestamps are stored, how parameters are written.

The store speaks to the DB-API drivers (sqlite3, psycopg 3) directly. Every event runs a
handful of short statements, and a query layer's per-statement work cost several times the
SQL itself (bench/throughput.py; the README's design notes).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import psycopg

from adapters.group_commit import GroupCommit
from schemas.errors import Unreadable, UnreadableCode

# Errors of either driver: a caller that reports "the store failed" catches these.
DRIVER_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
CONNECT_TIMEOUT = 10  # seconds, PostgreSQL, unless the URL says otherwise
SCHEMA_LOCK_SCOPE = 0x7471  # the advisory lock taken while the schema is migrated


def in_utc(value: datetime) -> datetime:
    """``value`` as UTC, or ``Unreadable`` (invalid_data) for a time that has no UTC form in
    Python's calendar (year 1 ahead of UTC, year 9999 behind it), rather than an
    ``OverflowError`` from deep inside the store."""
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise Unreadable(
            UnreadableCode.INVALID_DATA,
            f"time {value.isoformat()} is outside the range the state store can keep",
        ) from None


WAL_WAIT = 30.0  # seconds, as the connection's own busy timeout


def _write_ahead_log(conn: sqlite3.Connection, wait: float = WAL_WAIT) -> None:
    """Puts the database in WAL mode (kept in the file, so once per database). Turning it
    on needs the file to itself, and SQLite answers "database is locked" at once, without
    its busy handler, while another process opens the same new file (workers starting
    together, measured: 1 start in 6 of 4 at once failed): so it is tried again until it
    takes."""
    deadline = time.monotonic() + wait
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.01)


class Sqlite:
    """One file, one worker process (its lanes share it). WAL lets readers run beside the
    one writer; writers of this process queue on a Python lock, woken the moment it is
    free, rather than in SQLite's busy handler, which sleeps up to 100 ms a try."""

    name = "sqlite"
    begin = "BEGIN IMMEDIATE"  # take the write lock first: no read-then-upgrade deadlock
    integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self, path: str, fsync: Callable[[int], None] = os.fsync):
        self.path = path
        self.writers = threading.Lock()
        in_memory = path == ":memory:" or path.startswith("file:")
        self.group_commit = None if in_memory else GroupCommit(path, fsync)

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        _write_ahead_log(conn)
        # Durable across process crashes; across power loss once make_durable returns.
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def committed(self) -> None:
        """After each commit, under ``writers``."""
        if self.group_commit is not None:
            self.group_commit.note_commit()

    def make_durable(self) -> None:
        if self.group_commit is not None:
            self.group_commit.make_durable()

    def close(self) -> None:
        """After every connection is closed."""
        if self.group_commit is not None:
            self.group_commit.close()

    @staticmethod
    def usable(conn: sqlite3.Connection) -> bool:
        return True

    @staticmethod
    def sql(text: str) -> str:
        return text  # sqlite3 takes :name parameters as written

    @staticmethod
    def stamp(value: datetime | None) -> str | None:
        # UTC text that sorts as time does, so SQL can compare it.
        if value is None:
            return None
        return in_utc(value).strftime("%Y-%m-%d %H:%M:%S.%f")

    @staticmethod
    def unstamp(value: str | None) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


class Postgres:
    """Several worker processes. Connections run in autocommit; a write transaction is an
    explicit BEGIN … COMMIT, and the server keeps writers apart."""

    name = "postgresql"
    begin = "BEGIN"
    integrity_errors = (psycopg.IntegrityError,)
    writers = contextlib.nullcontext()
    _PARAM = re.compile(r"(?<!:):(\w+)")

    def __init__(self, conninfo: str):
        self.conninfo = conninfo
        # Without one, libpq waits out the OS's TCP timeout (minutes) on a host that does not
        # answer: a worker would hang at start-up, or in a reconnect, saying nothing.
        given = "connect_timeout" in conninfo
        self.connect_args = {} if given else {"connect_timeout": CONNECT_TIMEOUT}

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.conninfo, autocommit=True, **self.connect_args)

    @staticmethod
    def usable(conn: psycopg.Connection) -> bool:
        return not (conn.closed or conn.broken)

    @staticmethod
    def committed() -> None:
        pass

    @staticmethod
    def make_durable() -> None:
        pass  # a COMMIT returns once the server has flushed it (synchronous_commit)

    @staticmethod
    def close() -> None:
        pass

    @classmethod
    def sql(cls, text: str) -> str:
        return cls._PARAM.sub(r"%(\1)s", text)

    @staticmethod
    def stamp(value: datetime | None) -> datetime | None:
        # PostgreSQL would keep 1 BC, but psycopg could not read it back as a datetime.
        return None if value is None else in_utc(value)

    @staticmethod
    def unstamp(value: datetime | None) -> datetime | None:
        return value


def dialect_for(url: str) -> Sqlite | Postgres:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``postgresql://…``."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return Sqlite(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgresql+psycopg://")):
        return Postgres("postgresql://" + url.split("://", 1)[1])
    raise ValueError("the database URL must be sqlite:///PATH or postgresql://…")


def without_password(url: str) -> str:
    """The URL as it may be shown to people: any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
