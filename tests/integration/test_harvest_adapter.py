"""What the Harvest adapter does beyond the shared contract, checked on ``FakeHarvest``'s state."""

from __future__ import annotations

import http.client
import uuid
from datetime import date

import pytest
import requests

from adapters.harvest import NOTES
from adapters.http import default_retrying
from schemas.errors import (
    InvalidReference,
    ProvisionerError,
    TimesheetNotFound,
    VendorAuth,
    VendorRejected,
)
from schemas.inbound import Money
from tests.integration.harness import fast_retrying, spec_for, unique
from tests.integration.harnesses.harvest import ACCOUNT_ID, TOKEN, open_harness


@pytest.fixture
def harvest():
    harness = open_harness()
    try:
        yield harness
    finally:
        harness.fake.stop()


def test_every_request_carries_the_token_the_account_and_a_user_agent(harvest):
    tool = harvest.tool()
    ana = harvest.add_user("ana@example.com")
    client = tool.create_client(unique("Acme"))
    created = tool.create_project(spec_for(client.id))
    tool.assign_team(created.id, [ana])
    tool.set_archived(created.id, True)

    seen = harvest.fake.received
    assert len(seen) >= 5  # client, project, company, assignment, archive
    for request in seen:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["harvest-account-id"] == ACCOUNT_ID
        assert request.headers["user-agent"].startswith("timesheet-provisioner")
    assert all(r.headers["content-type"] == "application/json" for r in seen if r.body)


def test_clients_and_users_are_read_across_every_page(harvest):
    tool = harvest.tool()
    name = unique("Oldest")
    oldest = harvest.add_client(name)
    for _ in range(4):
        harvest.add_client(unique("Newer"))
    emails = [f"{uuid.uuid4().hex[:6]}@example.com" for _ in range(5)]
    users = {email: harvest.add_user(email) for email in emails}

    assert [c.id for c in tool.clients_named(name)] == [oldest]
    assert tool.find_users([e.upper() for e in emails]) == users
    assert harvest.fake.requests_to("GET", "/v2/clients") == 3
    assert harvest.fake.requests_to("GET", "/v2/users") == 3


def test_a_429_is_retried_after_the_seconds_harvest_names(harvest):
    waits: list[float] = []
    tool = harvest.tool(retrying=default_retrying().copy(sleep=waits.append))
    name = unique("Acme")
    harvest.add_client(name)
    harvest.fake.throttle_next(1, retry_after=7)

    assert len(tool.clients_named(name)) == 1
    assert waits == [7]
    assert [s for m, p, s in harvest.fake.log if p == "/v2/clients"][:2] == [429, 200]


def test_the_create_body_carries_budget_billing_dates_and_the_marker_in_the_notes(harvest):
    tool = harvest.tool()
    client = tool.create_client(unique("Acme"))
    spec = spec_for(client.id, starts_on=date(2025, 3, 3), ends_on=date(2025, 6, 30))

    created = tool.create_project(spec)

    project = harvest.fake.projects[int(created.id)]
    assert project["client"]["id"] == int(client.id)
    assert (project["code"], project["name"]) == (None, spec.name)
    assert f"timesheet-provisioner: {spec.marker}" in project["notes"].splitlines()
    assert (project["budget"], project["budget_by"], project["bill_by"]) == (
        40,
        "project",
        "Project",
    )
    assert project["is_billable"] is True
    assert (project["starts_on"], project["ends_on"]) == ("2025-03-03", "2025-06-30")
    assert "timesheet-provisioner" in project["notes"]
    assert created.url == f"{harvest.fake.base_uri}/projects/{created.id}"


def test_billing_options_from_the_rules_override_the_defaults(harvest):
    tool = harvest.tool()
    client = tool.create_client(unique("Acme"))
    options = {"bill_by": "Tasks", "budget_by": "none"}

    created = tool.create_project(spec_for(client.id, billable=False, options=options))

    project = harvest.fake.projects[int(created.id)]
    assert (project["bill_by"], project["budget_by"], project["budget"]) == ("Tasks", "none", None)
    assert project["is_billable"] is False


def test_tasks_named_in_the_options_are_assigned_once_the_project_is_made(harvest):
    tool = harvest.tool()
    design = harvest.fake.add_task("Design")
    build = harvest.fake.add_task("Development")
    harvest.fake.add_task("Meetings")
    meetings_by_default = harvest.fake.add_task(unique("Admin"), is_default=True)
    client = tool.create_client(unique("Acme"))
    options = {"tasks": ["design", "Development", harvest.fake.tasks[meetings_by_default]["name"]]}

    spec = spec_for(client.id, options=options)
    created = tool.create_project(spec)
    tool.complete_setup(created.id, spec)
    tool.complete_setup(created.id, spec)  # an adopted project is completed again: harmless

    assigned = [
        a["task"]["id"]
        for a in harvest.fake.task_assignments.values()
        if a["project"]["id"] == int(created.id)
    ]
    assert sorted(assigned) == sorted([design, build, meetings_by_default])


def test_an_unknown_task_name_is_rejected_before_any_project_is_made(harvest):
    tool = harvest.tool()
    harvest.fake.add_task("Design")
    client = tool.create_client(unique("Acme"))

    with pytest.raises(VendorRejected, match="Nonexistent"):
        tool.create_project(spec_for(client.id, options={"tasks": ["Design", "Nonexistent"]}))
    assert harvest.fake.projects == {}


def test_a_client_made_meanwhile_is_adopted_instead_of_duplicated(harvest):
    tool = harvest.tool()
    name = unique("Acme")
    theirs = harvest.add_client(f"  {name.upper()}")

    assert tool.create_client(name).id == theirs
    assert len(harvest.fake.clients) == 1
    assert harvest.fake.requests_to("POST", "/v2/clients") == 1


def test_a_missing_project_is_not_found_when_read_or_archived(harvest):
    tool = harvest.tool()

    with pytest.raises(TimesheetNotFound):
        tool.get_project("99999999")
    with pytest.raises(TimesheetNotFound):
        tool.set_archived("99999999", True)


def test_a_user_already_on_the_project_is_not_posted_again(harvest):
    tool = harvest.tool()
    ana, ben = harvest.add_user("ana@example.com"), harvest.add_user("ben@example.com")
    project_id = harvest.add_project(harvest.add_client(unique("Acme")), unique("Work"))
    tool.assign_team(project_id, [ana])

    tool.assign_team(project_id, [ana, ben, ben])

    assert harvest.projects()[0].member_ids == {ana, ben}
    assert harvest.fake.requests_to("POST", r"/v2/projects/\d+/user_assignments") == 2


def test_an_archived_harvest_user_counts_as_missing(harvest):
    tool = harvest.tool()
    gone = harvest.fake.add_user("gone@example.com")
    harvest.fake.users[gone]["is_active"] = False

    assert tool.find_users(["gone@example.com"]) == {}


def test_the_web_address_is_read_from_company_once(harvest):
    tool = harvest.tool()

    assert tool.project_url("1") == f"{harvest.fake.base_uri}/projects/1"
    assert tool.project_url("2") == f"{harvest.fake.base_uri}/projects/2"
    assert harvest.fake.requests_to("GET", "/v2/company") == 1


def test_an_unreadable_company_falls_back_to_harvests_own_address(harvest):
    tool = harvest.tool(retrying=fast_retrying(attempts=2))
    harvest.fake.fail_next(2, status=500)

    assert tool.project_url("12345678") == "https://harvestapp.com/projects/12345678"
    assert tool.project_url("1") == f"{harvest.fake.base_uri}/projects/1"


def test_a_given_web_address_needs_no_company_call(harvest):
    tool = harvest.tool(web_url="https://globex.harvestapp.com/")

    assert tool.project_url("7") == "https://globex.harvestapp.com/projects/7"
    assert harvest.fake.requests_to("GET", "/v2/company") == 0


@pytest.mark.parametrize(
    "reference",
    [
        "12345678",
        " https://acme.harvestapp.com/projects/12345678 ",
        "https://ACME.harvestapp.com/projects/12345678/edit",
        "https://acme.harvestapp.com/projects/12345678?tab=team#top",
        "acme.harvestapp.com/projects/12345678",
    ],
)
def test_harvest_ids_and_project_addresses_are_read(harvest, reference):
    assert harvest.tool().parse_reference(reference) == "12345678"


@pytest.mark.parametrize(
    "reference",
    [
        "https://track.toggl.com/123/projects/456",
        "https://app.clockify.me/projects/64a1f0c2e4b0a1b2c3d4e5f6/edit",
        "https://acme.harvestapp.com.evil.example/projects/12345678",
        "https://acme.harvestapp.com/reports/projects/12345678",
        "https://acme.harvestapp.com/projects/",
        "ftp://acme.harvestapp.com/projects/12345678",
        "12 345",
    ],
)
def test_other_references_are_refused_naming_what_was_given(harvest, reference):
    with pytest.raises(InvalidReference) as raised:
        harvest.tool().parse_reference(reference)
    assert reference.strip()[:40] in str(raised.value)


def test_a_very_long_reference_is_truncated_in_the_message(harvest):
    with pytest.raises(InvalidReference) as raised:
        harvest.tool().parse_reference("x" * 5000)
    assert len(str(raised.value)) < 200


def test_the_access_token_never_appears_in_an_error(harvest):
    secret = f"tok-{uuid.uuid4().hex}"
    harvest.fake.token = secret
    # The short read timeout is for the delayed answer below; the client is made with the
    # usual one, since a loaded machine can take 0.2 s to answer anything.
    client = harvest.tool(token=secret).create_client(unique("Acme"))
    tool = harvest.tool(token=secret, retrying=fast_retrying(attempts=1), read_timeout=0.2)
    failures: list[ProvisionerError] = []
    attempts = [
        lambda: harvest.tool(token=f"{secret}-wrong").clients_named("Acme"),
        lambda: tool.create_project(spec_for(harvest.missing_client_id())),
        lambda: tool.get_project("99999999"),
    ]
    for attempt in attempts:
        with pytest.raises(ProvisionerError) as raised:
            attempt()
        failures.append(raised.value)
    harvest.fake.fail_next(1, status=500)
    with pytest.raises(ProvisionerError) as raised:
        tool.clients_named(client.name)
    failures.append(raised.value)
    harvest.fake.delay_next(1, 1.0)
    with pytest.raises(ProvisionerError) as raised:
        tool.clients_named(client.name)
    failures.append(raised.value)

    assert isinstance(failures[0], VendorAuth)
    for failure in failures:
        assert secret not in f"{failure} {failure!r} {failure.__cause__}"


def test_the_fake_refuses_what_harvest_refuses(harvest):
    url = f"{harvest.fake.origin}/v2/clients"
    good = {"Authorization": f"Bearer {TOKEN}", "Harvest-Account-Id": ACCOUNT_ID}

    bare = http.client.HTTPConnection("127.0.0.1", harvest.fake.port, timeout=5)
    bare.request("GET", "/v2/clients", headers=good)  # http.client adds no User-Agent
    assert bare.getresponse().status == 400
    bare.close()
    unauthorised = requests.get(url, headers={**good, "Authorization": "Bearer nope"})
    assert unauthorised.status_code == 401 and unauthorised.json()["error"] == "invalid_token"
    assert requests.get(url, headers=good | {"Harvest-Account-Id": "1"}).status_code == 403
    assert requests.get(url, headers=good, params={"per_page": 2001}).status_code == 422
    assert requests.post(f"{url}", headers=good, json={}).status_code == 422
    created = requests.post(f"{url}", headers=good, json={"name": "Acme"})
    assert created.status_code == 201
    incomplete = {"client_id": created.json()["id"], "name": "Work", "is_billable": True}
    projects = f"{harvest.fake.origin}/v2/projects"
    assert requests.post(projects, headers=good, json=incomplete).status_code == 422


# -- the commercial shape (issue 21) --------------------------------------------------------
EUR_12000 = Money(amount="12000.00", currency="EUR")
EUR_95 = Money(amount="95.50", currency="EUR")


def provision(harvest, tool, spec):
    """create, then complete_setup, as the handler calls them."""
    made = tool.create_project(spec)
    return made, tool.complete_setup(made.id, spec), harvest.fake.projects[int(made.id)]


def test_a_client_made_with_a_currency_holds_it(harvest):
    client = harvest.tool().create_client(unique("Acme"), currency="EUR")

    assert harvest.fake.clients[int(client.id)]["currency"] == "EUR"


def test_a_fixed_fee_a_rate_and_a_code_reach_a_project_of_a_client_in_that_currency(harvest):
    tool = harvest.tool()
    client = tool.create_client(unique("Acme"), currency="EUR")
    spec = spec_for(client.id, fixed_fee=EUR_12000, hourly_rate=EUR_95, code="ACME-0042")

    made, report, project = provision(harvest, tool, spec)

    assert (project["is_fixed_fee"], project["fee"], project["hourly_rate"]) == (
        True,
        12000.0,
        95.5,
    )
    assert (project["code"], report) == ("ACME-0042", None)
    read = tool.get_project(made.id)
    assert (read.fixed_fee, read.fee, read.hourly_rate, read.code) == (
        True,
        EUR_12000,
        EUR_95,
        "ACME-0042",
    )


def test_a_priced_provisioning_reads_the_clients_currency_once(harvest):
    # complete_setup reads the project it checks anyway, and the project names its client's
    # currency: a second GET /clients/{id} would spend Harvest's budget on nothing.
    tool = harvest.tool()
    client = tool.create_client(unique("Acme"), currency="EUR")
    spec = spec_for(client.id, fixed_fee=EUR_12000, hourly_rate=EUR_95)

    made, report, project = provision(harvest, tool, spec)

    assert (project["fee"], report) == (12000.0, None)
    assert harvest.fake.requests_to("GET", rf"/v2/clients/{client.id}") == 1
    assert harvest.fake.requests_to("GET", rf"/v2/projects/{made.id}") == 1


def test_a_money_budget_is_the_project_cost_and_replaces_the_hours(harvest):
    tool = harvest.tool()
    client = tool.create_client(unique("Acme"), currency="EUR")

    _, report, project = provision(harvest, tool, spec_for(client.id, money_budget=EUR_12000))

    assert (project["budget_by"], project["cost_budget"], project["budget"]) == (
        "project_cost",
        12000.0,
        None,
    )
    assert report.budget_set is False and report.left_out == frozenset()


def test_money_in_another_currency_than_the_clients_is_left_out_with_a_warning(harvest):
    tool = harvest.tool()
    client_id = harvest.add_client(unique("Acme"))  # the account's USD
    spec = spec_for(client_id, fixed_fee=EUR_12000, money_budget=EUR_12000, code="X-1")

    _, report, project = provision(harvest, tool, spec)

    assert (project["is_fixed_fee"], project["fee"], project["cost_budget"]) == (
        False,
        None,
        None,
    )
    assert (project["budget_by"], project["budget"], project["code"]) == ("project", 40, "X-1")
    assert report.left_out == {"fixed_fee", "money_budget"}
    assert all("currency is USD" in w and "never converted" in w for w in report.warnings)


def test_a_rate_under_bill_by_tasks_is_left_out_with_a_warning(harvest):
    tool = harvest.tool()
    client = tool.create_client(unique("Acme"), currency="EUR")
    spec = spec_for(client.id, hourly_rate=EUR_95, options={"bill_by": "Tasks"})

    _, report, project = provision(harvest, tool, spec)

    assert project["hourly_rate"] is None and report.left_out == {"hourly_rate"}
    assert "bill_by is 'Tasks'" in report.warnings[0]


def test_the_rules_notes_come_first_and_the_marker_line_last(harvest):
    tool = harvest.tool()
    client = tool.create_client(unique("Acme"))
    spec = spec_for(client.id, notes="Deal: https://crm.example/deals/7")

    _, _, project = provision(harvest, tool, spec)

    assert project["notes"].splitlines() == [
        "Deal: https://crm.example/deals/7",
        "",
        f"timesheet-provisioner: {spec.marker}",
    ]
    assert NOTES not in project["notes"]


def test_a_project_with_a_code_template_is_found_by_its_notes_marker(harvest):
    tool = harvest.tool()
    client = tool.create_client(unique("Acme"))
    spec = spec_for(client.id, code="ACME-7")
    look_alike = harvest.fake.add_project(int(client.id), unique("Look-alike"))
    harvest.fake.projects[look_alike]["notes"] = f"timesheet-provisioner: {spec.marker}1"
    made = tool.create_project(spec)

    assert tool.find_project(client.id, spec.marker, "renamed since").id == made.id


def test_a_project_made_before_issue_21_is_still_found_by_its_code(harvest):
    tool = harvest.tool()
    client = tool.create_client(unique("Acme"))
    spec = spec_for(client.id)
    old = harvest.fake.add_project(int(client.id), unique("Old"), code=spec.marker)

    assert tool.find_project(client.id, spec.marker, spec.name).id == str(old)


def test_the_template_tasks_are_copied_with_billability_rate_and_budget(harvest):
    tool = harvest.tool()
    client = tool.create_client(unique("Acme"))
    design, qa = harvest.fake.add_task(unique("Design")), harvest.fake.add_task(unique("QA"))
    template = harvest.fake.add_project(int(client.id), unique("Template"))
    for task, body in (
        (design, {"billable": True, "hourly_rate": 120.0, "budget": 10.0}),
        (qa, {"billable": False}),
    ):
        harvest.fake.add_task_assignment(template, task, **body)

    made, _, _ = provision(harvest, tool, spec_for(client.id, template=str(template)))
    tool.complete_setup(made.id, spec_for(client.id, template=str(template)))  # idempotent

    copied = {
        a["task"]["id"]: (a["billable"], a["hourly_rate"], a["budget"])
        for a in harvest.fake.task_assignments.values()
        if a["project"]["id"] == int(made.id)
    }
    assert copied == {design: (True, 120.0, 10.0), qa: (False, None, None)}


def test_the_fake_refuses_money_fields_without_their_setting(harvest):
    good = {"Authorization": f"Bearer {TOKEN}", "Harvest-Account-Id": ACCOUNT_ID}
    origin = harvest.fake.origin
    client = requests.post(f"{origin}/v2/clients", headers=good, json={"name": unique("A")})
    base = dict(client_id=client.json()["id"], is_billable=True, bill_by="Tasks")
    base |= {"budget_by": "project"}

    def status(**fields) -> int:
        body = base | {"name": unique("P")} | fields
        return requests.post(f"{origin}/v2/projects", headers=good, json=body).status_code

    assert status(fee=100.0) == 422  # not fixed-fee
    assert status(hourly_rate=90.0) == 422  # not billed by Project
    assert status(cost_budget=100.0) == 422  # not budgeted by project_cost
    assert status(is_fixed_fee=True, fee="100.00") == 422  # a string is not a number
    assert status(is_fixed_fee=True, fee=100.0) == 201
    assert status(bill_by="Project", hourly_rate=90.0) == 201
    assert status(budget_by="project_cost", cost_budget=100.0) == 201
    lower = requests.post(
        f"{origin}/v2/clients", headers=good, json={"name": unique("B"), "currency": "eur"}
    )
    assert lower.status_code == 422
