"""The locks the state store hands out, each with a deadline: a lock per key within one
process, PostgreSQL session advisory locks across the worker processes sharing a database,
and an exclusive lock on a file beside a SQLite database across the processes of one host.

A lock that cannot be had in time raises ``Transient``: the event goes to a retry queue and
comes back later, instead of holding a lane (and its unacked message) for ever behind a
worker that is stuck.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
import time
from collections.abc import Hashable, Iterator

import psycopg

from schemas.errors import FailureCode, Transient

# SQLSTATE 55P03: pg_advisory_lock waited longer than lock_timeout.
LOCK_TIMED_OUT = psycopg.errors.LockNotAvailable


def busy(what: str, timeout: float) -> Transient:
    return Transient(
        FailureCode.INTERNAL_ERROR,
        f"{what} is locked by another worker (waited {timeout:g} s); retrying later",
    )


class KeyedLocks:
    """One lock per key, made on first use and dropped once nobody holds or awaits it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Hashable, tuple[threading.Lock, list[int]]] = {}

    @contextlib.contextmanager
    def hold(self, key: Hashable, timeout: float, what: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        try:
            if not lock.acquire(timeout=timeout):
                raise busy(what, timeout)
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._guard:
                users[0] -= 1
                if not users[0]:
                    del self._locks[key]


def take_advisory_lock(conn: psycopg.Connection, scope: int, key: int, timeout: float) -> bool:
    """Takes the session advisory lock ``(scope, key)`` on ``conn`` (autocommit), waiting at
    most ``timeout`` seconds: False if another session kept it that long.

    Uncontended, that is one round trip. Only a wait sets ``lock_timeout``, which the server
    applies to advisory locks as to any other, and only for that statement's session setting;
    RESET gives the session back whatever its role or database configured."""
    taken = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (scope, key)).fetchone()[0]
    if taken:
        return True
    milliseconds = max(1, int(timeout * 1000))  # 0 would mean "no timeout"
    conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{milliseconds}ms",))
    try:
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (scope, key))
        return True
    except LOCK_TIMED_OUT:
        return False
    finally:
        if not conn.broken:
            conn.execute("RESET lock_timeout")


def flock_within(held, timeout: float) -> bool:
    """Takes an exclusive lock on the open file ``held``, waiting at most ``timeout`` seconds:
    False if another holder kept it that long. Closing the file (or the process dying)
    releases it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)  # what it guards takes milliseconds; flock has no timeout
