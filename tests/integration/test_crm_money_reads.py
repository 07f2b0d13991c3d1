"""Where one CRM differs in how a deal's money and address are read: HubSpot's EU app
domain and its account details read once; a single-currency Salesforce org, whose records
carry no CurrencyIsoCode; a Salesforce team field the org lacks."""

from __future__ import annotations

import pytest

from fakes.hubspot import FakeHubSpot
from fakes.salesforce import FakeSalesforce
from schemas.errors import VendorRejected
from tests.builders import rid
from tests.integration.crm_harnesses import WON, HubSpotHarness, SalesforceHarness, with_fields


@pytest.fixture
def hubspot():
    harness = HubSpotHarness()
    try:
        yield harness
    finally:
        harness.fake.stop()


@pytest.fixture
def salesforce():
    harness = SalesforceHarness()
    try:
        yield harness
    finally:
        harness.fake.stop()


def test_an_eu_hosted_hubspot_account_links_deals_on_its_own_app_domain(hubspot):
    hubspot.fake.ui_domain = "app-eu1.hubspot.com"
    deal_id = hubspot.seed("EU", client=rid("Acme"), items=[("A", 1)], place=WON)

    url = hubspot.crm().read_deal(deal_id).project.url

    assert (
        url == f"https://app-eu1.hubspot.com/contacts/{hubspot.fake.portal_id}/record/0-3/{deal_id}"
    )


def test_hubspots_account_details_are_read_once_for_every_deal_and_the_sweep(hubspot):
    hubspot.set_account_currency("NOK")
    deals = [
        hubspot.seed(f"D{i}", client=rid("Acme"), items=[("A", 1, {"price": "10"})], place=WON)
        for i in range(3)
    ]
    crm = hubspot.crm()

    read = [crm.read_deal(d).project for d in deals]

    assert crm.account_id() == str(hubspot.fake.portal_id)
    assert {p.offerings[0].price.currency for p in read} == {"NOK"}
    assert hubspot.fake.requests_to("GET", r"/account-info/v3/details") == 1


def test_a_single_currency_salesforce_org_is_never_asked_for_a_currency_field(salesforce):
    salesforce.set_account_currency("JPY")
    items = [("Build", 4, {"price": "400000", "unit_price": "100000"})]
    deals = [salesforce.seed(f"D{i}", client=rid("Acme"), items=items, place=WON) for i in "ab"]
    crm = salesforce.crm()

    offerings = [crm.read_deal(d).project.offerings[0] for d in deals]

    assert {(o.price.amount, o.price.currency) for o in offerings} == {("400000.00", "JPY")}
    queries = [r.arg("q") for r in salesforce.fake.received if r.arg("q")]
    assert not [q for q in queries if "CurrencyIsoCode FROM OpportunityLineItem" in q]
    assert queries.count("SELECT DefaultCurrencyIsoCode FROM Organization") == 1  # read once


def test_a_salesforce_team_field_the_org_lacks_is_rejected_naming_the_setting(salesforce):
    deal_id = salesforce.seed("Team", client=rid("Acme"), items=[("A", 1)], place=WON)
    fields = with_fields("salesforce", team_emails="No_Such_Field__c")

    with pytest.raises(VendorRejected) as raised:
        salesforce.crm(fields=fields).read_deal(deal_id)
    assert "No_Such_Field__c" in raised.value.message and "team_emails" in raised.value.message


def test_fakes_serve_money_with_the_vendors_types():
    hubspot, salesforce = FakeHubSpot(), FakeSalesforce(multi_currency=True)
    item = hubspot.add_line_item("A", 2, amount=20, price="10.00")
    opportunity = salesforce.add_opportunity("O", line_items=[("A", 3)], currency="EUR")

    assert hubspot.line_items[item] | {} == {"name": "A", "quantity": "2", "amount": "20",
                                             "price": "10.00"}  # fmt: skip
    [row] = [r for r in salesforce.records["OpportunityLineItem"].values()]
    assert (row["UnitPrice"], row["TotalPrice"], row["CurrencyIsoCode"]) == (100, 300, "EUR")
    assert salesforce.records["Opportunity"][opportunity]["CurrencyIsoCode"] == "EUR"
