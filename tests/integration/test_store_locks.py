"""The store's locks on the real PostgreSQL (issue 10, finding 9): a project lock held by
another worker is awaited only so long, and a lock whose database session broke is never
silently given up for a fresh, unlocked session."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from adapters.store import ADVISORY_SCOPE, SqlStore, _lock_key
from schemas.errors import Transient
from tests import builders as b
from tests.integration.test_several_workers import deliver_decision, worker


@pytest.fixture
def stores(pg_schema_url):
    opened: list[SqlStore] = []

    def open_store(**kw) -> SqlStore:
        store = SqlStore.from_url(pg_schema_url, **kw)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


def try_lock(store: SqlStore, project_id: str, outcome: list) -> None:
    try:
        with store.project_lock(project_id):
            outcome.append("locked")
    except Transient as exc:
        outcome.append(exc)


def test_a_project_locked_by_another_worker_past_the_timeout_is_a_retryable_failure(stores):
    holder, waiter = stores(), stores(lock_timeout=0.3)
    project_id = b.rid("P")
    outcome: list = []
    with holder.project_lock(project_id):
        started = time.monotonic()
        attempt = threading.Thread(target=try_lock, args=(waiter, project_id, outcome))
        attempt.start()
        attempt.join(10)
        waited = time.monotonic() - started
        assert not attempt.is_alive(), "the lock was awaited without end"

    [refused] = outcome
    assert isinstance(refused, Transient) and refused.retryable
    assert refused.code == "internal_error"
    assert f"project {project_id} is locked by another worker" in refused.message
    assert 0.3 <= waited < 5
    try_lock(waiter, project_id, outcome)  # released: the next try has it at once
    assert outcome[-1] == "locked"


def test_a_worker_that_finds_the_project_locked_schedules_a_retry(stores, pg_schema_url):
    from tests.unit.memory_tool import MemoryTool

    project = b.project()
    processor = worker(pg_schema_url, MemoryTool(), lock_timeout=0.2)
    with stores().project_lock(project["id"]):
        decision = deliver_decision(processor, b.closed_won(project))

    assert decision.log == "retry_scheduled"
    [copy] = [p for p in decision.publishes if not p.exchange]
    headers = copy.properties.headers
    assert headers["x-error-code"] == "internal_error"
    assert "locked by another worker" in headers["x-error-message"]


def locking_backend(admin: psycopg.Connection, project_id: str) -> int:
    key = _lock_key(project_id) & 0xFFFFFFFF  # pg_locks shows the int4 key as an oid
    row = admin.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND classid = %s AND objid = %s AND objsubid = 2",
        (ADVISORY_SCOPE, key),
    ).fetchone()
    assert row is not None, "nobody holds the project lock"
    return row[0]


def test_a_lock_whose_session_broke_fails_every_later_call_until_released(stores, postgres_url):
    store = stores()
    project_id = b.rid("P")
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        with pytest.raises(Transient) as lost, store.project_lock(project_id):
            admin.execute("SELECT pg_terminate_backend(%s)", (locking_backend(admin, project_id),))
            for _ in range(2):  # the call that meets the break, and any after it
                with pytest.raises(Transient) as refused:
                    store.link(project_id, "O-1")
                assert refused.value.retryable and f"project {project_id}" in refused.value.message
            store.links(project_id)

        assert "broke" in lost.value.message
        assert store.link(project_id, "O-1") is None  # outside the lock: a new session
        outcome: list = []
        try_lock(stores(lock_timeout=5), project_id, outcome)
        assert outcome == ["locked"]  # the server let go of the lock with the session
