"""How a dead letter reads, without a broker: ids, verdicts, groups, ages, the progress bar."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pika
import pytest

from schemas.outbound import OUTBOUND_TYPES
from worker.commands import audit, dlq_letters, dlq_output, journal, output
from worker.commands import dead_letters as dl
from worker.topology import DELIVERY_LIMIT

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def letter(
    tag: int = 1, *, headers: dict | None = None, body: bytes = b"{}", **props
) -> dl.DeadLetter:
    return dl.read(tag, pika.BasicProperties(headers=headers, **props), body)


def test_a_worker_dead_letter_reads_its_verdict_from_our_headers():
    event = {"id": "e-1", "source": "crm", "type": "deal.closed_won"}
    found = letter(
        headers={
            "x-copy-id": "abc123",
            "x-error-code": "vendor_auth",
            "x-error-message": "401 from Harvest",
            "x-attempts": 3,
            "x-replays": 2,
            "x-first-failed-at": "2026-11-29T10:00:00+00:00",
            "x-last-failed-at": "2026-11-29T11:00:00+00:00",
            "x-failure-history": ["one", "two"],
        },
        body=json.dumps(event).encode(),
    )

    assert (found.id, found.event_id, found.type, found.source) == (
        "abc123",
        "e-1",
        "deal.closed_won",
        "crm",
    )
    assert (found.code, found.message, found.attempts, found.replays) == (
        "vendor_auth",
        "401 from Harvest",
        3,
        2,
    )
    assert found.age_seconds(NOW) == 3600 and found.history == ["one", "two"]
    assert found.summary(NOW)["first_failed_at"] == "2026-11-29T10:00:00Z"


def test_a_broker_dead_letter_is_delivery_limit_exceeded_with_a_stable_id():
    death = {
        "count": 1,
        "reason": "delivery_limit",
        "queue": "ns.worker",
        "time": NOW - timedelta(minutes=5),
    }
    first = letter(headers={"x-death": [death]}, body=b"x", message_id="m-1")
    again = letter(headers={"x-death": [death]}, body=b"x", message_id="m-1")

    assert first.code == "delivery_limit_exceeded" and first.attempts == DELIVERY_LIMIT
    assert f"after {DELIVERY_LIMIT} deliveries from ns.worker" in first.message
    assert "killed or crashed" in first.message
    assert first.id == again.id and first.id.startswith("m-1.")
    assert first.history == [f"{dl.iso(death['time'])} broker: delivery_limit from ns.worker x1"]
    assert dl.human_age(first.age_seconds(NOW)) == "5m"


def test_an_id_prefix_must_name_exactly_one_dead_letter():
    letters = [letter(i, headers={"x-copy-id": cid}) for i, cid in enumerate(["aa1", "aa2", "b"])]

    assert [x.id for x in dl.select(letters, ["b", "aa2"])] == ["aa2", "b"]
    with pytest.raises(dl.SelectionError, match="matches 2"):
        dl.select(letters, ["aa"])
    with pytest.raises(dl.SelectionError, match="no dead letter"):
        dl.select(letters, ["c"])


def test_short_ids_grow_past_twelve_characters_only_where_they_would_clash():
    ids = ["0123456789abXYZ", "0123456789abXQ", "ffffffffffffffff"]
    letters = [letter(i, headers={"x-copy-id": cid}) for i, cid in enumerate(ids)]

    assert dl.short_ids(letters) == {
        "0123456789abXYZ": "0123456789abXY",
        "0123456789abXQ": "0123456789abXQ",
        "ffffffffffffffff": "ffffffffffff",
    }


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-"), (-3, "0s"), (59, "59s"), (60, "1m"), (7200, "2h"), (3 * 86400, "3d")],
)
def test_ages_read_like_a_person_says_them(seconds, shown):
    assert dl.human_age(seconds) == shown


def test_groups_put_the_biggest_first():
    def coded(code: str, type_: str) -> dl.DeadLetter:
        return letter(headers={"x-error-code": code}, type=type_)

    found = dl.groups([coded("a", "t1"), coded("b", "t1"), coded("b", "t1"), coded("b", "t2")])

    assert [(g["count"], g["code"], g["type"]) for g in found] == [
        (2, "b", "t1"),
        (1, "a", "t1"),
        (1, "b", "t2"),
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_shows_only_at_a_terminal_and_only_for_long_replays(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    long, short = dlq_output.Progress(40), dlq_output.Progress(5)
    for _ in range(20):
        long.advance()
        short.advance()

    assert terminal.getvalue().endswith("\r[###############...............] 20/40")
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not dlq_output.Progress(40).shown


def test_bodies_json_cannot_read_are_read_and_shown_as_bytes():
    nested = letter(body=b"[" * 120_000, message_id="e-nested")
    huge = letter(body=b'{"type": "deal.closed_won", "n": ' + b"9" * 6000 + b"}")

    assert (nested.event_id, nested.type, nested.source) == ("e-nested", None, None)
    assert huge.type is None  # the body could not be read, so nothing comes from it
    assert "b'[[[[" in dl.render(nested, NOW) and "… cut at 4000 of" in dl.render(huge, NOW)


def test_text_from_a_body_that_cannot_be_printed_is_made_printable(capsys):
    body = b'{"id": "e-1", "source": "crm\\ud800", "type": "deal\\u001b[2J.closed_won"}'
    found = letter(body=body)

    shown = dl.render(found, NOW)
    output.table(("TYPE", "SOURCE"), [(found.type, found.source)])

    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[2J" in out
    assert "\ud800" not in found.source and "\x1b" not in shown
    out.encode("utf-8")


# -- the journal (issue 14, item 5) -------------------------------------------------------------
def journal_entry(offset: int, copy_id: str, **props):
    return (offset, pika.BasicProperties(headers={"x-copy-id": copy_id}, **props), b"{}")


def removal(offset: int, *copy_ids: str, kind: str = "dlq.replayed"):
    letters = [{"dead_letter_id": c} for c in copy_ids]
    body = json.dumps({"type": kind, "data": {"count": len(letters), "letters": letters}})
    return (offset, pika.BasicProperties(type=kind), body.encode())


def test_the_journal_is_its_letters_minus_one_letter_for_each_removal():
    entries = [
        journal_entry(0, "a"),
        journal_entry(1, "b"),
        journal_entry(2, "a"),  # an identical copy shares the id
        removal(3, "a"),
        removal(4, "b", kind="dlq.discarded"),
        journal_entry(5, "c"),
        removal(6, "zzz"),  # a removal of a letter the journal never had removes nothing
        (7, pika.BasicProperties(type="dlq.replayed"), b"not json"),
    ]

    assert [x.id for x in journal._fold(entries)] == ["a", "c"]


def test_one_audit_event_removes_every_letter_it_names_once_per_item():
    entries = [
        journal_entry(0, "a"),
        journal_entry(1, "b"),
        journal_entry(2, "a"),
        journal_entry(3, "c"),
        journal_entry(4, "d"),
        removal(5, "a", "b", "a", "zzz"),  # both copies of a, b; zzz was never there
        removal(6, "c", kind="dlq.discarded"),
    ]

    assert [x.id for x in journal._fold(entries)] == ["d"]


def test_an_audit_event_of_another_shape_removes_nothing():
    # The one-letter shape (data.dead_letter_id) never shipped; someone else's event of the
    # same type must not take letters from the view.
    single = json.dumps({"type": "dlq.replayed", "data": {"dead_letter_id": "a"}}).encode()
    odd = json.dumps({"type": "dlq.replayed", "data": {"letters": [{"id": "a"}]}}).encode()
    entries = [
        journal_entry(0, "a"),
        (1, pika.BasicProperties(type="dlq.replayed"), single),
        (2, pika.BasicProperties(type="dlq.replayed"), odd),
    ]

    assert [x.id for x in journal._fold(entries)] == ["a"]


def test_the_view_says_how_the_journal_and_the_queue_disagree():
    letters = [letter(i, headers={"x-copy-id": str(i)}) for i in range(3)]

    assert journal.View(letters, 3, "ns.dead-letter").disagreement() is None
    fewer = journal.View(letters, 1, "ns.dead-letter").disagreement()
    more = journal.View(letters, 5, "ns.dead-letter").disagreement()
    assert (
        fewer.startswith("ns.dead-letter holds 1 messages, the journal lists 3")
        and "purge" in fewer
    )
    assert "2 came in without the journal" in more


def test_the_journal_copy_of_a_broker_dead_letter_reads_its_reason_from_first_death():
    limit = letter(
        headers={"x-first-death-reason": "delivery_limit", "x-first-death-queue": "ns.worker"}
    )
    after_retry = letter(
        headers={"x-first-death-reason": "expired", "x-first-death-queue": "ns.retry.10000ms"}
    )

    assert (limit.code, limit.attempts) == ("delivery_limit_exceeded", DELIVERY_LIMIT)
    assert after_retry.code == "broker_dead_lettered" and "dlq show" in after_retry.message


@pytest.mark.parametrize(
    ("text", "ago"),
    [("45s", 45), ("30m", 1800), ("2h", 7200), ("3d", 3 * 86400), ("1w", 7 * 86400)],
)
def test_since_takes_a_duration(text, ago):
    assert dlq_letters.since(text, NOW) == NOW - timedelta(seconds=ago)


def test_since_takes_a_timestamp_and_refuses_anything_else():
    assert dlq_letters.since("2026-11-29T10:00:00Z", NOW) == NOW - timedelta(hours=2)
    assert dlq_letters.since("2026-11-29T10:00:00", NOW) == NOW - timedelta(hours=2)  # read as UTC
    with pytest.raises(output.Fail) as failed:
        dlq_letters.since("yesterday", NOW)
    assert failed.value.status == output.USAGE


def audited_letter(copy_id: str, event_id: str) -> dl.DeadLetter:
    return letter(
        headers={"x-copy-id": copy_id, "x-error-code": "vendor_auth", "x-replays": 1},
        message_id=event_id,
        type="deal.closed_won",
    )


def test_an_audit_event_of_one_letter_names_it_as_subject_and_its_event_as_cause():
    found = audited_letter("c-1", "e-1")
    record = audit.record([audit.replayed(found, routing_key="deal.closed_won")], by="oncall")
    published = audit.event(record, exchange="ns.events", source="provisioner-prod")
    body = json.loads(published.body)

    assert OUTBOUND_TYPES["dlq.replayed"] is type(record)
    assert (published.exchange, published.routing_key) == ("ns.events", "dlq.replayed")
    assert published.properties.message_id == body["id"]
    assert (body["source"], body["causationid"], body["subject"]) == (
        "provisioner-prod",
        "e-1",
        "c-1",
    )
    data = body["data"]
    assert (data["by"], data["count"]) == ("oncall", 1)
    assert data["letters"] == [
        {
            "dead_letter_id": "c-1",
            "event_id": "e-1",
            "event_type": "deal.closed_won",
            "error_code": "vendor_auth",
            "replays": 2,
            "routing_key": "deal.closed_won",
        }
    ]
    OUTBOUND_TYPES["dlq.replayed"].model_validate(data)


def test_an_audit_event_of_several_letters_names_them_all_and_no_single_cause():
    found = [audited_letter(f"c-{i}", f"e-{i}") for i in range(3)]
    record = audit.record([audit.discarded(x) for x in found], by="oncall")
    published = audit.event(record, exchange="ns.events", source="provisioner-prod")
    body = json.loads(published.body)

    assert body["type"] == published.routing_key == "dlq.discarded"
    assert "causationid" not in body and "subject" not in body
    assert body["data"]["count"] == 3
    assert [x["dead_letter_id"] for x in body["data"]["letters"]] == ["c-0", "c-1", "c-2"]
    assert all("routing_key" not in x and x["replays"] == 1 for x in body["data"]["letters"])
    OUTBOUND_TYPES["dlq.discarded"].model_validate(body["data"])
    lines = [json.loads(x) for x in audit.lines(record, body["id"]).splitlines()]
    assert [(x["event"], x["id"], x["audit_id"]) for x in lines] == [
        ("dlq_discarded", f"c-{i}", body["id"]) for i in range(3)
    ]


def test_an_audit_record_refuses_a_count_that_is_not_its_letters():
    item = audit.discarded(audited_letter("c-1", "e-1")).model_dump()
    model = OUTBOUND_TYPES["dlq.discarded"]

    with pytest.raises(ValueError, match="count 2 but 1 letters"):
        model.model_validate({"by": "x", "at": NOW, "count": 2, "letters": [item]})
    with pytest.raises(ValueError):
        model.model_validate({"by": "x", "at": NOW, "count": 0, "letters": []})
