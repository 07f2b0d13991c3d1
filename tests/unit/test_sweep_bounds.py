"""``schemas.crm.whole_second``: a sweep window's bounds for the CRMs that keep their times
to the second (Pipedrive's ``updated_since``/``updated_until``, Salesforce's SOQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from schemas.crm import whole_second

ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))])


def parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@given(
    st.datetimes(timezones=ZONES, min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1))
)
def test_the_bounds_are_the_whole_seconds_around_a_time_in_utc(moment):
    below, above = parse(whole_second(moment, up=False)), parse(whole_second(moment, up=True))

    assert below <= moment <= above
    assert above - below == (timedelta(0) if moment.microsecond == 0 else timedelta(seconds=1))


def test_a_time_in_another_zone_is_written_in_utc():
    moment = datetime(2026, 12, 7, 18, 30, 15, 250_000, tzinfo=timezone(timedelta(hours=2)))

    assert whole_second(moment, up=False) == "2026-12-07T16:30:15Z"
    assert whole_second(moment, up=True) == "2026-12-07T16:30:16Z"
