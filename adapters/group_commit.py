"""Group commit for the SQLite store: the commits reach the disk before the ack, at the cost
of one fsync shared by every lane that waits for it, not one fsync per commit.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit appends its frames to the
``-wal`` file with write(2) and returns without an fsync. That survives a crash of the
process (the frames are in the operating system's cache) but not a power loss. FULL would
fsync the WAL at every commit: about 250 µs each here against 13 µs, with two commits per
event, serialized by the writers' lock. Instead the worker asks for durability once per
event, just before its ack (``make_durable``), and callers that arrive together share one
fsync. The worker asks from one thread for all lanes (``worker.durability``), and before a
vendor create, for the intent that makes the create safe to repeat.

Why an fsync of the ``-wal`` file makes every commit written before it durable:
- a WAL commit is nothing but frames appended to that one file, ending in a commit frame;
  recovery on the next open replays the valid frames up to the last commit frame. fsync(2)
  flushes every dirty page of the file (the inode, whichever descriptor wrote it), so every
  frame written before the fsync began is on disk when it returns;
- frames leave the WAL only by a checkpoint, and with ``synchronous=NORMAL`` SQLite syncs the
  WAL before a checkpoint, the database file after a complete one, and the WAL header when
  the file starts to be reused (https://www.sqlite.org/pragma.html#pragma_synchronous), so a
  commit checkpointed before our fsync is already durable in the database file;
- a new file is durable only once its directory entry is: when the ``-wal`` file is new to
  us (the first call, or SQLite made it again after the last connection closed), the
  directory is fsynced too, which also covers the database file made with it.
No ``-wal`` file means nothing waits in a WAL: SQLite removes it only after a complete,
synced checkpoint, and in another journal mode its commits sync themselves.

The ``-wal`` file is held open between flushes, never opened and closed each time: closing
any descriptor of a file drops every POSIX lock this process holds on it, and SQLite's
locking relies on those (https://www.sqlite.org/howtocorrupt.html, section 2.2). Holding it
open also pins its inode, so a ``-wal`` made anew is told apart by its link count.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class GroupCommit:
    """Counts the commits of a database file and makes them durable in shared fsyncs."""

    def __init__(self, path: str, fsync: Callable[[int], None] = os.fsync):
        self.path = os.path.abspath(path)
        self.wal = self.path + "-wal"
        self._fsync = fsync
        self._committed = 0  # commits counted so far (by note_commit)
        self._durable = 0  # every commit numbered up to this is on disk
        self._syncing = False
        self._done = threading.Condition()
        self._waiting = 0
        self._wal_fd: int | None = None  # the -wal file whose directory entry is synced

    def note_commit(self) -> None:
        """Called right after each commit returns, under the database's writers' lock."""
        self._committed += 1

    @property
    def waiting(self) -> int:
        """Callers waiting for an fsync that another caller is running."""
        return self._waiting

    def make_durable(self) -> None:
        """Returns once every commit counted before the call is on disk. One caller at a
        time runs the fsync, for every commit counted when it began; callers arriving
        meanwhile wait for it and, if commits came after it began, for the next one, which
        one of them runs for all of them."""
        with self._done:
            mine = self._committed
            while self._durable < mine:
                if self._syncing:
                    self._waiting += 1
                    try:
                        self._done.wait()
                    finally:
                        self._waiting -= 1
                    continue
                self._syncing = True
                # Each commit counted here had written its frames before it was counted.
                covers = self._committed
                self._done.release()
                try:
                    self._sync()
                    covered = covers
                except BaseException:
                    covered = 0  # nobody's commit is known to be on disk: a waiter tries again
                    raise
                finally:
                    self._done.acquire()
                    self._syncing = False
                    self._durable = max(self._durable, covered)
                    self._done.notify_all()

    def close(self) -> None:
        with self._done:
            self._done.wait_for(lambda: not self._syncing)
            self._forget_wal()

    def _sync(self) -> None:
        if self._wal_fd is not None and os.fstat(self._wal_fd).st_nlink == 0:
            self._forget_wal()  # removed since: SQLite has made, or will make, another
        if self._wal_fd is None:
            try:
                self._wal_fd = os.open(self.wal, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return  # no WAL, so no commit waiting in one
            self._fsync(self._wal_fd)
            self._sync_directory()
        else:
            self._fsync(self._wal_fd)

    def _forget_wal(self) -> None:
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None

    def _sync_directory(self) -> None:
        fd = os.open(os.path.dirname(self.path), os.O_RDONLY)
        try:
            self._fsync(fd)
        finally:
            os.close(fd)
