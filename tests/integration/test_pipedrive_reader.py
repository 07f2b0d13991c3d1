"""The Pipedrive reader against Pipedrive as it runs since 2026-08-01: v1 deal reads are
gone (the fake answers them 410), and a spent daily token budget is a long wait, not a burst
of re-sends. Each case fails on the v1 reader."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests

from adapters.http import HOLD_OFF_CEILING
from schemas.errors import CrmRecordNotFound, VendorUnavailable
from tests.builders import rid
from tests.integration.crm_harnesses import WON, PipedriveHarness, with_fields
from tests.integration.harness import fast_retrying


@pytest.fixture
def harness():
    harness = PipedriveHarness()
    yield harness
    harness.fake.stop()


def test_a_deal_reads_through_v2_and_never_touches_a_retired_v1_read(harness):
    client = rid("Globex")
    deal_id = harness.seed("Intranet", client=client, items=[("Design", 30), ("Build", 90)],
                           owner="ana@example.com", place=WON)  # fmt: skip

    deal = harness.crm().read_deal(deal_id)

    assert deal.project.client.name == client
    assert [m.email for m in deal.project.offerings[0].team] == ["ana@example.com"]
    assert harness.fake.retired_reads() == []
    assert harness.fake.requests_to("GET", rf"/api/v2/deals/{deal_id}") == 1
    assert harness.fake.requests_to("GET", r"/api/v1/users/\d+") == 1


@pytest.mark.parametrize(
    "path",
    ["/api/v1/deals/{deal}", "/api/v1/deals/{deal}/products", "/api/v1/organizations/1",
     "/api/v1/stages", "/api/v1/pipelines/1"],
)  # fmt: skip
def test_every_retired_v1_read_is_410_gone_in_pipedrives_error_shape(harness, path):
    deal_id = harness.seed("Old", client=rid("Acme"), items=[("A", 1)], place=WON)

    answer = requests.get(
        harness.fake.origin + path.format(deal=deal_id),
        headers={"x-api-token": harness.fake.token},
        timeout=5,
    )

    assert answer.status_code == 410
    assert answer.json()["success"] is False and answer.json()["error"]
    assert [status for _, _, status in harness.fake.retired_reads()] == [410]


def test_the_team_comes_from_a_custom_field_under_custom_fields(harness):
    deal_id = harness.seed("Team", client=rid("Acme"), items=[("A", 1)], place=WON,
                           team="bo@example.com")  # fmt: skip
    fields = with_fields("pipedrive", team_emails=harness.team_property)

    [offering] = harness.crm(fields=fields).read_deal(deal_id).project.offerings

    assert [m.email for m in offering.team] == ["bo@example.com"]


def test_a_deleted_deal_v2_still_shows_is_crm_record_not_found(harness):
    deal_id = harness.seed("Gone", client=rid("Acme"), items=[("A", 1)], place=WON)
    harness.fake.set_status(int(deal_id), "deleted")

    with pytest.raises(CrmRecordNotFound):
        harness.crm().read_deal(deal_id)


def test_a_spent_daily_budget_waits_until_the_reset_and_is_not_re_sent(harness):
    deal_id = harness.seed("Budget", client=rid("Acme"), items=[("A", 1)], place=WON)
    harness.fake.spend_daily_budget()
    two_pm = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
    reader = harness.crm(retrying=fast_retrying(attempts=4))
    reader.clock = lambda: two_pm

    with pytest.raises(VendorUnavailable) as raised:
        reader.read_deal(deal_id)

    assert raised.value.retry_after == 10 * 3600  # to midnight UTC
    assert raised.value.safe_to_retry is False
    assert harness.fake.throttled == 1  # one request, no burst of re-sends
    assert harness.fake.retired_reads() == []


def test_just_after_midnight_utc_a_still_spent_budget_looks_again_in_an_hour(harness):
    deal_id = harness.seed("Budget", client=rid("Acme"), items=[("A", 1)], place=WON)
    harness.fake.spend_daily_budget()
    reader = harness.crm()
    reader.clock = lambda: datetime(2026, 11, 28, 0, 10, tzinfo=UTC)

    with pytest.raises(VendorUnavailable) as raised:
        reader.read_deal(deal_id)

    assert raised.value.retry_after == 3600 > HOLD_OFF_CEILING


def test_a_burst_throttle_is_still_a_short_wait_and_retried(harness):
    deal_id = harness.seed("Burst", client=rid("Acme"), items=[("A", 1)], place=WON)
    harness.fake.throttle_next(1, retry_after=0)

    assert harness.crm().read_deal(deal_id).project is not None
    assert harness.fake.throttled == 1


def test_a_refilled_budget_reads_again(harness):
    deal_id = harness.seed("Later", client=rid("Acme"), items=[("A", 1)], place=WON)
    harness.fake.spend_daily_budget()
    with pytest.raises(VendorUnavailable):
        harness.crm().read_deal(deal_id)

    harness.fake.refill_daily_budget()

    assert harness.crm().read_deal(deal_id).project is not None
