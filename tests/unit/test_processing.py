"""The processing policy when something unexpected breaks: never raise, never lose."""

from __future__ import annotations

import sqlite3

from tests import builders as b
from tests.unit.world import World


def test_a_store_outage_is_retried_later_not_left_unacked(tmp_path, monkeypatch):
    world = World(tmp_path)
    event = b.closed_won(b.project())

    def down(*_args):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(world.store, "journal", down)
    first = world.send(event)
    last = world.send(event, attempts_before=2)

    assert first.retried and first.copy.properties.headers["x-error-code"] == "internal_error"
    assert last.dead_lettered and first.events == []


def test_a_handler_bug_reports_timesheet_failed_at_the_last_attempt(tmp_path, monkeypatch):
    world = World(tmp_path)
    project = b.project()
    world.send(b.closed_won(project))
    monkeypatch.setattr(world.tool, "clients_named", lambda name: 1 / 0)
    event = b.status_changed(project, "in_progress")

    result = world.send(event, attempts_before=2)

    [failed] = result.of("timesheet.failed")
    assert (failed["code"], failed["retryable"], failed["dead_lettered"]) == (
        "internal_error",
        True,
        True,
    )
    assert "ZeroDivisionError" in failed["message"] and result.dead_lettered
