"""The processing policy when something unexpected breaks: never raise, never lose."""

from __future__ import annotations

import json
import sqlite3

from structlog.testing import capture_logs

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


SECRET = "s3cret-token-abc"


def said_anywhere(result, text: str) -> bool:
    """Whether ``text`` is in any body or header the decision would publish."""
    for publish in result.decision.publishes:
        headers = json.dumps(publish.properties.headers or {}, default=str)
        if text in publish.body.decode() or text in headers:
            return True
    return False


def test_the_text_of_a_handler_bug_never_reaches_the_bus(tmp_path, monkeypatch):
    world = World(tmp_path)
    project = b.project()
    world.send(b.closed_won(project))

    def leaky(name):
        raise ValueError(f"Invalid header value b'Bearer {SECRET}\\n'")

    monkeypatch.setattr(world.tool, "clients_named", leaky)
    event = b.status_changed(project, "in_progress")

    with capture_logs() as logs:
        first = world.send(event)
        last = world.send(event, attempts_before=2)

    [failed] = last.of("timesheet.failed")
    assert failed["message"] == f"ValueError: see the worker log for event {event['id']}"
    assert first.copy.properties.headers["x-error-code"] == "internal_error"
    assert not said_anywhere(first, SECRET) and not said_anywhere(last, SECRET)
    [crash, *_] = [line for line in logs if line["event"] == "handler_crashed"]
    assert crash["event_id"] == event["id"] and crash["log_level"] == "error"


def test_the_text_of_a_store_failure_never_reaches_the_bus(tmp_path, monkeypatch):
    world = World(tmp_path)
    event = b.closed_won(b.project())

    def down(*_args):
        raise sqlite3.OperationalError(f"unable to open postgresql://app:{SECRET}@db/x")

    monkeypatch.setattr(world.store, "journal", down)
    result = world.send(event, attempts_before=2)

    assert result.dead_lettered and not said_anywhere(result, SECRET)
    headers = result.copy.properties.headers
    assert headers["x-error-message"] == (
        f"OperationalError: see the worker log for event {event['id']}"
    )
