"""``parse_inbound`` reads any bytes into an ``Inbound`` or refuses them with ``Unreadable``
and a one-line reason: never another exception, never a value the store cannot hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from schemas.errors import Unreadable
from schemas.inbound import parse_inbound
from schemas.json_body import MAX_DEPTH, depth, read_json
from tests import builders as b


def refused(body: bytes, **kw) -> Unreadable:
    with pytest.raises(Unreadable) as caught:
        parse_inbound(body, **kw)
    assert "\n" not in caught.value.message
    return caught.value


def closed_won_with(**offering_fields) -> dict:
    return b.closed_won(b.project(b.offering(**offering_fields)))


def at(when: datetime) -> dict:
    return b.closed_won(b.project(), time=when)


# -- finding 1: bodies json.loads cannot read ------------------------------------------------
def test_120_kb_of_open_brackets_is_not_json():
    error = refused(b"[" * 120_000)

    assert error.code == "not_json" and f"deeper than {MAX_DEPTH}" in error.message


def test_deep_nesting_inside_a_valid_event_is_not_json():
    event = b.closed_won(b.project())
    event["data"]["extra"] = json.loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))

    assert refused(b.body(event)).code == "not_json"


def test_a_6000_digit_number_is_invalid_data():
    raw = b.body(closed_won_with(budget_hours=1)).replace(b'"budget_hours": 1', b"")
    body = raw.replace(b'"sold": true', b'"sold": true, "budget_hours": ' + b"9" * 6000)

    error = refused(body)

    assert error.code == "invalid_data" and "digits" in error.message


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe{}", b'{"id": "\xed\xa0\x80"}', b'{"a": "\xc3\x28"}'],
    ids=["utf16-bom", "raw-surrogate", "bad-continuation"],
)
def test_bytes_that_are_not_utf8_are_not_json(body):
    assert refused(body).code == "not_json"


def test_brackets_inside_strings_do_not_count_as_nesting():
    event = b.closed_won(b.project(name="[" * 400 + '\\"{'))

    assert parse_inbound(b.body(event)).project_id == event["data"]["project"]["id"]
    assert depth(b'{"a": "[[[[\\"[[", "b": [[1]]}') == 3  # an escaped quote: the regex
    assert depth(b'{"a": "]]]]", "b": [[1]], "c": "[[["}') == 3  # none: split at quotes


def test_the_depth_scan_is_linear_on_a_body_of_escaped_quotes():
    body = b"[" * (MAX_DEPTH + 1) + b'"' + b'\\"' * 100_000

    started = datetime.now(UTC)
    with pytest.raises(Unreadable):
        read_json(body)

    assert datetime.now(UTC) - started < timedelta(seconds=2)


def test_an_ordinary_event_is_read_without_the_depth_scan(monkeypatch):
    def scanned(_body):
        raise AssertionError("scanned")

    monkeypatch.setattr("schemas.json_body.depth", scanned)

    parse_inbound(b.body(b.closed_won(b.project())))


# -- finding 9: times --------------------------------------------------------------------------
def test_an_event_an_hour_in_the_future_is_invalid_data():
    error = refused(b.body(at(datetime.now(UTC) + timedelta(hours=1))))

    assert error.code == "invalid_data" and error.message.startswith("time:")


def test_a_little_clock_skew_is_allowed_and_the_allowance_is_a_parameter():
    body = b.body(at(datetime.now(UTC) + timedelta(minutes=2)))

    parse_inbound(body)
    assert refused(body, clock_skew=timedelta(seconds=30)).code == "invalid_data"


@pytest.mark.parametrize(
    "time",
    ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59Z"],
)
def test_times_before_1970_are_invalid_data(time):
    event = b.closed_won(b.project())
    event["time"] = time

    assert refused(b.body(event)).code == "invalid_data"


@pytest.mark.parametrize("time", [0, 1700000000, 253402300800, True])
def test_a_time_that_is_a_number_is_not_a_cloudevent(time):
    event = b.closed_won(b.project())
    event["time"] = time

    error = refused(b.body(event))

    assert error.code == "invalid_envelope" and "RFC 3339" in error.message


def test_year_9999_with_a_negative_offset_is_invalid_data_not_an_overflow():
    event = b.closed_won(b.project())
    event["time"] = "9999-12-31T23:59:59-14:00"

    assert refused(b.body(event)).code == "invalid_data"


# -- finding 9: hours --------------------------------------------------------------------------
@pytest.mark.parametrize("number", [b"1e309", b"-1e309", b"NaN", b"Infinity", b"1000001"])
def test_budget_hours_that_are_infinite_nan_or_absurd_are_invalid_data(number):
    body = b.body(closed_won_with(budget_hours="HOURS")).replace(b'"HOURS"', number)

    error = refused(body)

    assert error.code == "invalid_data" and "budget_hours" in error.message


@pytest.mark.parametrize("number", [b"1e309", b"NaN", b"2e6"])
def test_team_hours_that_are_infinite_nan_or_absurd_are_invalid_data(number):
    event = closed_won_with(team=[b.member("ana@example.com", hours="HOURS")])

    error = refused(b.body(event).replace(b'"HOURS"', number))

    assert error.code == "invalid_data" and "hours" in error.message


def test_a_million_hours_is_still_a_budget():
    event = closed_won_with(budget_hours=1_000_000)

    assert parse_inbound(b.body(event)).data.project.offerings[0].budget_hours == 1_000_000


# -- finding 9: text the store cannot hold -----------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        ("id",),
        ("source",),
        ("data", "project", "id"),
        ("data", "project", "client", "name"),
        ("data", "project", "offerings", 0, "id"),
        ("data", "project", "offerings", 0, "kind"),
    ],
)
@pytest.mark.parametrize("bad", ["\x00", "\ud800", "\udfff"], ids=["nul", "high", "low"])
def test_nul_and_lone_surrogates_are_invalid_data(path, bad):
    event = b.closed_won(b.project())
    node = event
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = f"x{bad}y"

    error = refused(json.dumps(event).encode())

    assert error.code == "invalid_data" and path[-1] in error.message
    error.message.encode("utf-8")  # goes into a header as it is


def test_a_surrogate_pair_is_an_ordinary_character():
    event = b.closed_won(b.project(name="rocket \ud83d\ude80"))

    assert parse_inbound(json.dumps(event).encode()).data.project.name == "rocket \U0001f680"


def test_a_key_with_a_lone_surrogate_is_named_escaped():
    event = b.closed_won(b.project())
    event["data"]["\ud800"] = 1

    assert refused(json.dumps(event).encode()).message == "data.\\ud800: contains a lone surrogate"


# -- finding 9: dates --------------------------------------------------------------------------
def test_an_offering_that_starts_after_it_ends_is_invalid_data():
    event = closed_won_with(starts_on="2026-12-02", ends_on="2026-12-01")

    error = refused(b.body(event))

    assert error.code == "invalid_data" and "starts_on is after ends_on" in error.message


def test_an_offering_of_one_day_is_valid():
    event = closed_won_with(starts_on="2026-12-01", ends_on="2026-12-01")

    assert parse_inbound(b.body(event)).data.project.offerings[0].ends_on is not None
