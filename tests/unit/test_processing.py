"""The processing policy when something unexpected breaks: never raise, never lose."""

from __future__ import annotations

import json
import sqlite3

import pika
import structlog
from structlog.testing import capture_logs

from schemas.errors import Unreadable
from schemas.inbound import parse_inbound
from tests import builders as b
from tests.unit.world import World
from worker.messages import Delivery


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


def test_a_producers_odd_headers_never_make_processing_raise(tmp_path):
    """x-failure-history, x-attempts and friends are the producer's to set: whatever they
    hold, the message still gets a decision (here: dead-lettered as not_json, with a clean
    history and a clamped attempt count)."""
    world = World(tmp_path)
    odd = [
        {"x-failure-history": 5},
        {"x-failure-history": "abc", "x-attempts": "zz"},
        {"x-failure-history": [1, {"a": 2}, "kept"]},
        {"x-attempts": 10**30},
    ]
    for headers in odd:
        delivery = Delivery(b"not json", pika.BasicProperties(headers=headers), "ex", "key")
        decision = world.processor.process(delivery, unreadable(delivery.body))

        [copy] = decision.publishes
        copy.properties.encode()  # pika can write it
        history = copy.properties.headers["x-failure-history"]
        assert all(isinstance(h, str) for h in history) and "not_json" in history[-1]
        assert copy.properties.headers["x-attempts"] <= 1_000_001


def test_when_no_copy_can_be_made_the_broker_is_asked_to_dead_letter(tmp_path, monkeypatch):
    world = World(tmp_path)
    monkeypatch.setattr(
        "worker.processing.failure_copy",
        lambda *a, **k: 1 / 0,  # nothing can be built
    )
    delivery = Delivery(b"not json", pika.BasicProperties(), "ex", "key")

    decision = world.processor.process(delivery, unreadable(delivery.body))

    assert decision.reject and decision.publishes == []


def unreadable(body: bytes):
    try:
        return parse_inbound(body)
    except Unreadable as exc:
        return exc


def test_lines_logged_while_an_event_is_handled_carry_its_event_and_project(tmp_path, monkeypatch):
    world = World(tmp_path)
    project = b.project()
    world.send(b.closed_won(project))
    event = b.status_changed(project, "in_progress")

    def logging_lookup(name):  # an adapter that logs, as a library would
        structlog.get_logger().warning("vendor_slow", tool="harvest")
        return []

    monkeypatch.setattr(world.tool, "clients_named", logging_lookup)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        world.send(event)

    [slow] = [line for line in lines if line["event"] == "vendor_slow"]
    assert (slow["event_id"], slow["project_id"]) == (event["id"], project["id"])
    assert structlog.contextvars.get_contextvars() == {}  # unbound once handled
