"""Salesforce sessions that end, end to end: the ingress and the worker as processes on the
real RabbitMQ, the fake org issuing sessions that last three seconds. The worker signs in
through OAuth (no access token, no instance URL set) and renews the session on its own."""

from __future__ import annotations

import json
import secrets

import pytest

from tests import crm_webhooks as crm
from tests.builders import rid
from tests.e2e.bus import wait_until
from tests.e2e.crm_stack import harvest_projects_of

pytestmark = pytest.mark.broker

CLIENT_ID = "3MVG9" + secrets.token_hex(20)


def oauth_env(salesforce, **settings: str) -> dict[str, str]:
    """The worker's Salesforce settings: OAuth at the fake's login URL, no static token."""
    return {
        "SALESFORCE_ACCESS_TOKEN": "",
        "SALESFORCE_INSTANCE_URL": "",
        "SALESFORCE_LOGIN_URL": salesforce.origin,
        "SALESFORCE_CLIENT_ID": CLIENT_ID,
        **settings,
    }


def won_opportunity(salesforce, harvest) -> tuple[str, str, str]:
    owner = f"{rid('owner')}@example.com"
    harvest.add_user(owner)
    account = rid("Initech")
    opportunity = salesforce.add_opportunity(
        "CRM rollout", "Closed Won", won=True, account=salesforce.add_account(account),
        owner=salesforce.add_user(owner), line_items=[("Setup", 12), ("Training", 6)],
    )  # fmt: skip
    return opportunity, account, owner


def send_stage(ingress, opportunity: str, stage: str) -> None:
    message = crm.opportunity(Id=opportunity, StageName=stage, IsWon="true")
    assert ingress.salesforce([(crm.salesforce_id("04l"), message)]) == 200


def test_two_stage_changes_seconds_apart_provision_through_the_refresh_token_as_sessions_end(
    stack, bus, salesforce, harvest
):
    salesforce.session_seconds = 3
    secret, refresh = secrets.token_urlsafe(24), "5Aep" + secrets.token_urlsafe(40)
    salesforce.add_connected_app(CLIENT_ID, secret, refresh_tokens={refresh})
    worker, ingress = stack(
        **oauth_env(salesforce, SALESFORCE_CLIENT_SECRET=secret, SALESFORCE_REFRESH_TOKEN=refresh)
    )
    opportunity, account, owner = won_opportunity(salesforce, harvest)
    project_id = f"salesforce:{opportunity}"

    send_stage(ingress, opportunity, "Closed Won")
    bus.wait_for(1, project_id=project_id, type="project.activated")
    wait_until(lambda: salesforce.live_sessions() == 0, "the worker's session ended", 60)

    salesforce.set_stage(opportunity, "Delivery", won=True, closed=True)
    send_stage(ingress, opportunity, "Delivery")
    provisioned = bus.wait_for(2, project_id=project_id, type="timesheet.provisioned")

    assert all(p["data"]["team_assigned"] == [owner] for p in provisioned)
    assert sorted(p["budget"] for p in harvest_projects_of(harvest, account)) == [6, 12]
    assert len(salesforce.tokens_issued) > 1
    assert set(salesforce.tokens_issued) == {"refresh_token"}
    assert bus.dead_letters() == []
    issued = [t for t in salesforce.sessions if t != salesforce.token]
    everything = worker.logs() + ingress.logs() + json.dumps(bus.outcomes)
    assert not any(t in everything for t in [*issued, secret, refresh])


def test_a_deal_provisions_through_client_credentials_alone(stack, bus, salesforce, harvest):
    secret = secrets.token_urlsafe(24)
    salesforce.add_connected_app(CLIENT_ID, secret, run_as_user=True)
    _, ingress = stack(**oauth_env(salesforce, SALESFORCE_CLIENT_SECRET=secret))
    opportunity, account, _ = won_opportunity(salesforce, harvest)
    project_id = f"salesforce:{opportunity}"

    send_stage(ingress, opportunity, "Closed Won")
    bus.wait_for(1, project_id=project_id, type="project.activated")
    salesforce.set_stage(opportunity, "Delivery", won=True, closed=True)
    send_stage(ingress, opportunity, "Delivery")
    bus.wait_for(2, project_id=project_id, type="timesheet.provisioned")

    assert sorted(p["budget"] for p in harvest_projects_of(harvest, account)) == [6, 12]
    assert salesforce.tokens_issued == ["client_credentials"]
    assert bus.dead_letters() == []
