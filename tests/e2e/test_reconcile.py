"""``provisioner crm reconcile`` end to end: the worker as a process on the real RabbitMQ,
the command as a process, fake CRMs and Harvest over HTTP. No webhook is ever sent: what
the sweep publishes is all the worker hears.

Each CRM is a parameter with its own seeding helper: a deal in the stage the rules map to
in_progress (``tests/e2e/crm_stack.RULES``), last modified when the test says."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from schemas.crm import rfc3339
from tests.builders import rid
from tests.e2e.crm_stack import IN_PROGRESS, harvest_projects_of

pytestmark = pytest.mark.broker


class HubSpotDeals:
    """Deals in the fake HubSpot, in a delivery stage, modified when the test says."""

    name = "hubspot"

    def __init__(self, fake):
        self.fake = fake

    def in_delivery(self, client: str, hours: list[int], modified: datetime | None = None):
        items = [self.fake.add_line_item(f"Work {h}", h) for h in hours]
        company = self.fake.add_company(client)
        deal = self.fake.add_deal(rid("Deal"), IN_PROGRESS, company=company, line_items=items)
        if modified is not None:
            self.fake.touch(deal, modified)
        return deal


class PipedriveDeals:
    """Won Pipedrive deals in stage 7 (in_progress), modified when the test says."""

    name = "pipedrive"

    def __init__(self, fake):
        self.fake = fake

    def in_delivery(self, client: str, hours: list[int], modified: datetime | None = None):
        org = self.fake.add_organization(client)
        products = [(f"Work {h}", h) for h in hours]
        deal = self.fake.add_deal(rid("Deal"), status="won", stage_id=7, org_id=org,
                                  products=products)  # fmt: skip
        if modified is not None:
            self.fake.set_update_time(deal, modified)
        return str(deal)


class SalesforceDeals:
    """Won Opportunities in the Delivery stage (in_progress), modified when the test says."""

    name = "salesforce"

    def __init__(self, fake):
        self.fake = fake

    def in_delivery(self, client: str, hours: list[int], modified: datetime | None = None):
        deal = self.fake.add_opportunity(
            rid("Deal"), "Delivery", won=True, account=self.fake.add_account(client),
            line_items=[(f"Work {h}", h) for h in hours],
        )  # fmt: skip
        if modified is not None:
            self.fake.set_modstamp(deal, modified)
        return deal


# CRM -> (seeding helper, its fake fixture)
SEEDERS = {
    "hubspot": (HubSpotDeals, "hubspot"),
    "pipedrive": (PipedriveDeals, "pipedrive"),
    "salesforce": (SalesforceDeals, "salesforce"),
}


@pytest.fixture(params=sorted(SEEDERS))
def crm(request):
    helper, fake = SEEDERS[request.param]
    return helper(request.getfixturevalue(fake))


@pytest.fixture
def worker(crm_env, spawn_worker):
    started = spawn_worker(**crm_env)
    started.wait_log("consuming")
    return started


def reconcile(crm_env, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "worker.commands", "crm", "reconcile", *argv],
        env={**os.environ, **crm_env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_deal_no_webhook_told_is_provisioned_by_one_sweep_and_a_second_makes_nothing_new(
    crm, worker, crm_env, bus, harvest
):
    since = datetime.now(UTC) - timedelta(days=1)
    told, missed = rid("Missed Co"), rid("Old Co")
    deal = crm.in_delivery(told, [8, 16])
    old = crm.in_delivery(missed, [4], modified=since - timedelta(days=2))

    first = reconcile(crm_env, "--crm", crm.name, "--since", rfc3339(since))

    assert first.returncode == 0, first.stderr
    line = first.stdout.splitlines()[-1]
    assert line.startswith(f"{crm.name} ") and "published 1, skipped 0" in line, first.stdout
    bus.wait_for(2, project_id=f"{crm.name}:{deal}", type="timesheet.provisioned", timeout=60)
    before = {o["id"] for o in bus.settle(quiet=1.0)}
    assert sorted(p["budget"] for p in harvest_projects_of(harvest, told)) == [8, 16]

    again = reconcile(crm_env, "--crm", crm.name, "--since", rfc3339(since))

    assert again.returncode == 0, again.stderr
    assert "published 1, skipped 0" in again.stdout  # the same id, which the worker knows
    after = bus.settle(quiet=2.0)
    assert {o["id"] for o in after} == before
    assert sorted(p["budget"] for p in harvest_projects_of(harvest, told)) == [8, 16]
    assert harvest_projects_of(harvest, missed) == []
    assert not [o for o in after if o["data"].get("project_id") == f"{crm.name}:{old}"]
    assert bus.dead_letters() == []


def test_a_dry_run_lists_the_deal_and_publishes_nothing(crm, worker, crm_env, bus, harvest):
    client = rid("Dry Co")
    deal = crm.in_delivery(client, [5])

    dry = reconcile(crm_env, "--crm", crm.name, "--since", "1h", "--dry-run")

    assert dry.returncode == 0, dry.stderr
    listed, summary = dry.stdout.splitlines()
    assert listed.startswith(f"would publish sweep-{deal}-") and f"deal {deal}" in listed
    assert "(dry run)" in summary and "would publish 1" in summary
    assert bus.settle(quiet=2.0) == []
    assert harvest_projects_of(harvest, client) == []
