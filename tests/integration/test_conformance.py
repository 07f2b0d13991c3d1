"""The contract every timesheet adapter keeps, run against each tool's fake over HTTP."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from adapters.pacing import Pacer
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

    spec = spec_for(client.id)
    created = tool.create_project(spec)
    users = tool.find_users(["ana@example.com", "nobody@example.com"])
    tool.assign_team(created.id, list(users.values()))
    tool.complete_setup(created.id, spec)  # as the handler does: Clockify's estimate

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
    intent = datetime.now(UTC)  # recorded before the create, as the handler does
    created = tool.create_project(spec)

    found = tool.find_project(client.id, spec.marker, spec.name, intent)

    assert found is not None and found.id == created.id
    assert tool.find_project(client.id, "P-other/O-9", unique("Other"), intent) is None
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
    tool.create_project(spec_for(client.id))  # what a tool reads once (Toggl's plan) is read
    harness.fake.fail_next(1, status=502)

    with pytest.raises(VendorUnavailable):
        tool.create_project(spec_for(client.id))
    assert len(harness.projects()) == 1


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


# -- what each vendor documents (issue 13), one case per point ------------------------------
@pytest.fixture
def harvest():
    from tests.integration.harnesses.harvest import open_harness

    h = open_harness()
    try:
        yield h
    finally:
        h.fake.stop()


def _harvest_project(harvest, **options):
    tool = harvest.tool()
    client = tool.create_client(unique("Acme"))
    spec = spec_for(client.id, options=options)
    return tool, spec, tool.create_project(spec)


def test_harvest_tasks_from_the_rules_are_as_billable_as_the_offering(harvest):
    harvest.fake.add_task("Design")
    harvest.fake.add_task("Internal")
    tool, spec, made = _harvest_project(harvest, tasks=["Design"])

    tool.complete_setup(made.id, spec)
    tool.complete_setup(
        made.id, replace(spec, options={"tasks": ["Internal"], "task_billable": False})
    )

    billable = {
        a["task"]["name"]: a["billable"]
        for a in harvest.fake.task_assignments.values()
        if a["project"]["id"] == int(made.id)
    }
    assert billable == {"Design": True, "Internal": False}


def test_harvest_an_archived_task_is_a_clear_refusal_not_a_silent_success(harvest):
    harvest.fake.add_task("Legacy", is_active=False)
    tool, spec, made = _harvest_project(harvest)

    with pytest.raises(VendorRejected) as refused:
        tool.complete_setup(made.id, replace(spec, options={"tasks": ["Legacy"]}))
    assert "archived" in refused.value.message


def test_harvest_a_refused_user_assignment_is_a_failure_not_already_assigned(harvest):
    tool, _, made = _harvest_project(harvest)
    gone = harvest.fake.add_user(unique("gone") + "@example.com", is_active=False)

    with pytest.raises(VendorRejected):
        tool.assign_team(made.id, [str(gone)])


def test_harvest_an_archived_user_assignment_is_reactivated(harvest):
    tool, _, made = _harvest_project(harvest)
    ana = harvest.fake.add_user(unique("ana") + "@example.com")
    harvest.fake.add_user_assignment(int(made.id), ana, is_active=False)

    tool.assign_team(made.id, [str(ana)])

    [assignment] = [a for a in harvest.fake.user_assignments.values() if a["user"]["id"] == ana]
    assert assignment["is_active"] is True


@pytest.mark.parametrize(
    ("budget_by", "default_task"), [("task", False), ("task", True), ("person", False)]
)
def test_harvest_task_and_person_budgets_put_the_hours_on_the_assignments(
    harvest, budget_by, default_task
):
    harvest.fake.add_task("Design", is_default=default_task)
    tool = harvest.tool()
    ana = str(harvest.fake.add_user(unique("ana") + "@example.com"))
    client = tool.create_client(unique("Acme"))
    options = {"budget_by": budget_by, "tasks": ["Design"]}
    spec = spec_for(client.id, options=options, team_hours={ana: 40})

    made = tool.create_project(spec)
    tool.assign_team(made.id, [ana])
    tool.complete_setup(made.id, spec)

    [project] = harvest.projects()
    assert project.budget_hours == 40


def test_harvest_a_money_budget_mode_never_drops_the_hours(harvest):
    tool = harvest.tool()
    client = tool.create_client(unique("Acme"))

    with pytest.raises(VendorRejected):
        tool.create_project(spec_for(client.id, options={"budget_by": "task_fees"}))
    assert harvest.projects() == []


def test_harvest_project_cost_without_a_price_keeps_the_hours_as_the_budget(harvest):
    tool = harvest.tool()
    client = tool.create_client(unique("Acme"))

    tool.create_project(spec_for(client.id, options={"budget_by": "project_cost"}))

    [project] = harvest.projects()
    assert project.budget_hours == 40


def test_harvest_managers_on_the_team_are_not_made_project_managers(harvest):
    tool, spec, made = _harvest_project(harvest)
    boss = harvest.fake.add_user(unique("boss") + "@example.com", access_role="manager")
    lead = harvest.fake.add_user(unique("lead") + "@example.com", access_role="administrator")

    tool.assign_team(made.id, [str(boss), str(lead)])
    tool.complete_setup(made.id, spec)

    managers = {
        a["user"]["id"]: a["is_project_manager"] for a in harvest.fake.user_assignments.values()
    }
    assert managers == {boss: False, lead: False}
    tool.complete_setup(made.id, replace(spec, options={"project_managers": True}))
    assert all(a["is_project_manager"] for a in harvest.fake.user_assignments.values())


@pytest.fixture
def toggl():
    from tests.integration.harnesses.toggl import open_harness

    h = open_harness()
    try:
        yield h
    finally:
        h.fake.stop()


@pytest.fixture
def free_toggl():
    from fakes.toggl import FakeToggl
    from tests.integration.harnesses.toggl import TogglHarness

    h = TogglHarness(FakeToggl(rate_limit=(1000, 1.0), plan="free").start())
    try:
        yield h
    finally:
        h.fake.stop()


def test_toggl_a_402_for_a_field_the_plan_lacks_is_a_refusal_naming_it_not_a_throttle(toggl):
    tool = toggl.tool(retrying=fast_retrying(attempts=4))
    client = tool.create_client(unique("Acme"))
    tool.create_project(spec_for(client.id))  # the plan is read: premium
    toggl.fake.plan = "free"  # downgraded since

    with pytest.raises(VendorRejected) as refused:
        tool.create_project(spec_for(client.id))
    assert "estimated_hours" in refused.value.message or "billable" in refused.value.message
    assert toggl.fake.requests_to("POST", r".*/projects") == 2  # refused once, not retried


def test_toggl_a_free_workspace_gets_its_project_without_premium_fields_and_says_so(free_toggl):
    tool = free_toggl.tool()
    client = tool.create_client(unique("Acme"))
    spec = spec_for(client.id, budget_hours=40, billable=True)

    made = tool.create_project(spec)
    report = tool.complete_setup(made.id, spec)

    [project] = free_toggl.projects()
    assert project.id == made.id and project.budget_hours is None
    assert report is not None and report.budget_set is False
    assert any("estimated_hours" in w for w in report.warnings)


def test_toggl_requests_stop_before_the_hourly_quota_refuses_them(free_toggl):
    clock_pacer = Pacer(1000, 1.0)
    tool = free_toggl.tool(pacer=clock_pacer)
    name = unique("Acme")
    free_toggl.add_client(name)

    with pytest.raises(VendorUnavailable) as waited:
        for _ in range(40):
            tool.clients_named(name)

    assert free_toggl.fake.quota_refused == 0
    assert len(free_toggl.fake.log) == 30  # the free plan's hour, and not one request more
    assert waited.value.retry_after > 60


def test_toggl_a_provisioning_makes_one_call_per_member_plus_three(toggl):
    tool = toggl.tool()
    client = tool.create_client(unique("Acme"))
    tool.create_project(spec_for(client.id))  # the workspace's plan is read once a process
    people = [toggl.add_user(unique("p") + "@example.com") for _ in range(3)]
    before = len(toggl.fake.log)

    tool.clients_named(client.name)
    users = tool.find_users([toggl.fake.users[int(p)]["email"] for p in people])
    made = tool.create_project(spec_for(client.id))
    tool.assign_team(made.id, list(users.values()))
    tool.complete_setup(made.id, spec_for(client.id))

    assert len(toggl.fake.log) - before == 3 + len(people)
    assert toggl.projects()[-1].member_ids == frozenset(people)


def test_toggl_inactive_and_deleted_users_are_not_matched(toggl):
    tool = toggl.tool()
    ana = toggl.fake.add_user("ana@example.com")
    toggl.fake.add_user("bob@example.com", inactive=True)
    toggl.fake.add_user("cy@example.com", deleted=True)

    found = tool.find_users(["ana@example.com", "bob@example.com", "cy@example.com"])

    assert found == {"ana@example.com": str(ana)}


def test_toggl_a_membership_added_meanwhile_is_read_from_state_not_from_words(toggl):
    tool = toggl.tool()
    ana = toggl.add_user("ana@example.com")
    project_id = toggl.add_project(toggl.add_client(unique("Acme")), unique("Work"))
    fake = toggl.fake

    def another_worker_adds_ana_first(request):
        if request.method == "POST" and request.path.endswith("/project_users"):
            fake.chaos = None
            fake.project_users[999] = {"id": 999, "project_id": int(project_id)}
            fake.project_users[999] |= {"user_id": int(ana), "workspace_id": fake.workspace_id}
        return None

    fake.chaos = another_worker_adds_ana_first
    tool.assign_team(project_id, [ana])

    assert [p.member_ids for p in toggl.projects()] == [frozenset({ana})]


def test_toggl_a_project_a_person_made_with_our_name_is_not_adopted(toggl):
    tool = toggl.tool()
    client = tool.create_client(unique("Acme"))
    spec = spec_for(client.id)
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    toggl.fake.add_project(int(client.id), spec.name, created_at=an_hour_ago)
    intent = datetime.now(UTC)

    assert tool.find_project(client.id, spec.marker, spec.name, intent) is None


@pytest.fixture
def clockify():
    from tests.integration.harnesses.clockify import open_harness

    h = open_harness(page_size=50)
    try:
        yield h
    finally:
        h.fake.stop()


@pytest.fixture
def free_clockify():
    from fakes.clockify import FakeClockify
    from tests.integration.harnesses.clockify import ClockifyHarness

    h = ClockifyHarness(FakeClockify(plan="free").start())
    try:
        yield h
    finally:
        h.fake.stop()


def test_clockify_archiving_sends_the_whole_project_so_the_marker_survives(clockify):
    tool = clockify.tool()
    client = tool.create_client(unique("Acme"))
    spec = spec_for(client.id)
    made = tool.create_project(spec)

    tool.set_archived(made.id, True)

    [project] = clockify.projects()
    assert project.archived and project.client_id == client.id
    assert tool.find_project(client.id, spec.marker, spec.name).id == made.id


def test_clockify_a_refused_update_is_a_refusal_not_a_missing_project(clockify):
    tool = clockify.tool()
    client_id = clockify.add_client(unique("Acme"))
    project_id = clockify.fake.add_project(client_id, "X")  # a name Clockify now refuses

    with pytest.raises(VendorRejected):
        tool.set_archived(project_id, True)


def test_clockify_a_duplicate_name_adopts_our_own_project_and_refuses_anyone_elses(clockify):
    tool = clockify.tool()
    client = tool.create_client(unique("Acme"))
    spec = spec_for(client.id)
    made = tool.create_project(spec)

    again = tool.create_project(spec)
    hand_made = clockify.add_project(client.id, unique("By hand"))
    with pytest.raises(VendorRejected) as refused:
        tool.create_project(spec_for(client.id, name=clockify.fake.projects[hand_made]["name"]))

    assert again.id == made.id and len(clockify.projects()) == 2
    assert "did not make" in refused.value.message


def test_clockify_finds_an_archived_project_and_many_users_in_one_request_each(clockify):
    tool = clockify.tool()
    client = tool.create_client(unique("Acme"))
    spec = spec_for(client.id)
    made = tool.create_project(spec)
    tool.set_archived(made.id, True)
    emails = [f"{unique('p')}@example.com" for _ in range(3)]
    for email in emails:
        clockify.add_user(email)
    before = len(clockify.fake.log)

    found = tool.find_project(client.id, spec.marker, spec.name)
    users = tool.find_users(emails)

    assert found.id == made.id and len(users) == 3
    assert [m for m, *_ in clockify.fake.log[before:]] == ["GET", "GET"]


def test_clockify_a_free_workspace_429_is_not_retried_fast(free_clockify):
    tool = free_clockify.tool(retrying=fast_retrying(attempts=4))
    free_clockify.fake.throttle_next(1)

    with pytest.raises(VendorUnavailable) as throttled:
        tool.clients_named("Acme")

    assert len(free_clockify.fake.log) == 1 and throttled.value.retry_after >= 60


def test_clockify_the_estimate_is_set_the_documented_way_or_reported_not_set(
    clockify, free_clockify
):
    for harness, holds in ((clockify, True), (free_clockify, False)):
        tool = harness.tool()
        client = tool.create_client(unique("Acme"))
        spec = spec_for(client.id, budget_hours=40)
        made = tool.create_project(spec)

        report = tool.complete_setup(made.id, spec)

        [project] = harness.projects()
        assert project.budget_hours == (40 if holds else None)
        assert (report is None) == holds
        if not holds:
            assert report.budget_set is False and "estimate" in report.warnings[0]
