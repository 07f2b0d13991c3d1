"""The commercial shape of an offering, on the real broker (issue 21): in Harvest, fixed fees,
project rates, codes and notes from the rules, template tasks, and money the client's
currency cannot hold left out with a warning; the same shapes in Toggl and Clockify where
their plans allow; and a HubSpot deal's line-item prices carried by the CRM reader, through
the ingress and the worker as processes, to the Harvest fee."""

from __future__ import annotations

import pytest

from fakes.clockify import FakeClockify
from fakes.toggl import FakeToggl
from tests import builders as b
from tests.builders import rid
from tests.e2e.crm_stack import IN_PROGRESS, harvest_projects_of, hubspot_event
from tests.e2e.crm_stack import RULES as CRM_RULES

pytestmark = pytest.mark.broker

EUR_12000 = {"amount": "12000.00", "currency": "EUR"}
EUR_95 = {"amount": "95.00", "currency": "EUR"}
DEAL_URL = "https://app.hubspot.com/contacts/123/record/0-3/4711"
RULES = """
[defaults]
code = "{project_id}-{offering_id}"
notes = "Sold in {deal_url}"
template = "TEMPLATE"
"""


@pytest.fixture
def template(harvest) -> tuple[int, dict[int, tuple]]:
    """A template project in Harvest: its id, and task id -> (billable, hourly_rate, budget)
    of its task assignments."""
    client = harvest.add_client("Templates")
    project = harvest.add_project(client, "Template: standard delivery")
    design, review = harvest.add_task("Design"), harvest.add_task("Review")
    harvest.add_task_assignment(project, design, billable=True, hourly_rate=120.0, budget=8.0)
    harvest.add_task_assignment(project, review, billable=False)
    return project, {design: (True, 120.0, 8.0), review: (False, None, None)}


@pytest.fixture
def shaped_worker(harvest, template, start_worker, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.replace("TEMPLATE", str(template[0])))
    return start_worker(PROVISIONER_RULES=str(rules))


def made_for(harvest, outcome: dict) -> dict:
    return harvest.projects[int(outcome["data"]["timesheet_project_id"])]


def tasks_on(harvest, project: dict) -> dict[int, tuple]:
    return {
        a["task"]["id"]: (a["billable"], a["hourly_rate"], a["budget"])
        for a in harvest.task_assignments.values()
        if a["project"]["id"] == project["id"]
    }


def provisioned(bus, project: dict) -> dict[str, dict]:
    bus.publish(b.closed_won(project))
    bus.publish(b.status_changed(project, "in_progress"))
    count = 1 + len(project["offerings"])
    outcomes = bus.wait_for(count, project_id=project["id"])
    return {o["data"]["offering_id"]: o for o in outcomes if "offering_id" in o["data"]}


def test_a_new_client_in_euros_gets_a_fixed_fee_and_a_rate_billed_project_with_template_tasks(
    bus, harvest, template, shaped_worker
):
    fixed = b.offering("Build", kind="fixed_bid", price=EUR_12000)
    hourly = b.offering("Advice", kind="time_and_materials", hourly_rate=EUR_95)
    project = b.project(fixed, hourly, url=DEAL_URL)

    outcomes = provisioned(bus, project)

    built, advice = outcomes[fixed["id"]], outcomes[hourly["id"]]
    assert built["type"] == advice["type"] == "timesheet.provisioned"
    assert (built["data"]["fixed_fee"], built["data"]["fee"]) == (True, EUR_12000)
    assert (advice["data"]["fixed_fee"], advice["data"]["hourly_rate"]) == (False, EUR_95)
    assert built["data"]["warnings"] == advice["data"]["warnings"] == []
    fee_project, rate_project = made_for(harvest, built), made_for(harvest, advice)
    assert fee_project["client"]["currency"] == "EUR"
    assert harvest.clients[fee_project["client"]["id"]]["name"] == project["client"]["name"]
    assert (fee_project["is_fixed_fee"], fee_project["fee"]) == (True, 12000.0)
    assert (rate_project["bill_by"], rate_project["hourly_rate"]) == ("Project", 95.0)
    assert rate_project["code"] == advice["data"]["code"] == f"{project['id']}-{hourly['id']}"
    assert rate_project["notes"].splitlines()[0] == f"Sold in {DEAL_URL}"
    assert tasks_on(harvest, fee_project) == tasks_on(harvest, rate_project) == template[1]


def test_an_existing_usd_client_gets_no_euro_price_and_the_event_says_why(
    bus, harvest, shaped_worker
):
    project = b.project(b.offering("Build", kind="fixed_bid", price=EUR_12000), url=DEAL_URL)
    harvest.add_client(project["client"]["name"])  # USD, the account's currency

    [outcome] = provisioned(bus, project).values()

    data = outcome["data"]
    assert (data["fixed_fee"], data["fee"], data["code"]) == (
        False,
        None,
        f"{project['id']}-{project['offerings'][0]['id']}",
    )
    assert "currency is USD" in data["warnings"][0] and "12000.00 EUR" in data["warnings"][0]
    made = made_for(harvest, outcome)
    assert (made["is_fixed_fee"], made["fee"], made["client"]["currency"]) == (False, None, "USD")


TOOL_RULES = """
[[rules]]
match = { kind = "fixed_bid" }
tool = "toggl"

[[rules]]
match = { kind = "time_and_materials" }
tool = "clockify"
"""


def test_toggl_and_clockify_get_the_fee_and_the_rate_their_plans_allow(bus, start_worker, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text(TOOL_RULES)
    with (
        FakeToggl(rate_limit=(1000, 1.0), plan="premium", currency="EUR") as toggl,
        FakeClockify(rate_limit=(1000, 1.0), plan="free", currency="EUR") as clockify,
    ):
        start_worker(
            PROVISIONER_RULES=str(rules),
            TOGGL_API_TOKEN=toggl.token,
            TOGGL_WORKSPACE_ID=str(toggl.workspace_id),
            TOGGL_BASE_URL=f"{toggl.origin}/api/v9",
            TOGGL_RATE_LIMIT="1000/1",
            CLOCKIFY_API_KEY=clockify.api_key,
            CLOCKIFY_WORKSPACE_ID=clockify.workspace_id,
            CLOCKIFY_BASE_URL=f"{clockify.origin}/api/v1",
            CLOCKIFY_PLAN="free",
            CLOCKIFY_RATE_LIMIT="1000/1",
        )
        fixed = b.offering("Build", kind="fixed_bid", price=EUR_12000)
        hourly = b.offering(
            "Advice", kind="time_and_materials", hourly_rate=EUR_95, price=EUR_12000
        )
        project = b.project(fixed, hourly, url=DEAL_URL)

        outcomes = provisioned(bus, project)

        in_toggl, in_clockify = outcomes[fixed["id"]]["data"], outcomes[hourly["id"]]["data"]
        assert (in_toggl["tool"], in_toggl["fixed_fee"], in_toggl["fee"]) == (
            "toggl", True, EUR_12000
        )  # fmt: skip
        [made] = toggl.projects.values()
        assert (made["fixed_fee"], made["currency"]) == (12000.0, "EUR")
        assert (in_clockify["tool"], in_clockify["hourly_rate"]) == ("clockify", EUR_95)
        [rated] = clockify.projects.values()
        assert rated["hourlyRate"] == {"amount": 9500, "currency": "EUR"}
        # Clockify has no fixed fee, and a free plan has no money estimate: neither is
        # claimed, and nothing else was refused.
        assert in_clockify["fixed_fee"] is False and in_clockify["money_budget"] is None


def test_a_hubspot_deals_line_item_prices_reach_the_harvest_fee_through_the_crm_reader(
    stack, bus, hubspot, harvest, tmp_path
):
    rules = tmp_path / "priced.toml"
    rules.write_text(f"{CRM_RULES}\n[defaults]\nfixed_fee = true\n")
    _, ingress = stack(PROVISIONER_RULES=str(rules))
    company = rid("Priced Co")
    item = hubspot.add_line_item(
        "Build", 120, amount="12000.00", price="100.00", hs_line_item_currency_code="EUR"
    )
    deal = hubspot.add_deal(
        "Rebuild", IN_PROGRESS, company=hubspot.add_company(company), line_items=[item]
    )

    assert ingress.hubspot([hubspot_event(deal, IN_PROGRESS)]) == 200
    [outcome] = bus.wait_for(1, project_id=f"hubspot:{deal}", type="timesheet.provisioned")

    assert (outcome["data"]["fixed_fee"], outcome["data"]["fee"]) == (True, EUR_12000)
    [made] = harvest_projects_of(harvest, company)
    assert (made["is_fixed_fee"], made["fee"], made["client"]["currency"]) == (
        True, 12000.0, "EUR"
    )  # fmt: skip
    assert made["notes"].splitlines()[-1] == f"timesheet-provisioner: hubspot:{deal}/{item}"
