"""The contract every timesheet adapter keeps, run against each tool's fake over HTTP."""

from __future__ import annotations

import pytest

from schemas.errors import (
    InvalidReference,
    TimesheetNotFound,
    VendorAuth,
    VendorRejected,
    VendorUnavailable,
)
from tests.integration.harness import fast_retrying, spec_for, unique


def test_creates_a_project_with_client_budget_and_team(harness):
    tool = harness.tool()
    ana = harness.add_user("Ana@Example.com")
    client = tool.create_client(unique("Acme"))

    created = tool.create_project(spec_for(client.id))
    users = tool.find_users(["ana@example.com", "nobody@example.com"])
    tool.assign_team(created.id, list(users.values()))

    assert users == {"ana@example.com": ana}
    [project] = harness.projects()
    assert (project.id, project.client_id, project.budget_hours) == (created.id, client.id, 40)
    assert project.member_ids >= {ana}
    assert created.url == harness.web_url(created.id)


def test_assigning_the_team_twice_changes_nothing(harness):
    tool = harness.tool()
    ana = harness.add_user("ana@example.com")
    client = tool.create_client(unique("Acme"))
    created = tool.create_project(spec_for(client.id))

    tool.assign_team(created.id, [ana])
    tool.assign_team(created.id, [ana])

    assert ana in harness.projects()[0].member_ids


def test_an_interrupted_create_is_found_by_its_marker(harness):
    tool = harness.tool()
    client = tool.create_client(unique("Acme"))
    spec = spec_for(client.id)
    created = tool.create_project(spec)

    found = tool.find_project(client.id, spec.marker, spec.name)

    assert found is not None and found.id == created.id
    assert tool.find_project(client.id, "P-other/O-9", unique("Other")) is None
    assert len(harness.projects()) == 1


def test_clients_are_matched_by_name_ignoring_case_and_spaces(harness):
    tool = harness.tool()
    name = unique("Globex")
    first = harness.add_client(name)
    second = harness.add_client(f"  {name.upper()} ")
    harness.add_client(unique("Initech"))

    assert {c.id for c in tool.clients_named(name.lower())} == {first, second}
    assert tool.clients_named(unique("Nobody")) == []


def test_a_throttled_call_waits_and_succeeds(harness):
    tool = harness.tool()
    name = unique("Acme")
    harness.add_client(name)
    harness.fake.throttle_next(1, retry_after=0)

    assert len(tool.clients_named(name)) == 1
    assert harness.fake.throttled == 1


def test_a_server_error_on_a_read_is_retried(harness):
    tool = harness.tool()
    name = unique("Acme")
    harness.add_client(name)
    harness.fake.fail_next(2, status=503)

    assert len(tool.clients_named(name)) == 1


def test_a_server_error_on_create_is_not_resent(harness):
    tool = harness.tool()
    client = tool.create_client(unique("Acme"))
    harness.fake.fail_next(1, status=502)

    with pytest.raises(VendorUnavailable):
        tool.create_project(spec_for(client.id))
    assert harness.projects() == []


def test_a_timed_out_read_is_retried(harness):
    tool = harness.tool(read_timeout=0.3)
    name = unique("Acme")
    harness.add_client(name)
    harness.fake.delay_next(1, 1.0)

    assert len(tool.clients_named(name)) == 1


def test_a_vendor_that_stays_down_is_unavailable(harness):
    tool = harness.tool(retrying=fast_retrying(attempts=3))
    harness.fake.fail_next(10, status=500)

    with pytest.raises(VendorUnavailable):
        tool.clients_named("Acme")


def test_a_permanent_refusal_is_rejected_not_retried(harness):
    tool = harness.tool()

    with pytest.raises(VendorRejected):
        tool.create_project(spec_for(harness.missing_client_id()))


def test_bad_credentials_are_an_auth_failure(harness):
    with pytest.raises(VendorAuth) as raised:
        harness.tool_with_bad_credentials().clients_named("Acme")
    assert "secret" not in str(raised.value).lower()


def test_archive_and_restore(harness):
    tool = harness.tool()
    client = tool.create_client(unique("Acme"))
    created = tool.create_project(spec_for(client.id))

    tool.set_archived(created.id, True)
    assert harness.projects()[0].archived and tool.get_project(created.id).archived

    tool.set_archived(created.id, False)
    assert not harness.projects()[0].archived


def test_existing_projects_are_read_by_url_and_by_id(harness):
    tool = harness.tool()
    client_id = harness.add_client(unique("Acme"))
    project_id = harness.add_project(client_id, unique("Running work"))

    assert tool.parse_reference(harness.web_url(project_id)) == project_id
    assert tool.parse_reference(f"  {project_id} ") == project_id
    found = tool.get_project(project_id)
    assert (found.id, found.client_id, found.archived) == (project_id, client_id, False)


def test_unreadable_references_and_missing_projects(harness):
    tool = harness.tool()

    for bad in ("", "not a project", harness.foreign_reference()):
        with pytest.raises(InvalidReference):
            tool.parse_reference(bad)
    with pytest.raises(TimesheetNotFound):
        tool.get_project(harness.missing_project_id())
