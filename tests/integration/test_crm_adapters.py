"""What one CRM adapter does that the others do not: HubSpot's pipelines and batch reads,
Pipedrive's deleted status, Salesforce's throttling that is a 403."""

from __future__ import annotations

import pytest

from handlers.crm_rules import CrmRules
from schemas.errors import CrmRecordNotFound, VendorUnavailable
from tests.builders import rid
from tests.integration.crm_harnesses import (
    WON,
    HubSpotHarness,
    PipedriveHarness,
    SalesforceHarness,
)


@pytest.fixture
def hubspot():
    harness = HubSpotHarness()
    yield harness
    harness.fake.stop()


def test_a_custom_pipelines_won_stage_is_closed_won_without_a_rules_entry(hubspot):
    fake = hubspot.fake
    fake.add_pipeline(
        "Renewals", [("4471", "Renewed", "true", "1.0"), ("4472", "Gone", "true", "0.0")]
    )
    won = fake.add_deal("Renewal", "4471", company=fake.add_company(rid("Acme")))
    gone = fake.add_deal("Churn", "4472", company=fake.add_company(rid("Acme")))
    reader = hubspot.crm()

    won_deal, gone_deal = reader.read_deal(won), reader.read_deal(gone)

    assert (won_deal.stage.won, won_deal.stage.label) == (True, "Renewed")
    assert CrmRules().transition("hubspot", won_deal.stage) == "closed_won"
    assert gone_deal.stage.lost and CrmRules().transition("hubspot", gone_deal.stage) is None


def test_pipelines_are_read_once_and_again_only_for_a_stage_they_lack(hubspot):
    fake = hubspot.fake
    reader = hubspot.crm()
    for _ in range(3):
        reader.read_deal(hubspot.seed("Deal", client=rid("Acme"), items=[], place=WON))
    assert fake.requests_to("GET", "/crm/v3/pipelines/deals") == 1

    fake.add_pipeline("New", [("9901", "Kick-off", "false", "0.5")])
    deal = reader.read_deal(fake.add_deal("Later", "9901", company=fake.add_company("X")))

    assert deal.stage.label == "Kick-off"
    assert fake.requests_to("GET", "/crm/v3/pipelines/deals") == 2


def test_line_items_are_read_a_hundred_at_a_time(hubspot):
    deal_id = hubspot.seed("Big", client=rid("Acme"), items=[(f"I{i}", 1) for i in range(130)],
                           place=WON)  # fmt: skip
    hubspot.fake.page_size = 500

    deal = hubspot.crm().read_deal(deal_id)

    assert len(deal.project.offerings) == 130
    assert hubspot.fake.requests_to("POST", "/crm/v3/objects/line_items/batch/read") == 2


def test_a_pipedrive_deal_with_status_deleted_is_not_found():
    harness = PipedriveHarness()
    try:
        deal_id = harness.seed("Gone", client=rid("Acme"), items=[("A", 1)], place="deleted")
        with pytest.raises(CrmRecordNotFound):
            harness.crm().read_deal(deal_id)
    finally:
        harness.fake.stop()


def test_salesforce_out_of_api_calls_is_throttling_not_a_refused_token():
    harness = SalesforceHarness()
    try:
        deal_id = harness.seed("Busy", client=rid("Acme"), items=[("A", 1)], place=WON)
        harness.fake.throttle_next(10)
        with pytest.raises(VendorUnavailable) as raised:
            harness.crm().read_deal(deal_id)
        assert "throttled (403)" in raised.value.message
    finally:
        harness.fake.stop()
