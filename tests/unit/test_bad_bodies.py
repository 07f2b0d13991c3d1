"""Property tests of issue 10: whatever the bytes, parsing gives an ``Inbound`` or
``Unreadable``, and processing never raises; every bad body is dead-lettered with a code at
its first delivery, and good events interleaved with bad ones still work."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pika
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.errors import Unreadable, UnreadableCode
from schemas.inbound import Inbound, parse_inbound
from tests import builders as b
from tests.strategies import BAD_BODY_KINDS, bad_bodies, good_events
from tests.unit.world import TOPOLOGY, World
from worker.messages import Delivery

BOUNDED = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
UNREADABLE_CODES = {str(code) for code in UnreadableCode}


def parsed(body: bytes) -> Inbound | Unreadable:
    try:
        return parse_inbound(body)
    except Unreadable as exc:
        return exc


def deliver(world: World, body: bytes):
    """One delivery of ``body`` through the real processing entry, as the consumer makes it."""
    delivery = Delivery(body, pika.BasicProperties(headers={}), "unit.inbound", "any.key")
    return world.processor.process(delivery, parsed(body))


def outcome_types(decision) -> list[str]:
    return [json.loads(p.body)["type"] for p in decision.publishes if not p.mandatory]


# -- parsing ----------------------------------------------------------------------------------
@BOUNDED
@given(st.binary(max_size=2048))
def test_any_bytes_parse_to_an_inbound_or_unreadable(body):
    assert isinstance(parsed(body), Inbound | Unreadable)


@BOUNDED
@given(bad_bodies())
def test_every_bad_body_is_unreadable_with_a_one_line_reason(body):
    result = parsed(body)

    assert isinstance(result, Unreadable), f"accepted: {body[:200]!r}"
    assert result.code in UNREADABLE_CODES
    assert result.message and "\n" not in result.message
    result.message.encode("utf-8")  # it becomes an AMQP header as it is


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_each_kind_of_bad_body_is_unreadable(data):
    for kind, strategy in BAD_BODY_KINDS.items():
        body = data.draw(strategy, label=kind)
        assert isinstance(parsed(body), Unreadable), f"{kind} accepted: {body[:200]!r}"


@BOUNDED
@given(good_events(["P-1", "P-2", "P-3"], clients=[("C-1", "Acme"), ("C-2", "Globex")]))
def test_every_good_event_parses(event):
    assert parsed(b.body(event)).type == event["type"]


# -- processing -------------------------------------------------------------------------------
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(st.tuples(st.integers(0, 2), bad_bodies()), min_size=1, max_size=4))
def test_bad_bodies_between_good_events_are_dead_lettered_and_the_good_ones_work(placed):
    project = b.project()
    offering_id = project["offerings"][0]["id"]
    good = [b.closed_won(project), b.status_changed(project, "in_progress")]
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp))
        good_decisions = []
        for slot in range(3):
            for _, body in [p for p in placed if p[0] == slot]:
                decision = deliver(world, body)
                [copy] = decision.publishes
                assert copy.exchange == TOPOLOGY.dead_letter_exchange
                assert copy.properties.headers["x-error-code"] in UNREADABLE_CODES
                assert copy.properties.headers["x-attempts"] == 1
            if slot < len(good):
                good_decisions.append(deliver(world, b.body(good[slot])))
        world.store.close()

    assert [outcome_types(d) for d in good_decisions] == [
        ["project.activated"],
        ["timesheet.provisioned"],
    ]
    assert json.loads(good_decisions[1].publishes[0].body)["data"]["offering_id"] == offering_id


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(good_events(["P-1", "P-2"]) | bad_bodies(), min_size=1, max_size=8))
def test_processing_any_mix_never_raises_and_never_dead_letters_a_good_event_as_unreadable(mix):
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp), tools=("harvest", "toggl", "clockify"))
        for item in mix:
            body = item if isinstance(item, bytes) else b.body(item)
            decision = deliver(world, body)
            copies = [p for p in decision.publishes if p.mandatory]
            codes = {c.properties.headers["x-error-code"] for c in copies}
            if isinstance(item, bytes):
                assert len(copies) == 1 and codes <= UNREADABLE_CODES
            else:
                assert not codes & UNREADABLE_CODES
        world.store.close()
