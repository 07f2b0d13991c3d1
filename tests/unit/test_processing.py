"""The processing policy when something unexpected breaks: never raise, never lose."""

from __future__ import annotations

import json
import math
import sqlite3
from datetime import UTC, datetime

import pika
import structlog
from structlog.testing import capture_logs

from schemas.errors import Unreadable, VendorUnavailable
from schemas.inbound import parse_inbound
from tests import builders as b
from tests.unit.world import Result, World
from worker import metrics
from worker.messages import Delivery
from worker.processing import Processor
from worker.topology import Topology


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


# -- a vendor's reset sizes the wait (issue 19: daily budgets spent for hours) ---------------

LADDER = Topology("unit", (10.0, 60.0, 600.0, 3600.0))
T0 = 1_800_000_000.0  # epoch seconds: the wall clock these tests set


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class SpentBudget:
    """A tool whose budget is spent until ``reset`` (on ``clock``): each create before it is
    refused with the seconds left, as an adapter reports a throttle it will not wait out."""

    def __init__(self, tool, clock: Clock, reset: float, hint: float | None = None):
        self.calls: list[float] = []
        self.create = tool.create_project
        self.clock, self.reset, self.hint = clock, reset, hint
        tool.create_project = self

    def __call__(self, spec):
        self.calls.append(self.clock())
        if self.clock() < self.reset:
            left = self.reset - self.clock() if self.hint is None else self.hint
            raise VendorUnavailable("harvest POST /v2/projects: throttled (429)", left)
        return self.create(spec)


def laddered(tmp_path, clock: Clock) -> World:
    world = World(tmp_path)
    world.processor = Processor(world.deps, LADDER, source="unit-test", clock=clock)
    return world


def won_then_started(world: World) -> dict:
    project = b.project()
    world.send(b.closed_won(project))
    return b.status_changed(project, "in_progress")


def arrives(world: World, copy) -> Result:
    """The copy back from its retry queue, as the broker dead-letters it into NS.worker."""
    delivery = Delivery(copy.body, copy.properties, "", LADDER.work_queue, redelivered=False)
    return Result(world.processor.process(delivery, parse_inbound(copy.body)))


def test_a_throttle_within_the_next_delay_keeps_the_ladder(tmp_path):
    clock = Clock()
    world = laddered(tmp_path, clock)
    event = won_then_started(world)
    SpentBudget(world.tool, clock, reset=T0 + 5)

    result = world.send(event)

    assert result.copy.routing_key == LADDER.retry_queue(10)
    assert "x-vendor-reset-at" not in result.copy.properties.headers
    assert result.decision.fields["retry_after"] == 5


def test_a_throttle_longer_than_the_next_delay_skips_to_the_first_queue_that_lasts_it(tmp_path):
    clock = Clock()
    world = laddered(tmp_path, clock)
    event = won_then_started(world)
    vendor = SpentBudget(world.tool, clock, reset=T0 + 300)

    first = world.send(event)
    clock.now = T0 + 600  # the 600 s queue gives it back after the reset
    second = arrives(world, first.copy)

    assert first.copy.routing_key == LADDER.retry_queue(600)  # not 10 s, not 60 s
    assert first.copy.properties.headers["x-attempts"] == 1
    assert "x-vendor-reset-at" not in first.copy.properties.headers
    assert (first.decision.log, first.decision.fields["retry_after"]) == ("retry_scheduled", 300)
    assert first.decision.fields["queue"] == LADDER.retry_queue(600)
    assert vendor.calls == [T0, T0 + 600] and second.of("timesheet.provisioned")


def test_a_reset_past_the_longest_delay_parks_the_message_until_then_without_calling(tmp_path):
    clock = Clock()
    world = laddered(tmp_path, clock)
    event = won_then_started(world)
    hint = 9000.0  # 2.5 h: longer than the longest queue (1 h)
    vendor = SpentBudget(world.tool, clock, reset=T0 + hint)

    result = world.send(event)
    headers = result.copy.properties.headers
    assert result.copy.routing_key == LADDER.retry_queue(3600)
    assert datetime.fromisoformat(headers["x-vendor-reset-at"]).timestamp() == T0 + hint
    assert result.decision.fields["vendor_reset_at"] == headers["x-vendor-reset-at"]
    history = headers["x-failure-history"]

    trips = 1
    while not result.of("timesheet.provisioned"):
        clock.now += 3600  # each trip lasts the queue's delay
        result = arrives(world, result.copy)
        trips += 1
        if result.decision.log == "retry_parked":
            parked = result.copy.properties.headers
            assert result.copy.routing_key == LADDER.retry_queue(3600)
            assert parked["x-attempts"] == 1 and parked["x-failure-history"] == history
            assert parked["x-vendor-reset-at"] == headers["x-vendor-reset-at"]
            assert result.events == []  # nothing said on the bus while it waits

    assert vendor.calls == [T0, T0 + 3 * 3600]  # never before the reset, once after it
    assert trips - 1 <= math.ceil(hint / 3600)  # parked trips are bounded by the hint
    [done] = result.of("timesheet.provisioned")
    assert done["created"] is True


def test_a_parked_trip_is_counted_as_parked_and_never_as_a_retry(tmp_path):
    clock = Clock()
    world = laddered(tmp_path, clock)
    event = won_then_started(world)
    SpentBudget(world.tool, clock, reset=T0 + 3 * 3600)
    first = world.send(event)
    before = parked_count()

    clock.now = T0 + 3600
    parked = arrives(world, first.copy)

    assert parked.decision.log == "retry_parked" and parked_count() == before + 1
    assert parked.decision.fields["waits"] == 2 * 3600


def parked_count() -> float:
    labels = {"type": "project.status_changed", "outcome": "parked"}
    return metrics.WORKER.get_sample_value("provisioner_events_finished_total", labels) or 0.0


def test_a_failure_that_may_work_sooner_is_never_held_by_another_failures_reset(tmp_path):
    clock = Clock()
    world = laddered(tmp_path, clock)
    project = b.project(b.offering("Design"), b.offering("Build"))
    world.send(b.closed_won(project))
    refusals = iter(
        [
            VendorUnavailable("harvest POST /v2/projects: throttled (429)", 7200.0),
            VendorUnavailable("harvest POST /v2/projects: 503"),  # no hint: may work in 10 s
        ]
    )

    def create(spec):
        raise next(refusals)

    world.tool.create_project = create
    result = world.send(b.status_changed(project, "in_progress"))

    assert result.copy.routing_key == LADDER.retry_queue(10)
    assert "x-vendor-reset-at" not in result.copy.properties.headers
    assert "retry_after" not in result.decision.fields


def test_a_dead_letter_loses_the_reset_so_a_replay_is_worked_at_once(tmp_path):
    clock = Clock()
    world = laddered(tmp_path, clock)
    event = won_then_started(world)
    SpentBudget(world.tool, clock, reset=T0 + 9000)

    last = world.send(event, attempts_before=4)  # the ladder is spent

    assert last.dead_lettered
    assert "x-vendor-reset-at" not in last.copy.properties.headers


def test_a_reset_header_that_is_not_ours_never_parks_a_message(tmp_path):
    """Garbled, without a zone, or further ahead than any vendor's day: the message is worked."""
    clock = Clock()
    world = laddered(tmp_path, clock)
    far = datetime.fromtimestamp(T0 + 30 * 86400, UTC).isoformat()
    for value in ("soon", "2027-01-15T10:00:00", far, 17):
        event = won_then_started(world)
        headers = {"x-attempts": 0, "x-vendor-reset-at": value}
        properties = pika.BasicProperties(headers=headers)
        delivery = Delivery(b.body(event), properties, "unit.inbound", event["type"])

        result = Result(world.processor.process(delivery, parse_inbound(delivery.body)))

        assert result.decision.log == "processed" and result.of("timesheet.provisioned"), value
