"""``provisioner dlq`` on the real RabbitMQ: dead letters made by the real worker, by the
broker's delivery limit and by hand; replay and discard, and a replay killed halfway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pika
import pytest

from tests import builders as b
from worker.commands import main as cli
from worker.messages import (
    ATTEMPTS,
    COPY_ID,
    ERROR_CODE,
    ERROR_MESSAGE,
    FAILURES,
    FIRST_FAILED_AT,
    LAST_FAILED_AT,
    ORIGINAL_EXCHANGE,
    ORIGINAL_ROUTING_KEY,
    REPLAYS,
)
from worker.topology import DELIVERY_LIMIT


@pytest.fixture
def dlq(worker_env, monkeypatch, capsys) -> Callable[..., tuple[int, str, str]]:
    """``dlq("list", "--json")`` runs the CLI in this process: (exit status, stdout, stderr)."""
    for name, value in worker_env.items():
        monkeypatch.setenv(name, value)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = cli.main(["dlq", *args])
        out, err = capsys.readouterr()
        return status, out, err

    return run


def put_dead_letter(
    bus,
    event: dict | None = None,
    *,
    body: bytes | None = None,
    code: str = "vendor_auth",
    failed_ago: timedelta = timedelta(minutes=5),
    replays: int | None = None,
    message: str = "the tool said no",
    channel=None,
) -> str:
    """A dead letter as the worker writes it, through the dead-letter exchange (so into
    NS.dead-letter and the journal); returns its id."""
    event = event or b.provision_requested(b.project(), "O-1", tool="harvest")
    copy_id = uuid.uuid4().hex
    failed = (datetime.now(UTC) - failed_ago).isoformat()
    headers = {
        ERROR_CODE: code,
        ERROR_MESSAGE: message,
        ATTEMPTS: 1,
        FIRST_FAILED_AT: failed,
        LAST_FAILED_AT: failed,
        ORIGINAL_EXCHANGE: bus.topology.inbound,
        ORIGINAL_ROUTING_KEY: event["type"],
        FAILURES: [f"{failed} attempt 1: {code}: {message}"],
        COPY_ID: copy_id,
    }
    if replays is not None:
        headers[REPLAYS] = replays
    properties = pika.BasicProperties(
        content_type="application/cloudevents+json",
        message_id=event["id"],
        type=event["type"],
        delivery_mode=2,
        headers=headers,
    )
    exchange = bus.topology.dead_letter_exchange
    channel = channel or bus.channel
    channel.basic_publish(exchange, bus.topology.dead_letter, body or b.body(event), properties)
    return copy_id


def put_dead_letters(bus, events: list[dict], **fields) -> list[str]:
    """Many dead letters at once: published without waiting for each confirm, then awaited
    in the queue's count; returns their ids."""
    fast = bus.connection.channel()
    before = bus.queue_depth(bus.topology.dead_letter)
    ids = [put_dead_letter(bus, event, channel=fast, **fields) for event in events]
    deadline = time.monotonic() + 60
    while bus.queue_depth(bus.topology.dead_letter) < before + len(events):
        assert time.monotonic() < deadline, "the dead letters never all arrived"
        bus.connection.process_data_events(time_limit=0.05)
    fast.close()
    return ids


def take_all(bus, queue: str) -> list[tuple[pika.spec.Basic.GetOk, pika.BasicProperties, bytes]]:
    """Removes and returns every message in ``queue``."""
    taken = []
    while True:
        method, properties, body = bus.channel.basic_get(queue, auto_ack=True)
        if method is None:
            return taken
        taken.append((method, properties, body))


def json_lines(text: str) -> list[dict]:
    return [
        json.loads(line)
        for line in text.splitlines()
        if line.startswith("{") and line.endswith("}")
    ]


def steady(read: Callable[[], object], quiet: float = 1.0, timeout: float = 20.0):
    """``read()`` once it has returned the same value for ``quiet`` seconds: proves an absence."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"still changing after {timeout}s: {value!r}")
        time.sleep(0.05)
        if (now := read()) != value:
            value, since = now, time.monotonic()
    return value


# -- browsing -------------------------------------------------------------------------------
def test_list_shows_what_the_worker_dead_lettered_and_leaves_it_in_place(dlq, bus, start_worker):
    start_worker()
    unknown = b.event("invoice.paid", {"project_id": "P-1"})
    bus.publish(b"not json at all", routing_key="deal.closed_won")
    bus.publish(unknown)
    letters = bus.wait_dead_letters(2)

    status, out, _ = dlq("list")

    assert status == 0
    header, *rows, footer = out.splitlines()
    assert header.split() == [
        *("ID", "EVENT", "ID", "TYPE", "CODE", "ATTEMPTS", "FIRST", "FAILURE", "AGE")
    ]
    by_code = {row.split()[3]: row.split() for row in rows}
    assert set(by_code) == {"not_json", "unknown_type"}
    assert by_code["unknown_type"][1:3] == [unknown["id"], "invoice.paid"]
    assert by_code["not_json"][1:3] == ["-", "deal.closed_won"]  # no message id, no body id
    assert by_code["not_json"][4] == "1" and by_code["not_json"][-1].endswith("s")
    copy_ids = {headers[COPY_ID] for headers, _ in letters}
    assert {row[0] for row in by_code.values()} == {i[:12] for i in copy_ids}
    assert footer == f"2 in {bus.topology.dead_letter}"
    assert bus.dead_letters() == letters  # all still there, in the same order


def test_list_json_gives_one_object_a_line_with_the_full_id(dlq, bus):
    event = b.provision_requested(b.project(), "O-1")
    copy_id = put_dead_letter(bus, event, code="vendor_rejected", failed_ago=timedelta(hours=3))

    status, out, _ = dlq("list", "--json")

    [letter] = json_lines(out)
    assert status == 0 and out.count("\n") == 1
    assert letter["id"] == copy_id
    assert (letter["event_id"], letter["type"], letter["source"]) == (
        event["id"],
        "timesheet.provision_requested",
        "crm-test",
    )
    assert (letter["code"], letter["attempts"], letter["replays"]) == ("vendor_rejected", 1, 0)
    assert letter["message"] == "the tool said no"
    assert 3 * 3600 - 60 < letter["age_seconds"] < 3 * 3600 + 60
    assert letter["first_failed_at"].endswith("Z") and letter["last_failed_at"].endswith("Z")


def test_list_group_counts_by_code_and_type_biggest_group_first(dlq, bus):
    for _ in range(3):
        put_dead_letter(bus, code="vendor_auth")
    put_dead_letter(bus, b.closed_won(b.project()), code="client_ambiguous")

    status, out, _ = dlq("list", "--group")
    _, json_out, _ = dlq("list", "--group", "--json")

    assert status == 0
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["COUNT", "CODE", "TYPE"]
    assert [row.split()[:3] for row in rows] == [
        ["3", "vendor_auth", "timesheet.provision_requested"],
        ["1", "client_ambiguous", "deal.closed_won"],
    ]
    groups = json_lines(json_out)
    assert [(g["count"], g["code"]) for g in groups] == [
        (3, "vendor_auth"),
        (1, "client_ambiguous"),
    ]
    assert groups[0]["first_failed_at"] <= groups[0]["last_failed_at"]


def test_an_empty_dead_letter_queue_says_so_and_succeeds(dlq, bus):
    status, out, _ = dlq("list")
    json_status, json_out, json_err = dlq("list", "--json")

    assert status == 0 and "is empty" in out
    assert json_status == 0 and json_out == "" and "is empty" in json_err


def test_show_prints_the_body_headers_and_failure_history(dlq, bus, start_worker):
    start_worker()
    event = b.event("invoice.paid", {"project_id": "P-1"})
    bus.publish(event)
    [(headers, _)] = bus.wait_dead_letters(1)

    status, out, _ = dlq("show", headers[COPY_ID][:8])

    assert status == 0
    assert f"id               {headers[COPY_ID]}" in out
    assert "code             unknown_type" in out
    assert f"  message_id        {event['id']}" in out
    assert '  x-original-routing-key    "invoice.paid"' in out
    history = out.split("failure history\n")[1].split("\n\n")[0].splitlines()
    assert len(history) == 1 and "attempt 1: unknown_type" in history[0]
    assert f'  "id": "{event["id"]}",' in out  # the body, pretty-printed


def test_show_prints_a_body_that_is_not_json_safely_and_cut_short(dlq, bus):
    body = b"\x1b[31mred\x00" + b"x" * 10_000
    copy_id = put_dead_letter(bus, body=body, code="not_json")

    status, out, _ = dlq("show", copy_id)

    assert status == 0
    assert "\x1b" not in out and "\\x1b[31mred\\x00" in out
    assert f"body ({len(body)} bytes)" in out
    assert "… cut at 4000 of" in out


def test_an_unknown_or_ambiguous_id_fails_in_one_line(dlq, bus):
    ids = [put_dead_letter(bus) for _ in range(20)]
    shared = next(
        prefix
        for prefix in (i[:1] for i in ids)
        if sum(other.startswith(prefix) for other in ids) > 1
    )

    unknown = dlq("show", "zzzz")
    ambiguous = dlq("replay", shared)

    assert (
        unknown[0] == 1
        and unknown[2] == "provisioner: no dead letter has an id starting with 'zzzz'\n"
    )
    assert ambiguous[0] == 1 and ambiguous[2].count("\n") == 1 and "matches" in ambiguous[2]
    assert len(bus.dead_letters()) == 20


def test_broker_dead_letters_read_as_delivery_limit_exceeded(dlq, bus):
    event = b.closed_won(b.project())
    bus.publish(event)
    # A worker that dies on the message every time: the broker gives up after the limit.
    for _ in range(DELIVERY_LIMIT + 1):
        deadline = time.monotonic() + 10
        while (got := bus.channel.basic_get(bus.topology.work_queue))[0] is None:
            assert time.monotonic() < deadline, "the message never came back"
        bus.channel.basic_nack(got[0].delivery_tag, requeue=True)
    bus.wait_dead_letters(1)

    _, out, _ = dlq("list", "--json")
    [letter] = json_lines(out)
    status, shown, _ = dlq("show", letter["id"])
    [in_full] = json_lines(dlq("show", letter["id"], "--json")[1])

    assert letter["code"] == "delivery_limit_exceeded"
    assert letter["id"].startswith(f"{event['id']}.")  # no copy id: message id + body hash
    assert (letter["event_id"], letter["type"], letter["attempts"]) == (
        event["id"],
        "deal.closed_won",
        DELIVERY_LIMIT,
    )
    assert f"after {DELIVERY_LIMIT} deliveries" in letter["message"]  # the reason, in words
    # The journal's copy has lost x-death and its time (a stream on RabbitMQ 3.10 keeps no
    # array header); show reads the queue itself and has both.
    assert letter["first_failed_at"] is None and letter["age_seconds"] is None
    assert in_full["first_failed_at"] and in_full["age_seconds"] < 60
    assert in_full["code"] == "delivery_limit_exceeded" and in_full["history"]
    assert status == 0 and f"broker: delivery_limit from {bus.topology.work_queue} x1" in shown
    assert "killed or crashed while holding it" in shown


# -- replay and discard ---------------------------------------------------------------------
def test_replay_by_id_moves_exactly_that_message_to_the_work_queue(dlq, bus):
    wanted_event = b.provision_requested(b.project(), "O-1")
    wanted = put_dead_letter(bus, wanted_event, code="vendor_unavailable")
    other = put_dead_letter(bus)

    status, out, err = dlq("replay", wanted[:12])

    assert status == 0
    assert out.splitlines()[-1] == f"moved 1 (vendor_unavailable 1) to {bus.topology.inbound}"
    [(method, properties, body)] = take_all(bus, bus.topology.work_queue)
    assert body == b.body(wanted_event)
    assert method.routing_key == "timesheet.provision_requested"
    assert (properties.message_id, properties.type) == (wanted_event["id"], wanted_event["type"])
    assert properties.content_type == "application/cloudevents+json"
    headers = properties.headers
    assert headers[REPLAYS] == 1
    for dropped in (ERROR_CODE, ERROR_MESSAGE, ATTEMPTS, COPY_ID, LAST_FAILED_AT):
        assert dropped not in headers
    assert FIRST_FAILED_AT in headers and len(headers[FAILURES]) == 1
    assert [h[COPY_ID] for h, _ in bus.dead_letters()] == [other]
    [audit] = json_lines(err)
    assert audit["event"] == "dlq_replayed" and audit["id"] == wanted
    assert (audit["event_id"], audit["code"], audit["replays"]) == (
        wanted_event["id"],
        "vendor_unavailable",
        1,
    )
    assert audit["by"] and audit["at"]


def test_replay_all_with_a_code_moves_only_that_code(dlq, bus):
    auth = {put_dead_letter(bus, code="vendor_auth") for _ in range(3)}
    ambiguous = {put_dead_letter(bus, code="client_ambiguous") for _ in range(2)}

    status, out, err = dlq("replay", "--all", "--code", "vendor_auth")

    assert status == 0 and f"moved 3 (vendor_auth 3) to {bus.topology.inbound}" in out
    assert len(take_all(bus, bus.topology.work_queue)) == 3
    assert {h[COPY_ID] for h, _ in bus.dead_letters()} == ambiguous
    assert {a["id"] for a in json_lines(err)} == auth


def test_a_dry_run_says_what_would_move_and_moves_nothing(dlq, bus):
    ids = [put_dead_letter(bus) for _ in range(2)]

    status, out, err = dlq("replay", "--all", "--dry-run")

    assert status == 0
    assert [line.split()[2] for line in out.splitlines()[:2]] == ids
    assert "moved nothing (dry run)" in out and err == ""
    assert bus.queue_depth(bus.topology.work_queue) == 0
    assert [h[COPY_ID] for h, _ in bus.dead_letters()] == ids


def test_discard_without_yes_drops_nothing_and_with_yes_drops_them(dlq, bus):
    doomed = [put_dead_letter(bus) for _ in range(2)]
    kept = put_dead_letter(bus)

    refused = dlq("discard", *doomed)
    remaining_after_refusal = len(bus.dead_letters())
    status, out, err = dlq("discard", *(i[:12] for i in doomed), "--yes")

    assert refused[0] == 2 and "--yes" in refused[2]
    assert [line.split()[2] for line in refused[1].splitlines()] == doomed
    assert remaining_after_refusal == 3
    assert status == 0 and all(f"dropped {i}" in out for i in doomed)
    assert [h[COPY_ID] for h, _ in bus.dead_letters()] == [kept]
    assert [(a["event"], a["id"]) for a in json_lines(err)] == [
        ("dlq_discarded", i) for i in doomed
    ]
    assert bus.queue_depth(bus.topology.work_queue) == 0


def test_bad_usage_exits_2_and_touches_nothing(dlq, bus):
    letter = put_dead_letter(bus)

    assert dlq("replay")[0] == 2
    assert dlq("replay", letter, "--all")[0] == 2
    assert dlq("replay", letter, "--code", "vendor_auth")[0] == 2
    assert dlq("discard", "--yes")[0] == 2
    assert dlq("discard", letter, "--all", "--yes")[0] == 2
    assert len(bus.dead_letters()) == 1


def test_an_unreachable_broker_fails_in_one_line_without_the_password(dlq, monkeypatch):
    monkeypatch.setenv("AMQP_URL", "amqp://oncall:s3cret-pw@127.0.0.1:1/")

    status, out, err = dlq("replay", "--all")

    assert status == 1 and out == ""
    assert err.startswith("provisioner: broker unreachable at 127.0.0.1:1")
    assert err.count("\n") == 1 and "s3cret-pw" not in err


def test_a_replayed_poison_message_comes_back_once_with_one_replay(dlq, bus, start_worker):
    start_worker()
    bus.publish(b"{not json", routing_key="deal.closed_won")
    [(headers, _)] = bus.wait_dead_letters(1)

    status, _, _ = dlq("replay", headers[COPY_ID])

    assert status == 0
    back = steady(lambda: [h.get(REPLAYS, 0) for h, _ in bus.dead_letters()])
    assert back == [1]  # exactly one dead letter: it came back once and stays put
    [(again, body)] = bus.dead_letters()
    assert body == b"{not json" and again[ERROR_CODE] == "not_json" and again[ATTEMPTS] == 1
    assert again[COPY_ID] != headers[COPY_ID]
    assert bus.queue_depth(bus.topology.work_queue) == 0


def test_replay_killed_halfway_loses_no_message(bus, worker_env, tmp_path):
    # Replay pipelines its confirms (thousands a second), so it needs thousands to be killed
    # halfway; no slowdown is added.
    events = [b.closed_won(b.project()) for _ in range(5000)]
    put_dead_letters(bus, events)
    audit_log = tmp_path / "replay.err"
    with audit_log.open("wb") as stderr:  # a file, not a pipe: a full pipe would stall it
        replay = subprocess.Popen(
            [sys.executable, "-m", "worker.commands", "dlq", "replay", "--all"],
            env={**os.environ, **worker_env},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        deadline = time.monotonic() + 60
        # Killed once it has acked (and audited) 100: mid-run, with publishes in flight.
        while audit_log.read_bytes().count(b"\n") < 100:
            assert replay.poll() is None, "replay ended before it could be killed"
            assert time.monotonic() < deadline, "replay never moved 100 messages"
            time.sleep(0.005)
        replay.send_signal(signal.SIGKILL)
        replay.wait()

    def event_ids(queue: str) -> set[str]:
        return {p.message_id for _, p, _ in take_all(bus, queue)}

    # The broker returns the dead letters the killed channel held once it notices it gone.
    remaining = steady(lambda: bus.queue_depth(bus.topology.dead_letter), quiet=0.5)
    moved, kept = event_ids(bus.topology.work_queue), event_ids(bus.topology.dead_letter)
    assert len(kept) == remaining
    assert moved | kept == {e["id"] for e in events}  # duplicates allowed, losses not
    assert 100 <= len(moved) < len(events) and kept
    audited = {a["event_id"] for a in json_lines(audit_log.read_text())}
    assert audited and audited <= moved  # an audit line only for what really moved


def test_a_namespace_without_a_dead_letter_queue_fails_and_declares_nothing(dlq, monkeypatch):
    monkeypatch.setenv("PROVISIONER_NAMESPACE", f"t{uuid.uuid4().hex[:10]}")

    status, _, err = dlq("list")

    assert status == 1 and "does not exist: is PROVISIONER_NAMESPACE right?" in err


def test_a_bad_setting_exits_2_naming_the_variable(dlq, monkeypatch):
    monkeypatch.setenv("AMQP_URL", "http://oncall:s3cret-pw@rabbit/")

    status, _, err = dlq("list")

    assert status == 2 and err.startswith("provisioner: AMQP_URL:") and "s3cret" not in err


# -- bodies json.loads cannot read (issue 10, finding 1) ----------------------------------------
NESTED = b"[" * 120_000  # RecursionError in json.loads, under the 256 KiB limit


def huge_number_body() -> tuple[dict, bytes]:
    """A deal.closed_won whose budget is a 6,000-digit number: ValueError in json.loads."""
    event = b.closed_won(b.project(b.offering(budget_hours="HUGE")))
    return event, b.body(event).replace(b'"HUGE"', b"9" * 6000)


def test_every_dlq_command_works_with_bodies_json_cannot_read(dlq, bus):
    nested_event = b.closed_won(b.project())
    nested = put_dead_letter(bus, nested_event, body=NESTED, code="not_json")
    huge_event, huge_body = huge_number_body()
    huge = put_dead_letter(bus, huge_event, body=huge_body, code="invalid_data")

    listed = dlq("list")
    as_json = dlq("list", "--json")
    grouped = dlq("list", "--group")
    grouped_json = dlq("list", "--group", "--json")
    shown_nested = dlq("show", nested)
    shown_huge = dlq("show", huge)

    for status, _out, err in (listed, as_json, grouped, grouped_json, shown_nested, shown_huge):
        assert (status, err) == (0, "")
    assert {row.split()[3] for row in listed[1].splitlines()[1:-1]} == {"not_json", "invalid_data"}
    assert {line["id"] for line in json_lines(as_json[1])} == {nested, huge}
    assert {(g["code"], g["count"]) for g in json_lines(grouped_json[1])} == {
        ("not_json", 1),
        ("invalid_data", 1),
    }
    assert f"body ({len(NESTED)} bytes)" in shown_nested[1] and "b'[[[[" in shown_nested[1]
    assert f"body ({len(huge_body)} bytes)" in shown_huge[1] and "… cut at 4000 of" in shown_huge[1]

    dry_status, dry_out, _ = dlq("replay", "--all", "--dry-run")
    assert dry_status == 0 and "moved nothing (dry run)" in dry_out
    assert dlq("replay", nested)[0] == 0
    [(_, _, replayed)] = take_all(bus, bus.topology.work_queue)
    assert replayed == NESTED
    status, out, _ = dlq("discard", huge, "--yes")
    assert status == 0 and f"dropped {huge}" in out
    assert bus.dead_letters() == []


def test_the_worker_dead_letters_unreadable_bodies_at_the_first_delivery(dlq, bus, start_worker):
    start_worker()
    _, huge_body = huge_number_body()
    bus.publish(NESTED, routing_key="deal.closed_won")
    bus.publish(huge_body, routing_key="deal.closed_won")
    good = b.closed_won(b.project())
    bus.publish(good)

    [activated] = bus.wait_for(1, type="project.activated")
    letters = bus.wait_dead_letters(2)

    assert activated["data"]["project_id"] == good["data"]["project"]["id"]
    by_body = {body: headers for headers, body in letters}
    assert by_body[NESTED][ERROR_CODE] == "not_json" and by_body[NESTED][ATTEMPTS] == 1
    assert by_body[huge_body][ERROR_CODE] == "invalid_data" and by_body[huge_body][ATTEMPTS] == 1
    assert "x-death" not in by_body[NESTED]  # ours, not the broker's delivery limit
    status, out, _ = dlq("list", "--json")
    assert status == 0 and {line["code"] for line in json_lines(out)} == {
        "not_json",
        "invalid_data",
    }
