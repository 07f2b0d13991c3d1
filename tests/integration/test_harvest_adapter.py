"""What the Harvest adapter does beyond the shared contract, checked on ``FakeHarvest``'s state."""

from __future__ import annotations

import http.client
import uuid
from datetime import date

import pytest
import requests

from adapters.http import default_retrying
from schemas.errors import (
    InvalidReference,
    ProvisionerError,
    TimesheetNotFound,
    VendorAuth,
    VendorRejected,
)
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
    assert len(seen) >= 6
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


def test_the_create_body_carries_marker_budget_billing_dates_and_notes(harvest):
    tool = harvest.tool()
    client = tool.create_client(unique("Acme"))
    spec = spec_for(client.id, starts_on=date(2025, 3, 3), ends_on=date(2025, 6, 30))

    created = tool.create_project(spec)

    project = harvest.fake.projects[int(created.id)]
    assert project["client"]["id"] == int(client.id)
    assert (project["code"], project["name"]) == (spec.marker, spec.name)
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
