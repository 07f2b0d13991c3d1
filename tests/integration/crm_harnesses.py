"""What the CRM conformance suite needs from each CRM: its adapter pointed at its fake (two
records a page, so every list spans pages), and a CRM-neutral way to seed deals.

A seeded item is ``(name, quantity)`` or ``(name, quantity, money)``, ``money`` a dict of
``price`` (the line item's total), ``unit_price`` and ``currency`` in neutral words (None: no
value; a key left out: the CRM's default); ``currency=`` on ``seed`` is the deal's."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import tenacity

from adapters.hubspot import HubSpotCrm
from adapters.pipedrive import PipedriveCrm
from adapters.salesforce import SalesforceCrm
from adapters.salesforce_session import SalesforceSession
from fakes.hubspot import FakeHubSpot
from fakes.pipedrive import FakePipedrive
from fakes.salesforce import FakeSalesforce
from handlers.crm_rules import DEFAULT_FIELDS
from handlers.ports import CrmFields
from tests.integration.harness import fast_retrying

# A deal's place, in neutral words: where each CRM puts it is the harness's business.
OPEN, WON, LOST = "open", "won", "lost"


def _priced(item: tuple) -> tuple[str, float, dict]:
    name, quantity, *money = item
    return name, quantity, money[0] if money else {}


def _renamed(money: dict, names: dict[str, str]) -> dict:
    return {names[k]: v for k, v in money.items() if k in names}


class HubSpotHarness:
    crm_name = "hubspot"
    team_property = "delivery_team"
    hours_property = "hours_sold"

    def __init__(self):
        self.fake = FakeHubSpot("pat-na1-conformance", page_size=2, rate_limit=(1000, 10.0))
        self.fake.start()

    def crm(self, *, retrying=None, token=None, fields: CrmFields | None = None) -> HubSpotCrm:
        return HubSpotCrm(
            token or self.fake.token,
            base_url=self.fake.origin,
            fields=fields or DEFAULT_FIELDS["hubspot"],
            retrying=retrying or fast_retrying(),
        )

    item_currency_apart = True  # a line item may name another currency than its deal
    money_names = {"price": "amount", "unit_price": "price",
                   "currency": "hs_line_item_currency_code"}  # fmt: skip

    def seed(self, name, *, client, items, owner=None, place=OPEN, team=None, hours=None,
             currency=None):  # fmt: skip
        stage = {OPEN: "qualifiedtobuy", WON: "closedwon", LOST: "closedlost"}[place]
        company = self.fake.add_company(client) if client else None
        line_items = []
        for n, q, money in map(_priced, items):
            extra = _renamed(money, self.money_names) | (
                {self.hours_property: hours} if hours else {}
            )
            line_items.append(self.fake.add_line_item(n, q, **extra))
        extra = {self.team_property: team} if team else {}
        extra |= {"deal_currency_code": currency} if currency else {}
        owner_id = self.fake.add_owner(owner) if owner else None
        return self.fake.add_deal(
            name, stage, company=company, line_items=line_items, owner=owner_id, **extra
        )

    def missing_deal_id(self) -> str:
        return "99999999999"

    def set_account_currency(self, code: str) -> None:
        self.fake.company_currency = code

    def deal_url(self, deal_id: str) -> str:
        return f"https://app.hubspot.com/contacts/{self.fake.portal_id}/record/0-3/{deal_id}"


class PipedriveHarness:
    crm_name = "pipedrive"
    team_property = "5f1c0e8a9b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e"  # custom fields have hash keys
    hours_property = "hours"

    def __init__(self):
        self.fake = FakePipedrive("pd-conformance-token", page_size=2, rate_limit=(1000, 2.0))
        self.fake.start()

    def crm(self, *, retrying=None, token=None, fields=None) -> PipedriveCrm:
        return PipedriveCrm(
            token or self.fake.token,
            base_url=self.fake.origin,
            fields=fields or DEFAULT_FIELDS["pipedrive"],
            retrying=retrying or fast_retrying(),
        )

    item_currency_apart = True
    money_names = {"price": "sum", "unit_price": "item_price", "currency": "currency"}

    def seed(self, name, *, client, items, owner=None, place=OPEN, team=None, hours=None,
             currency=None):  # fmt: skip
        org = self.fake.add_organization(client) if client else None
        user = self.fake.add_user(owner) if owner else None
        extra = {self.team_property: team} if team else {}
        products = [(n, q, _renamed(m, self.money_names)) for n, q, m in map(_priced, items)]
        deal = self.fake.add_deal(
            name, status=place, stage_id=3, org_id=org, user_id=user, products=products,
            currency=currency, **extra,
        )  # fmt: skip
        if hours:
            for row in self.fake.deal_products[deal]:
                row[self.hours_property] = hours
        return str(deal)

    def set_modified(self, deal_id: str, when: datetime) -> None:
        """The deal's last change was at ``when``, as its changed-since listing shows it."""
        self.fake.set_update_time(int(deal_id), when)

    def missing_deal_id(self) -> str:
        return "987654321"

    def set_account_currency(self, code: str) -> None:
        self.fake.default_currency = code

    def deal_url(self, deal_id: str) -> str:
        return f"https://fake-{self.fake.company_id}.pipedrive.com/deal/{deal_id}"


class SalesforceHarness:
    crm_name = "salesforce"
    team_property = "Delivery_Team__c"
    hours_property = "Hours__c"

    def __init__(self):
        self.fake = FakeSalesforce(
            "00Dconformance!token", page_size=2, rate_limit=(1000, 1.0), multi_currency=True
        )
        self.fake.add_field("Opportunity", self.team_property)
        self.fake.add_field("OpportunityLineItem", self.hours_property)
        self.fake.start()

    def crm(self, *, retrying=None, token=None, fields=None) -> SalesforceCrm:
        session = SalesforceSession(
            self.fake.origin,
            None,  # a static token: the OAuth flows have their own suite
            retrying=fast_retrying(),
            access_token=token or self.fake.token,
            instance_url=self.fake.origin,
        )
        return SalesforceCrm(
            session,
            fields=fields or DEFAULT_FIELDS["salesforce"],
            retrying=retrying or fast_retrying(),
        )

    # A line item's CurrencyIsoCode is its opportunity's (its price book entry's).
    item_currency_apart = False
    money_names = {"price": "TotalPrice", "unit_price": "UnitPrice"}

    def seed(self, name, *, client, items, owner=None, place=OPEN, team=None, hours=None,
             currency=None):  # fmt: skip
        stage = {OPEN: "Qualification", WON: "Closed Won", LOST: "Closed Lost"}[place]
        account = self.fake.add_account(client) if client else None
        user = self.fake.add_user(owner) if owner else None
        extra = {self.team_property: team} if team else {}
        line_items = [(n, q, _renamed(m, self.money_names)) for n, q, m in map(_priced, items)]
        deal = self.fake.add_opportunity(
            name, stage, won=place == WON, closed=place != OPEN, account=account, owner=user,
            line_items=line_items, currency=currency, **extra,
        )  # fmt: skip
        if hours:
            for row in self.fake.records["OpportunityLineItem"].values():
                if row["OpportunityId"] == deal:
                    row[self.hours_property] = hours
        return deal

    def set_modified(self, deal_id: str, when: datetime) -> None:
        """The deal's last change was at ``when``, as its changed-since listing shows it."""
        self.fake.set_modstamp(deal_id, when)

    def missing_deal_id(self) -> str:
        return "0065e00000ZZZZZAAA"

    def set_account_currency(self, code: str) -> None:
        """Records name no currency on a single-currency org: the org's is the one."""
        self.fake.set_currencies(code, multi_currency=False)

    def deal_url(self, deal_id: str) -> str:
        return f"{self.fake.origin}/lightning/r/Opportunity/{deal_id}/view"


HARNESSES = {"hubspot": HubSpotHarness, "pipedrive": PipedriveHarness,
             "salesforce": SalesforceHarness}  # fmt: skip


def with_fields(crm: str, **overrides) -> CrmFields:
    return replace(DEFAULT_FIELDS[crm], **overrides)


def no_wait() -> tenacity.Retrying:
    return fast_retrying()
