"""Group commit of the SQLite store (issue 10, finding 9): every commit is on disk before the
ack that follows it, with one fsync shared by the lanes that wait together."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from adapters.group_commit import GroupCommit
from adapters.sql import Sqlite
from adapters.store import SqlStore
from tests import builders as b
from tests.unit.world import World
from worker.durability import DurableHandOff

DEADLINE = 10.0


class Disk:
    """An fsync that records what it flushed and, while ``held``, does not return."""

    def __init__(self):
        self.synced: list[str] = []  # the path of each fsync, in order
        self.held = threading.Event()
        self.held.set()
        self.entered = threading.Semaphore(0)
        self.fail_next = False

    def fsync(self, fd: int) -> None:
        self.synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        self.entered.release()
        assert self.held.wait(DEADLINE)
        if self.fail_next:
            self.fail_next = False
            raise OSError(5, "Input/output error")

    def flushes_of(self, path: str) -> int:
        return sum(1 for p in self.synced if p == path)


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "state.db"
    (tmp_path / "state.db-wal").write_bytes(b"")  # what SQLite's first commit makes
    path.write_bytes(b"")
    return path


def commit_then_make_durable(group: GroupCommit, returned: list) -> None:
    group.note_commit()
    group.make_durable()
    returned.append(threading.current_thread().name)


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def test_lanes_that_commit_while_an_fsync_runs_share_the_next_one(db):
    disk = Disk()
    group = GroupCommit(str(db), fsync=disk.fsync)
    wal = f"{db}-wal"
    returned: list[str] = []
    disk.held.clear()
    first = threading.Thread(target=commit_then_make_durable, args=(group, returned))
    first.start()
    assert disk.entered.acquire(timeout=DEADLINE)  # the first fsync is under way

    later = [
        threading.Thread(target=commit_then_make_durable, args=(group, returned), name=f"l{i}")
        for i in range(7)
    ]
    for lane in later:
        lane.start()
    wait_until(lambda: group.waiting == 7, "the later lanes wait")
    assert returned == []  # their commits came after that fsync began: it cannot cover them
    disk.held.set()
    for lane in [first, *later]:
        lane.join(DEADLINE)

    assert len(returned) == 8
    assert disk.flushes_of(wal) == 2  # one for the first lane, one for the seven
    assert disk.flushes_of(str(db.parent)) == 1  # the new -wal file's directory entry, once


def test_a_commit_covered_by_an_fsync_that_began_after_it_needs_no_other(db):
    disk = Disk()
    group = GroupCommit(str(db), fsync=disk.fsync)
    returned: list[str] = []
    early = threading.Thread(target=group.note_commit)
    early.start()
    early.join()
    commit_then_make_durable(group, returned)  # its fsync covers the early commit too
    flushed = len(disk.synced)

    early_call = threading.Thread(target=group.make_durable)  # make_durable is per thread
    early_call.start()
    early_call.join(DEADLINE)
    threading.Thread(target=group.make_durable).start()  # a lane that never committed

    assert len(disk.synced) == flushed


def test_a_failed_fsync_raises_and_the_next_caller_flushes_again(db):
    disk = Disk()
    group = GroupCommit(str(db), fsync=disk.fsync)
    group.note_commit()
    disk.fail_next = True

    with pytest.raises(OSError):
        group.make_durable()
    group.make_durable()

    assert disk.flushes_of(f"{db}-wal") == 2


def test_a_wal_file_made_again_has_its_directory_entry_flushed_again(db):
    disk = Disk()
    group = GroupCommit(str(db), fsync=disk.fsync)
    for _ in range(2):
        group.note_commit()
        group.make_durable()
    wal = Path(f"{db}-wal")
    wal.unlink()  # SQLite removes it when the last connection closes, and makes it anew
    wal.write_bytes(b"")
    group.note_commit()
    group.make_durable()

    assert disk.flushes_of(str(db.parent)) == 2
    assert disk.flushes_of(str(wal)) == 3


def test_the_intent_is_on_disk_before_the_vendor_create(tmp_path, monkeypatch):
    """After a power cut the next attempt must still find the intent, or it would create
    the project a second time."""
    disk = Disk()
    world = World(tmp_path)
    world.store.close()
    world.store = world.deps.store = SqlStore(Sqlite(str(tmp_path / "state.db"), disk.fsync))
    world.processor.deps = world.deps
    wal = f"{tmp_path / 'state.db'}-wal"
    flushed_at_create: list[int] = []
    create = world.tool.create_project

    def recording(spec):
        flushed_at_create.append(disk.flushes_of(wal))
        return create(spec)

    monkeypatch.setattr(world.tool, "create_project", recording)
    project = b.project()
    world.send(b.closed_won(project))
    before = disk.flushes_of(wal)
    world.send(b.status_changed(project, "in_progress"))

    assert flushed_at_create == [before + 1]


def test_decisions_go_on_only_after_a_flush_and_share_it():
    flushes: list[int] = []
    handed: list[str] = []
    gate = threading.Event()

    def flush() -> None:
        assert gate.wait(DEADLINE)
        flushes.append(len(handed))

    stage = DurableHandOff(flush, handed.append, on_failure=lambda: None)
    stage.submit("first")  # its flush waits on the gate...
    for name in ("a", "b", "c"):  # ...while three more decisions arrive
        stage.submit(name)
    assert handed == []
    gate.set()
    deadline = time.monotonic() + DEADLINE
    while len(handed) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    stage.close()

    assert handed == ["first", "a", "b", "c"]
    assert len(flushes) <= 2 and flushes[0] == 0  # nothing went on before a flush


def test_a_failed_flush_hands_nothing_on_and_says_so():
    failures: list[bool] = []
    handed: list[str] = []

    def flush() -> None:
        raise OSError(5, "Input/output error")

    stage = DurableHandOff(flush, handed.append, on_failure=lambda: failures.append(True))
    stage.submit("x")
    deadline = time.monotonic() + DEADLINE
    while not failures and time.monotonic() < deadline:
        time.sleep(0.01)
    stage.close()

    assert failures == [True] and handed == []
