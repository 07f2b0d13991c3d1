"""What only Toggl Track does, checked on the fake's state: its auth, quota, errors and ids."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from adapters.pacing import Pacer
from adapters.toggl import TogglTool
from schemas.errors import (
    InvalidReference,
    ProvisionerError,
    TimesheetNotFound,
    VendorAuth,
    VendorRejected,
    VendorUnavailable,
)
from schemas.inbound import Money
from tests.integration.harness import fast_retrying, spec_for, unique
from tests.integration.harnesses.toggl import open_harness

SINCE = datetime.now(UTC) - timedelta(minutes=5)  # an intent older than the seeded projects


@pytest.fixture
def harness():
    h = open_harness()
    try:
        yield h
    finally:
        h.fake.stop()


class ManualClock:
    """Time that passes only when someone sleeps, shared by the pacer and the fake."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def raised_by(call, *args) -> ProvisionerError:
    with pytest.raises(ProvisionerError) as raised:
        call(*args)
    return raised.value


# -- auth --------------------------------------------------------------------------------------
def test_every_request_authenticates_as_the_token_with_the_password_api_token(harness):
    harness.tool().clients_named("Acme")

    token = harness.fake.token
    assert harness.fake.authorizations == [
        "Basic " + base64.b64encode(f"{token}:api_token".encode()).decode()
    ]


def test_refused_credentials_are_an_auth_failure_and_are_not_retried(harness):
    with pytest.raises(VendorAuth):
        harness.tool_with_bad_credentials().clients_named("Acme")

    assert [status for *_, status in harness.fake.log] == [403]


def test_a_workspace_the_token_cannot_reach_is_an_auth_failure(harness):
    tool = TogglTool(
        harness.fake.token,
        "7654321",
        base_url=f"{harness.fake.origin}/api/v9",
        retrying=fast_retrying(),
    )

    with pytest.raises(VendorAuth):
        tool.find_users(["ana@example.com"])


# -- the hourly quota (402) --------------------------------------------------------------------
def test_a_spent_hourly_quota_is_waited_out_and_the_call_then_succeeds(harness):
    clock = ManualClock()
    harness.fake.clock = clock
    name = unique("Acme")
    harness.add_client(name)
    harness.fake.exhaust_quota(resets_in=30)
    tool = harness.tool(pacer=Pacer(100, 1.0, clock=clock, sleep=clock.sleep))

    assert len(tool.clients_named(name)) == 1
    assert [status for *_, status in harness.fake.log] == [402, 200]
    assert clock.now >= 1030


def test_a_quota_that_stays_spent_is_unavailable_with_its_reset_time_not_rejected(harness):
    harness.fake.exhaust_quota(resets_in=1800)
    tool = harness.tool(retrying=fast_retrying(attempts=2))

    with pytest.raises(VendorUnavailable) as raised:
        tool.clients_named("Acme")

    assert raised.value.retry_after == 1800
    # Half an hour is past the in-process ceiling: no second call here, the delayed message
    # retry takes over.
    assert harness.fake.requests_to("GET", r".*/clients") == 1


# -- errors ------------------------------------------------------------------------------------
def test_a_json_string_error_body_is_quoted_in_the_rejection(harness):
    with pytest.raises(VendorRejected) as raised:
        harness.tool().create_project(spec_for(harness.missing_client_id()))

    assert raised.value.status == 400
    assert "400 Client with ID 99999999 isn't present in workspace" in raised.value.message


def test_a_project_name_taken_under_the_client_is_rejected_even_by_an_archived_one(harness):
    client_id = harness.add_client(unique("Acme"))
    spec = spec_for(client_id)
    taken = harness.add_project(client_id, spec.name.upper())
    harness.fake.projects[int(taken)]["active"] = False

    with pytest.raises(VendorRejected, match="already been taken"):
        harness.tool().create_project(spec)
    assert len(harness.projects()) == 1


def test_the_token_never_appears_in_an_error_message(harness):
    token = f"tok-{uuid.uuid4().hex}"
    harness.fake.token = token
    tool = harness.tool(retrying=fast_retrying(attempts=2))
    errors = [
        raised_by(harness.tool(token=f"{token}-old").clients_named, "Acme"),
        raised_by(tool.create_project, spec_for(harness.missing_client_id())),
        raised_by(tool.get_project, harness.missing_project_id()),
        raised_by(tool.set_archived, harness.missing_project_id(), True),
    ]
    harness.fake.fail_next(2, status=500)
    errors.append(raised_by(tool.clients_named, "Acme"))
    harness.fake.exhaust_quota(resets_in=60)
    errors.append(raised_by(tool.find_users, ["ana@example.com"]))

    encoded = base64.b64encode(f"{token}:api_token".encode()).decode()
    assert {type(e) for e in errors} == {
        VendorAuth,
        VendorRejected,
        TimesheetNotFound,
        VendorUnavailable,
    }
    for error in errors:
        assert token not in f"{error} {error!r}" and encoded not in f"{error} {error!r}"


# -- what a project is made of -----------------------------------------------------------------
@pytest.mark.parametrize(("hours", "sent"), [(37.5, 38), (37.4, 37), (0.5, 1), (40, 40)])
def test_budget_hours_are_sent_as_whole_hours_rounded_half_up(harness, hours, sent):
    client_id = harness.add_client(unique("Acme"))

    created = harness.tool().create_project(spec_for(client_id, budget_hours=hours))

    stored = harness.fake.projects[int(created.id)]["estimated_hours"]
    assert stored == sent and type(stored) is int


def test_a_project_without_a_budget_has_no_estimate_and_keeps_its_dates(harness):
    client_id = harness.add_client(unique("Acme"))
    spec = spec_for(
        client_id, budget_hours=None, starts_on=date(2025, 3, 1), ends_on=date(2025, 6, 30)
    )

    created = harness.tool().create_project(spec)

    stored = harness.fake.projects[int(created.id)]
    assert (stored["estimated_hours"], stored["start_date"], stored["end_date"]) == (
        None,
        "2025-03-01",
        "2025-06-30",
    )


@pytest.mark.parametrize(
    ("has_team", "options", "private"),
    [(True, {}, True), (False, {}, False), (True, {"is_private": False}, False)],
)
def test_a_project_is_private_when_it_has_a_team_unless_the_rules_say_otherwise(
    harness, has_team, options, private
):
    client_id = harness.add_client(unique("Acme"))

    created = harness.tool().create_project(spec_for(client_id, has_team=has_team, options=options))

    assert harness.fake.projects[int(created.id)]["is_private"] is private


def test_a_client_another_worker_just_created_is_adopted_instead_of_failing(harness):
    name = unique("Acme")
    existing = harness.add_client(name)

    client = harness.tool().create_client(name.upper())

    assert client.id == existing and len(harness.fake.clients) == 1


def test_a_refused_client_that_does_not_exist_stays_refused(harness):
    with pytest.raises(VendorRejected, match="must not be empty"):
        harness.tool().create_client("   ")


def test_the_project_is_found_past_the_first_page_of_results(harness):
    client_id = harness.add_client(unique("Acme"))
    other_client = harness.add_client(unique("Globex"))
    harness.add_project(other_client, "Work")
    for i in range(205):
        harness.add_project(client_id, f"Work {i:03}")
    wanted = harness.add_project(client_id, "Work")

    found = harness.tool().find_project(client_id, "P-1/O-1", "work", since=SINCE)

    assert found is not None and (found.id, found.client_id) == (wanted, client_id)
    assert harness.fake.requests_to("GET", r".*/projects") == 2


def test_members_already_on_the_project_are_not_added_again(harness):
    tool = harness.tool()
    ana, bob = harness.add_user("ana@example.com"), harness.add_user("bob@example.com")
    project_id = harness.add_project(harness.add_client(unique("Acme")), unique("Work"))

    tool.assign_team(project_id, [ana])
    tool.assign_team(project_id, [ana, bob, bob])

    assert harness.projects()[0].member_ids == {ana, bob}
    assert harness.fake.requests_to("POST", r".*/project_users") == 2


def test_archiving_a_missing_project_is_not_found(harness):
    with pytest.raises(TimesheetNotFound):
        harness.tool().set_archived(harness.missing_project_id(), True)


# -- references --------------------------------------------------------------------------------
def test_web_addresses_with_sub_pages_queries_or_no_scheme_are_read(harness):
    tool, wid = harness.tool(), harness.fake.workspace_id

    for url in (
        f"https://track.toggl.com/{wid}/projects/42/edit?tab=rates#top",
        f"  track.toggl.com/{wid}/projects/42  ",
        f"https://track.toggl.com/{wid}/projects/42",
    ):
        assert tool.parse_reference(url) == "42"


def test_a_url_for_another_workspace_is_an_invalid_reference(harness):
    with pytest.raises(InvalidReference, match="workspace 7654321"):
        harness.tool().parse_reference("https://track.toggl.com/7654321/projects/42/team")


def test_other_tools_lookalike_hosts_and_junk_are_invalid_references(harness):
    tool, wid = harness.tool(), harness.fake.workspace_id

    for bad in (
        "https://app.clockify.me/projects/5f1a2b3c4d5e6f7a8b9c0d1e/edit",
        f"https://track.toggl.com.example.net/{wid}/projects/42",
        f"https://track.toggl.com/{wid}/projects/",
        "42abc",
        "-42",
        "²",
        "x" * 500,
    ):
        with pytest.raises(InvalidReference) as raised:
            tool.parse_reference(bad)
        assert len(raised.value.message) < 150


# -- the commercial shape (issue 21) ----------------------------------------------------------
def test_the_fee_and_the_rate_go_as_numbers_in_the_workspaces_currency(harness):
    client_id = harness.add_client(unique("Acme"))
    tool = harness.tool()
    fee = spec_for(client_id, fixed_fee=Money(amount="12000.50", currency="EUR"))
    rate = spec_for(client_id, hourly_rate=Money(amount="150", currency="EUR"))

    with_fee, with_rate = tool.create_project(fee), tool.create_project(rate)

    stored = harness.fake.projects[int(with_fee.id)]
    assert (stored["fixed_fee"], stored["currency"], stored["rate"]) == (12000.5, "EUR", None)
    stored = harness.fake.projects[int(with_rate.id)]
    assert (stored["rate"], stored["currency"], stored["fixed_fee"]) == (150.0, "EUR", None)


def test_a_project_without_money_sends_no_currency(harness):
    client_id = harness.add_client(unique("Acme"))

    created = harness.tool().create_project(spec_for(client_id))

    assert harness.fake.projects[int(created.id)]["currency"] is None


def test_a_plan_downgraded_since_it_was_read_refuses_the_fee_naming_it(harness):
    client_id = harness.add_client(unique("Acme"))
    tool = harness.tool()
    tool.create_project(spec_for(client_id))  # the plan is read: premium
    harness.fake.plan = "free"
    fee = Money(amount="5000.00", currency="EUR")

    refused = raised_by(tool.create_project, spec_for(client_id, fixed_fee=fee, billable=False))

    assert isinstance(refused, VendorRejected) and "fixed_fee" in str(refused)
    assert "currency" in str(refused)


def test_template_tasks_go_with_their_estimates_in_seconds_without_listing_a_new_project(
    harness,
):
    client_id = harness.add_client(unique("Acme"))
    template = harness.add_template(client_id, unique("Template"), {"Design": 1.5})
    harness.fake.add_task(int(template), "Dropped", 3600)
    [dropped] = [t for t in harness.fake.tasks.values() if t["name"] == "Dropped"]
    dropped["active"] = False  # a done task of the template is not copied
    tool = harness.tool()
    spec = spec_for(client_id, template=template)

    created = tool.create_project(spec)
    tool.complete_setup(created.id, spec)

    assert harness.tasks(created.id) == {"Design": 1.5}
    assert harness.fake.requests_to("GET", rf".*/projects/{created.id}/tasks") == 0
    [task] = [t for t in harness.fake.tasks.values() if t["project_id"] == int(created.id)]
    assert task["estimated_seconds"] == 5400 and task["active"] is True
