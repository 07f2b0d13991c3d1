"""What the CRM conformance suite needs from each CRM: its adapter pointed at its fake (two
records a page, so every list spans pages), and a CRM-neutral way to seed deals."""

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

    def seed(self, name, *, client, items, owner=None, place=OPEN, team=None, hours=None):
        stage = {OPEN: "qualifiedtobuy", WON: "closedwon", LOST: "closedlost"}[place]
        company = self.fake.add_company(client) if client else None
        line_items = [
            self.fake.add_line_item(n, q, **({self.hours_property: hours} if hours else {}))
            for n, q in items
        ]
        extra = {self.team_property: team} if team else {}
        owner_id = self.fake.add_owner(owner) if owner else None
        return self.fake.add_deal(
            name, stage, company=company, line_items=line_items, owner=owner_id, **extra
        )

    def missing_deal_id(self) -> str:
        return "99999999999"


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

    def seed(self, name, *, client, items, owner=None, place=OPEN, team=None, hours=None):
        org = self.fake.add_organization(client) if client else None
        user = self.fake.add_user(owner) if owner else None
        extra = {self.team_property: team} if team else {}
        deal = self.fake.add_deal(
            name, status=place, stage_id=3, org_id=org, user_id=user, products=items, **extra
        )
        if hours:
            for row in self.fake.deal_products[deal]:
                row[self.hours_property] = hours
        return str(deal)

    def set_modified(self, deal_id: str, when: datetime) -> None:
        """The deal's last change was at ``when``, as its changed-since listing shows it."""
        self.fake.set_update_time(int(deal_id), when)

    def missing_deal_id(self) -> str:
        return "987654321"


class SalesforceHarness:
    crm_name = "salesforce"
    team_property = "Delivery_Team__c"
    hours_property = "Hours__c"

    def __init__(self):
        self.fake = FakeSalesforce("00Dconformance!token", page_size=2, rate_limit=(1000, 1.0))
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

    def seed(self, name, *, client, items, owner=None, place=OPEN, team=None, hours=None):
        stage = {OPEN: "Qualification", WON: "Closed Won", LOST: "Closed Lost"}[place]
        account = self.fake.add_account(client) if client else None
        user = self.fake.add_user(owner) if owner else None
        extra = {self.team_property: team} if team else {}
        deal = self.fake.add_opportunity(
            name, stage, won=place == WON, closed=place != OPEN, account=account, owner=user,
            line_items=items, **extra,
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


HARNESSES = {"hubspot": HubSpotHarness, "pipedrive": PipedriveHarness,
             "salesforce": SalesforceHarness}  # fmt: skip


def with_fields(crm: str, **overrides) -> CrmFields:
    return replace(DEFAULT_FIELDS[crm], **overrides)


def no_wait() -> tenacity.Retrying:
    return fast_retrying()
