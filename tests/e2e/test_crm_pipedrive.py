"""Pipedrive as it runs since 2026-08-01, end to end: the ingress and the worker as
processes on the real RabbitMQ, the fake Pipedrive answering every retired v1 read with 410,
and webhooks v1 beside v2."""

from __future__ import annotations

import random

import pytest
import requests

from tests import crm_webhooks as crm
from tests.builders import rid
from tests.e2e.crm_stack import harvest_projects_of

pytestmark = pytest.mark.broker


def test_a_pipedrive_deal_provisions_while_every_v1_read_answers_410(
    stack, bus, pipedrive, harvest
):
    _, ingress = stack()
    owner = f"{rid('owner')}@example.com"
    harvest.add_user(owner)
    organization = rid("Globex")
    deal = pipedrive.add_deal(
        "Intranet", status="won", stage_id=5, org_id=pipedrive.add_organization(organization),
        user_id=pipedrive.add_user(owner), products=[("Design", 30), ("Build", 90)],
    )  # fmt: skip
    project_id = f"pipedrive:{deal}"
    company_id = str(random.randrange(10**6, 10**7))
    v1_read = requests.get(
        f"{pipedrive.origin}/api/v1/deals/{deal}",
        headers={"x-api-token": pipedrive.token},
        timeout=5,
    )
    assert v1_read.status_code == 410

    assert ingress.pipedrive(crm.pipedrive_deal_won(company_id, entity_id=str(deal))) == 200
    [activated] = bus.wait_for(1, project_id=project_id, type="project.activated")
    products = [str(p["id"]) for p in pipedrive.deal_products[deal]]
    assert activated["data"]["offering_ids"] == products

    pipedrive.set_status(deal, "won", stage_id=7)  # the rules map stage 7 to in_progress
    assert ingress.pipedrive(crm.pipedrive_deal_won(company_id, entity_id=str(deal))) == 200
    provisioned = bus.wait_for(2, project_id=project_id, type="timesheet.provisioned")

    assert all(p["data"]["team_assigned"] == [owner] for p in provisioned)
    assert sorted(p["budget"] for p in harvest_projects_of(harvest, organization)) == [30, 90]
    # The worker read only v2 (and v1 users); the one v1 deal read was ours, and it was 410.
    assert pipedrive.retired_reads() == [("GET", f"/api/v1/deals/{deal}", 410)]


def test_a_pipedrive_v1_webhook_activates_its_deal(stack, bus, pipedrive, harvest):
    _, ingress = stack()
    organization = rid("Initech")
    deal = pipedrive.add_deal(
        "Portal", status="won", stage_id=5, org_id=pipedrive.add_organization(organization),
        products=[("Setup", 12)],
    )  # fmt: skip
    project_id = f"pipedrive:{deal}"
    notification = crm.pipedrive_v1_deal(random.randrange(10**6, 10**7), id=deal)

    assert ingress.pipedrive(notification) == 200
    assert ingress.pipedrive({**notification, "retry": 1}) == 200  # Pipedrive's retry
    bus.wait_for(1, project_id=project_id, type="project.activated")
    bus.settle()
    activated = [
        o for o in bus.outcomes
        if o["type"] == "project.activated" and o["data"]["project_id"] == project_id
    ]  # fmt: skip
    # Both tries are one notification: one event id, so one outcome (re-announced, same id).
    assert {o["causationid"] for o in activated} == {activated[0]["causationid"]}
    assert {o["id"] for o in activated} == {activated[0]["id"]}
    activated = activated[0]

    assert activated["data"]["offering_ids"] == [
        str(p["id"]) for p in pipedrive.deal_products[deal]
    ]
    assert pipedrive.retired_reads() == []
