"""Which worker processes are alive, for sharing the partitions (``worker.partitioning``).

Each worker holds a PostgreSQL session advisory lock ``(members of NS, its number)`` on a
connection of its own, and reads the others' from ``pg_locks`` every ``EVERY`` seconds. A
worker that stops, is killed or loses its network loses its session, and with it its lock:
the others see it gone at their next look (a killed process's socket closes at once; a
silent network is found by TCP keepalives within about ``KEEPALIVE_SECONDS``). Several
workers already share PostgreSQL for their state, so this needs nothing new.

Membership only balances the work; it never decides order. A partition is consumed by one
worker at a time because the broker says so (a single-active-consumer queue), so two
workers that briefly disagree about who owns what cost a standby subscription, not order.
"""

from __future__ import annotations

import contextlib
import random
import threading
import zlib
from collections.abc import Callable

import psycopg
import structlog

log = structlog.get_logger()

EVERY = 1.0  # seconds between looks at the members
KEEPALIVE_SECONDS = 10
MEMBERS = """
    SELECT objid::bigint FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = %s::bigint::oid
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def members_scope(namespace: str) -> int:
    """The advisory lock class of one namespace's workers: installations and test runs
    that share a database never see each other's workers."""
    return zlib.crc32(f"members of {namespace}".encode()) & 0x7FFFFFFF


class Membership:
    def __init__(
        self,
        database_url: str,
        namespace: str,
        on_change: Callable[[int, frozenset[int]], None],
    ):
        self.url = "postgresql://" + database_url.split("://", 1)[1]
        self.scope = members_scope(namespace)
        self.on_change = on_change
        self.member: int | None = None
        self.members: frozenset[int] = frozenset()
        self._conn: psycopg.Connection | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="membership", daemon=True)

    def start(self) -> Membership:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self._look()
            except psycopg.Error as exc:
                # Until we are back, the others may take our partitions; we keep consuming
                # what we have, and the broker keeps each partition with one of us.
                log.warning("membership_lost", error=type(exc).__name__)
                self._drop()
            self._stopped.wait(EVERY)
        self._drop()

    def _look(self) -> None:
        if self._conn is None or self._conn.closed:
            self._join()
        rows = self._conn.execute(MEMBERS, (self.scope,)).fetchall()
        members = frozenset(row[0] for row in rows)
        if self.member not in members:
            raise psycopg.OperationalError("our membership lock is gone")
        if members != self.members:
            self.members = members
            log.info("members_changed", member=self.member, members=sorted(members))
            self.on_change(self.member, members)

    def _join(self) -> None:
        self._conn = psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=5,
            keepalives=1,
            keepalives_idle=KEEPALIVE_SECONDS // 2,
            keepalives_interval=1,
            keepalives_count=KEEPALIVE_SECONDS // 2,
            application_name="provisioner-membership",
        )
        while True:  # a number nobody holds; a clash is rare, and try-lock tells us
            number = random.randint(1, 0x7FFFFFFF)
            taken = self._conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (self.scope, number)
            ).fetchone()[0]
            if taken:
                self.member = number
                return

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self.member = None
        self.members = frozenset()
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()  # the session ends, and the lock with it
