"""From a CRM's webhook to timesheet projects, on the real RabbitMQ with the ingress and the
worker as processes, and fake CRM and Harvest servers over HTTP."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter

import pytest

from tests import crm_webhooks as crm
from tests.builders import rid
from tests.chaos.evidence import harvest_marker
from tests.e2e.bus import wait_until
from tests.e2e.crm_stack import IN_PROGRESS, harvest_projects_of, hubspot_event

pytestmark = pytest.mark.broker


def test_hubspot_closed_won_then_in_progress_gives_one_harvest_project_per_line_item(
    stack, bus, hubspot, harvest
):
    _, ingress = stack()
    owner = f"{rid('owner')}@example.com"
    harvest.add_user(owner)
    company = rid("Acme")
    items = [hubspot.add_line_item("Discovery", 40), hubspot.add_line_item("Build", 120)]
    deal = hubspot.add_deal(
        "Website Rebuild", "closedwon", company=hubspot.add_company(company),
        line_items=items, owner=hubspot.add_owner(owner),
    )  # fmt: skip
    project_id = f"hubspot:{deal}"

    assert ingress.hubspot([hubspot_event(deal, "closedwon")]) == 200
    [activated] = bus.wait_for(1, project_id=project_id, type="project.activated")
    assert activated["data"]["offering_ids"] == items
    assert harvest_projects_of(harvest, company) == []

    hubspot.set_stage(deal, IN_PROGRESS)
    assert ingress.hubspot([hubspot_event(deal, IN_PROGRESS)]) == 200
    provisioned = bus.wait_for(2, project_id=project_id, type="timesheet.provisioned")

    assert sorted(p["data"]["offering_id"] for p in provisioned) == sorted(items)
    assert all(p["data"]["team_assigned"] == [owner] for p in provisioned)
    made = harvest_projects_of(harvest, company)
    assert sorted(p["budget"] for p in made) == [40, 120]
    assert sorted(p["name"] for p in made) == [
        "Website Rebuild - Build", "Website Rebuild - Discovery"
    ]  # fmt: skip


def test_a_salesforce_outbound_message_then_a_delivery_stage_provisions_the_line_items(
    stack, bus, salesforce, harvest
):
    _, ingress = stack()
    owner = f"{rid('owner')}@example.com"
    harvest.add_user(owner)
    account = rid("Initech")
    opportunity = salesforce.add_opportunity(
        "CRM rollout", "Closed Won", won=True, account=salesforce.add_account(account),
        owner=salesforce.add_user(owner), line_items=[("Setup", 12), ("Training", 6)],
    )  # fmt: skip
    project_id = f"salesforce:{opportunity}"

    won = crm.opportunity(Id=opportunity, StageName="Closed Won", IsWon="true")
    assert ingress.salesforce([(crm.salesforce_id("04l"), won)]) == 200
    bus.wait_for(1, project_id=project_id, type="project.activated")

    salesforce.set_stage(opportunity, "Delivery", won=True, closed=True)
    delivery = crm.opportunity(Id=opportunity, StageName="Delivery", IsWon="true")
    assert ingress.salesforce([(crm.salesforce_id("04l"), delivery)]) == 200
    provisioned = bus.wait_for(2, project_id=project_id, type="timesheet.provisioned")

    assert all(p["data"]["team_assigned"] == [owner] for p in provisioned)
    assert sorted(p["budget"] for p in harvest_projects_of(harvest, account)) == [6, 12]


def test_shuffled_and_duplicated_webhooks_for_50_deals_make_one_project_per_offering(
    stack, bus, hubspot, harvest
):
    _, ingress = stack(PROVISIONER_CONCURRENCY="8")
    deals = {}
    for i in range(50):
        items = [hubspot.add_line_item(f"Item {i}.{k}", 10 + k) for k in range(2)]
        company = hubspot.add_company(rid("Client"))
        deals[hubspot.add_deal(f"Deal {i}", IN_PROGRESS, company=company, line_items=items)] = items
    # Each deal went Closed Won, then In Progress; HubSpot sends both, out of order, and
    # retries some (same eventId, a later attemptNumber).
    sent = [hubspot_event(d, s) for d in deals for s in ("closedwon", IN_PROGRESS)]
    sent += [dict(e, attemptNumber=1) for e in random.sample(sent, 60)]
    random.shuffle(sent)
    for start in range(0, len(sent), 16):
        assert ingress.hubspot(sent[start : start + 16]) == 200

    offerings = {i for items in deals.values() for i in items}
    bus.wait_until(
        lambda out: {o["data"].get("offering_id") for o in out
                     if o["type"] == "timesheet.provisioned"} >= offerings,
        timeout=120,
    )  # fmt: skip
    outcomes = bus.settle(quiet=2.0)

    with harvest.lock:
        markers = Counter(harvest_marker(p) for p in harvest.projects.values())
    assert len(markers) == 100 and set(markers.values()) == {1}
    first = {}
    for o in outcomes:  # a redelivery republishes the same ids: count each id once
        first.setdefault(o["id"], o)
    kinds = Counter((o["type"], o["data"]["project_id"]) for o in first.values())
    assert {kinds[("project.activated", f"hubspot:{d}")] for d in deals} == {1}
    assert {o["type"] for o in first.values()} == {"project.activated", "timesheet.provisioned"}
    for deal in deals:  # activated before anything is provisioned, never after
        mine = [o["type"] for o in outcomes if o["data"]["project_id"] == f"hubspot:{deal}"]
        assert mine.index("project.activated") < mine.index("timesheet.provisioned")
    assert bus.dead_letters() == []
    reads = hubspot.requests_to("GET", r"/crm/v3/objects/deals/\d+")
    print(f"{len(sent)} webhooks, {len(deals) * 2} distinct, {reads} deal reads")
    assert reads < len(deals) * 2  # a burst of one deal's events shares its read


def test_a_crm_answering_429_and_5xx_is_retried_and_paced_and_nothing_is_lost(stack, bus, hubspot):
    hubspot.rate_limit = (10, 1.0)
    _, ingress = stack(HUBSPOT_RATE_LIMIT="10/1")
    deals = [
        hubspot.add_deal(
            f"Deal {i}",
            "closedwon",
            company=hubspot.add_company(rid("Acme")),
            line_items=[hubspot.add_line_item("Work", 8)],
        )  # fmt: skip
        for i in range(8)
    ]
    hubspot.throttle_next(3)
    hubspot.fail_next(3, status=502)

    assert ingress.hubspot([hubspot_event(d, "closedwon") for d in deals]) == 200
    activated = bus.wait_for(8, type="project.activated", timeout=60)

    assert {a["data"]["project_id"] for a in activated} == {f"hubspot:{d}" for d in deals}
    assert hubspot.throttled == 3  # the injected ones: pacing kept the rest under the limit
    assert [s for _, _, s in hubspot.log].count(502) == 3
    assert bus.dead_letters() == []


def test_a_wrong_crm_token_is_vendor_auth_naming_the_crm_and_the_token_is_nowhere(
    stack, bus, hubspot
):
    token = f"pat-na1-{uuid.uuid4()}"
    worker, ingress = stack(HUBSPOT_ACCESS_TOKEN=token)
    deal = hubspot.add_deal("Deal", "closedwon", company=hubspot.add_company(rid("Acme")))

    assert ingress.hubspot([hubspot_event(deal, "closedwon")]) == 200
    [failed] = bus.wait_for(1, type="timesheet.failed")
    [(headers, body)] = bus.wait_dead_letters(1)

    assert failed["data"]["code"] == "vendor_auth" and failed["data"]["dead_lettered"]
    assert failed["data"]["message"].startswith("hubspot GET /crm/v3/objects/deals/")
    assert headers["x-error-code"] == "vendor_auth"
    everything = json.dumps(bus.outcomes) + json.dumps(headers, default=str) + body.decode()
    wait_until(lambda: "dead_lettered" in worker.logs(), "the worker logged the dead letter")
    for text in (everything, worker.logs(), ingress.logs()):
        assert token not in text


def test_a_deleted_deal_is_dead_lettered_as_crm_record_not_found(stack, bus, hubspot):
    _, ingress = stack()
    deal = hubspot.add_deal("Gone", "closedwon", company=hubspot.add_company(rid("Acme")))
    hubspot.delete_deal(deal)

    event = hubspot_event(deal, "closedwon", subscriptionType="deal.deletion")
    assert ingress.hubspot([event]) == 200
    [(headers, _)] = bus.wait_dead_letters(1)

    assert headers["x-error-code"] == "crm_record_not_found"
    assert f"hubspot deal {deal} does not exist" in headers["x-error-message"]
