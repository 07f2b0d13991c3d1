"""A CRM's price as the contract's decimal string: exact, to the cent at least, never
through a float; what is no price is none, never an error."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapters.deal_mapping import LineItem, amount, currency, snapshot
from handlers.crm_rules import CrmRules
from handlers.ports import StageFacts
from schemas.json_body import read_json


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("12000.00", "12000.00"),  # HubSpot's string, as it is
        ("12000", "12000.00"),
        (12000, "12000.00"),  # a JSON integer
        (Decimal("0.1"), "0.10"),  # a JSON number read exactly
        ("0.125", "0.125"),  # finer than a cent is kept, not rounded
        ("0.1000000", "0.10"),
        ("1e3", "1000.00"),
        (" 5 ", "5.00"),
        (Decimal("1234567890123.456789"), "1234567890123.456789"),
    ],
)
def test_a_price_becomes_an_exact_decimal_string_to_the_cent_at_least(given, expected):
    assert amount(given) == expected


@pytest.mark.parametrize(
    "given",
    [None, "", "NaN", "Infinity", "-1", "1,000.00", "twelve", True, [], 0.1,
     "12345678901234", "0.1234567"],
)  # fmt: skip
def test_what_is_no_exact_non_negative_price_is_no_price(given):
    assert amount(given) is None


def test_a_json_number_read_exactly_keeps_digits_a_float_would_lose():
    body = b'{"sum": 1234567890123.456789, "item_price": 0.10}'

    exact = read_json(body, exact_numbers=True)

    assert amount(exact["sum"]) == "1234567890123.456789"
    assert amount(exact["item_price"]) == "0.10"
    assert amount(read_json(body)["sum"]) is None  # a float is refused, not trusted


@pytest.mark.parametrize(("given", "expected"), [("EUR", "EUR"), (" eur ", "EUR"),
                         ("EURO", None), ("", None), (None, None), (978, None)])  # fmt: skip
def test_a_currency_is_three_capitals_or_none(given, expected):
    assert currency(given) == expected


def read(items, *, deal_currency=None, account=lambda: None, url=None):
    return snapshot(
        "hubspot", "1", name="Deal", client=("9", "Acme"), items=items, team=[],
        stage=StageFacts("closedwon", won=True), url=url, deal_currency=deal_currency,
        account_currency=account,
    )  # fmt: skip


def test_the_accounts_currency_is_asked_only_when_a_priced_item_and_its_deal_name_none():
    asked = []

    def account():
        asked.append(1)
        return "USD"

    unpriced = [LineItem("1", "A", 1), LineItem("2", "B", 2)]
    assert read(unpriced, account=account).project is not None
    assert read([LineItem("1", "A", 1, price="5")], deal_currency="EUR", account=account)
    assert asked == []

    priced = [LineItem(str(i), f"I{i}", 1, price="5") for i in range(3)]
    project = read(priced, account=account).project
    assert {o.price.currency for o in project.offerings} == {"USD"} and asked == [1]


def test_a_price_with_no_currency_anywhere_is_no_price_and_the_deal_still_reads():
    project = read([LineItem("1", "A", 1, price="5", unit_price="5")]).project

    assert project is not None and project.offerings[0].price is None


def test_an_unreadable_price_leaves_the_offering_without_one_and_the_deal_readable():
    item = LineItem("1", "A", 4, price="a lot", unit_price="-3", currency="EUR")

    [offering] = read([item]).project.offerings

    assert (offering.price, offering.hourly_rate, offering.budget_hours) == (None, None, 4)


def test_the_rules_may_rename_price_rate_and_currency_and_keep_the_other_defaults():
    rules = CrmRules.model_validate(
        {"salesforce": {"fields": {"price": "Fee__c", "currency": "Billing_Currency__c"}}}
    )

    fields = rules.fields("salesforce")
    assert (fields.price, fields.unit_price, fields.currency) == (
        "Fee__c", "UnitPrice", "Billing_Currency__c"
    )  # fmt: skip
    with pytest.raises(ValueError, match="fields.price"):
        CrmRules.model_validate({"salesforce": {"fields": {"price": "Fee__c; DROP"}}})
