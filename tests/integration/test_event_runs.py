"""An event's runs in the state store, on SQLite and a real PostgreSQL: a run is counted when
another worker process finds it begun and never ended (``last_run_by``, migration 0004)."""

from __future__ import annotations

from adapters.sql import Postgres

KEY = ("crm-test", "ev-7")


def test_a_run_counts_when_another_process_finds_it_unended(store):
    assert store.note_run(KEY, "worker-a:1", 0) == 1  # the delivery before this one
    assert store.note_run(KEY, "worker-a:1", 0) == 1  # a copy in the same process
    assert store.note_run(KEY, "worker-b:1", 0) == 2  # worker-a died mid-run
    store.end_run(KEY)
    assert store.note_run(KEY, "worker-c:1", 0) == 2  # worker-b's run had ended
    assert store.note_run(KEY, "worker-d:1", 0) == 3  # worker-c died mid-run
    assert store.note_run(("crm-test", "ev-8"), "worker-c:2", 0) == 1  # per event


def test_a_step_recorded_since_the_last_run_began_starts_the_count_again(store):
    assert store.note_run(KEY, "worker-a:1", 0) == 1
    assert store.note_run(KEY, "worker-b:1", 0) == 2  # died again, no further
    assert store.note_run(KEY, "worker-c:1", 2) == 1  # died, but two steps were recorded
    assert store.note_run(KEY, "worker-d:1", 2) == 2  # died again at the same place


def test_runs_counted_before_0_3_1_are_kept_and_count_on(store):
    values = "(%(s)s, %(e)s, 4)" if isinstance(store.dialect, Postgres) else "(:s, :e, 4)"
    with store._write() as conn:  # a row as releases before 0.3.1 left it: no run under way
        conn.execute(
            f"INSERT INTO event_runs (source, event_id, runs) VALUES {values}",
            {"s": KEY[0], "e": KEY[1]},
        )

    assert store.note_run(KEY, "worker-a:1", 0) == 4
    assert store.note_run(KEY, "worker-b:1", 0) == 5
