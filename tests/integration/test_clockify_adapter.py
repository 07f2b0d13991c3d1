"""What only Clockify does: raw ``X-Api-Key``, ISO-8601 estimates, the marker in the note,
the server-side e-mail filter, 409 on a duplicate client and ``{message, code}`` errors.
Asserted on the fake's state, over real HTTP."""

from __future__ import annotations

import secrets
import uuid

import pytest

from handlers.ports import ProjectSpec
from schemas.errors import (
    InvalidReference,
    ProvisionerError,
    TimesheetNotFound,
    VendorAuth,
    VendorRejected,
    VendorUnavailable,
)
from schemas.inbound import Money
from tests.integration.harness import fast_retrying, unique
from tests.integration.harnesses.clockify import open_harness


@pytest.fixture
def harness():
    h = open_harness()
    try:
        yield h
    finally:
        h.fake.stop()


@pytest.fixture
def fake(harness):
    return harness.fake


def spec(client_id: str, **overrides) -> ProjectSpec:
    values = dict(
        client_id=client_id,
        name=unique("Discovery"),
        marker=f"P-{uuid.uuid4().hex[:6]}/O-1",
        budget_hours=40,
        billable=True,
    )
    return ProjectSpec(**{**values, **overrides})


def test_the_api_key_is_sent_raw_in_the_x_api_key_header(harness, fake):
    harness.tool().clients_named("Acme")

    [request] = fake.received
    assert request.headers["x-api-key"] == fake.api_key
    assert "authorization" not in request.headers


@pytest.mark.parametrize(
    ("hours", "duration"), [(37.5, "PT37H30M"), (40, "PT40H"), (0.25, "PT15M")]
)
def test_the_budget_is_sent_as_an_iso_8601_duration(harness, fake, hours, duration):
    client_id = fake.add_client(unique("Acme"))

    tool = harness.tool()
    wanted = spec(client_id, budget_hours=hours)
    created = tool.create_project(wanted)
    tool.complete_setup(created.id, wanted)

    estimate = fake.projects[created.id]["timeEstimate"]
    assert (estimate["estimate"], estimate["type"], estimate["active"]) == (
        duration,
        "MANUAL",
        True,
    )
    assert harness.projects()[0].budget_hours == hours


def test_a_project_without_a_budget_sends_no_estimate(harness, fake):
    client_id = fake.add_client(unique("Acme"))
    tool, wanted = harness.tool(), spec(client_id, budget_hours=None)

    tool.complete_setup(tool.create_project(wanted).id, wanted)

    [post] = [r for r in fake.received if r.method == "POST"]
    assert "estimate" not in post.body
    assert not [r for r in fake.received if r.method == "PATCH"]


def test_a_project_with_a_team_is_private_unless_the_rules_say_otherwise(harness, fake):
    client_id = fake.add_client(unique("Acme"))
    tool = harness.tool()

    private = tool.create_project(spec(client_id, has_team=True))
    public = tool.create_project(spec(client_id, has_team=True, options={"is_public": True}))

    assert fake.projects[private.id]["public"] is False
    assert fake.projects[public.id]["public"] is True


def test_the_marker_is_in_the_note_and_found_among_projects_across_pages(harness, fake):
    tool = harness.tool()
    client_id = fake.add_client(unique("Acme"))
    marker = f"P-{uuid.uuid4().hex[:6]}/O-1"
    fake.add_project(client_id, unique("Look-alike"), note=f"timesheet-provisioner:{marker}1")
    for n in range(4):
        fake.add_project(client_id, unique(f"Other {n}"), note=f"timesheet-provisioner:P-x/O-{n}")
    fake.add_project(
        fake.add_client(unique("Elsewhere")),
        unique("Same marker, other client"),
        note=f"timesheet-provisioner:{marker}",
    )
    created = tool.create_project(spec(client_id, marker=marker))

    found = tool.find_project(client_id, marker, "renamed since")

    assert marker in fake.projects[created.id]["note"]
    assert found is not None and found.id == created.id
    pages = {r.arg("page") for r in fake.received if r.path.endswith("/projects")}
    assert {"1", "2", "3"} <= pages


def test_an_archived_project_is_found_by_its_marker(harness, fake):
    tool = harness.tool()
    client_id = fake.add_client(unique("Acme"))
    marker = f"P-{uuid.uuid4().hex[:6]}/O-2"
    pid = fake.add_project(client_id, unique("Old"), note=f"timesheet-provisioner:{marker}")
    fake.projects[pid]["archived"] = True

    found = tool.find_project(client_id, marker, "Old")

    assert found is not None and (found.id, found.archived) == (pid, True)


def test_users_are_found_in_one_listing_and_matched_exactly(harness, fake):
    diana = fake.add_user("diana@example.com")
    ana = fake.add_user("Ana@Example.com")

    found = harness.tool().find_users(["ANA@example.com", "ghost@example.com"])

    assert found == {"ana@example.com": ana}
    assert diana not in found.values()
    asked = [r.arg("email") for r in fake.received if r.path.endswith("/users")]
    assert asked == [None]  # two addresses, one unfiltered listing


def test_a_substring_match_alone_finds_nobody(harness, fake):
    fake.add_user("diana@example.com")

    assert harness.tool().find_users(["ana@example.com"]) == {}


def test_assigning_the_team_posts_only_new_members(harness, fake):
    tool = harness.tool()
    ana, bo = fake.add_user("ana@example.com"), fake.add_user("bo@example.com")
    created = tool.create_project(spec(fake.add_client(unique("Acme"))))

    tool.assign_team(created.id, [ana])
    tool.assign_team(created.id, [ana, bo])
    tool.assign_team(created.id, [bo, ana])

    posts = [r.body for r in fake.received if r.path.endswith("/memberships")]
    assert posts == [{"userIds": [ana], "remove": False}, {"userIds": [bo], "remove": False}]
    assert harness.projects()[0].member_ids == {ana, bo}


def test_a_duplicate_client_on_create_is_resolved_by_listing_again(harness, fake):
    name = unique("Acme")
    theirs = fake.add_client(name)

    client = harness.tool().create_client(name)

    assert client.id == theirs
    assert fake.log[0][:3] == ("POST", f"/api/v1/workspaces/{fake.workspace_id}/clients", 409)
    assert len(fake.clients) == 1


def test_an_invalid_client_name_is_rejected_with_the_vendors_words(harness):
    with pytest.raises(VendorRejected) as raised:
        harness.tool().create_client("A")

    assert raised.value.status == 400
    assert "between 2 and 250 characters" in raised.value.message


def test_the_vendors_message_surfaces_in_the_rejection(harness, fake):
    client_id = fake.add_client("Uber Special")
    fake.add_project(client_id, "Website")

    with pytest.raises(VendorRejected) as raised:
        harness.tool().create_project(spec(client_id, name="Website"))

    assert raised.value.status == 400
    assert "Other project for client Uber Special already exists." in raised.value.message


def test_a_malformed_or_unknown_project_id_is_not_found(harness):
    tool = harness.tool()

    for project_id in ("not-an-id", secrets.token_hex(12)):
        with pytest.raises(TimesheetNotFound):
            tool.get_project(project_id)
        with pytest.raises(TimesheetNotFound):
            tool.set_archived(project_id, True)


@pytest.mark.parametrize(
    "reference",
    [
        "https://app.clockify.me/projects/{id}/edit",
        "https://app.clockify.me/projects/{id}/edit?tab=team#members",
        "app.clockify.me/projects/{id}",
        "https://euc1.clockify.me/projects/{ID}/edit",
        "  {ID}\n",
    ],
)
def test_clockify_urls_and_ids_are_read(harness, reference):
    project_id = secrets.token_hex(12)

    parsed = harness.tool().parse_reference(reference.format(id=project_id, ID=project_id.upper()))

    assert parsed == project_id


@pytest.mark.parametrize(
    "reference",
    [
        "12345678",
        "https://acme.harvestapp.com/projects/123",
        "https://track.toggl.com/1234/projects/5678/team",
        "https://app.clockify.me/tracker",
        "https://clockify.me.evil.example/projects/5b641568b07987035750505e/edit",
        "5b641568b07987035750505e5b",
        "x" * 500,
    ],
)
def test_other_references_are_invalid_and_named_briefly(harness, reference):
    with pytest.raises(InvalidReference) as raised:
        harness.tool().parse_reference(reference)

    assert reference[:20] in raised.value.message
    assert len(raised.value.message) < 150


def test_the_api_key_never_appears_in_an_error(harness, fake):
    key = fake.api_key
    tool = harness.tool(retrying=fast_retrying(attempts=2))
    raised: list[ProvisionerError] = []
    attempts = [
        lambda: harness.tool(api_key=key[:-1]).clients_named("Acme"),
        lambda: tool.create_client("A"),
        lambda: tool.get_project(secrets.token_hex(12)),
        lambda: tool.create_project(spec(secrets.token_hex(12))),
    ]
    for attempt in attempts:
        with pytest.raises(ProvisionerError) as caught:
            attempt()
        raised.append(caught.value)
    fake.fail_next(5, status=503)
    with pytest.raises(VendorUnavailable) as caught:
        tool.clients_named("Acme")
    raised.append(caught.value)

    assert isinstance(raised[0], VendorAuth)
    for error in raised:
        assert key not in str(error) and key not in repr(error)
        assert key[:-1] not in str(error)


# -- the commercial shape (issue 21) ----------------------------------------------------------


@pytest.mark.parametrize(("amount", "cents"), [("150.00", 15000), ("99.995", 10000), ("0.5", 50)])
def test_the_hourly_rate_is_sent_as_whole_cents_rounded_half_up(harness, fake, amount, cents):
    client_id = fake.add_client(unique("Acme"))
    rate = Money(amount=amount, currency="EUR")

    created = harness.tool().create_project(spec(client_id, hourly_rate=rate))

    assert fake.projects[created.id]["hourlyRate"] == {"amount": cents, "currency": "EUR"}


def test_the_money_budget_is_the_active_estimate_in_cents_and_the_hours_are_left_out(harness, fake):
    client_id = fake.add_client(unique("Acme"))
    tool = harness.tool()
    wanted = spec(client_id, budget_hours=40, money_budget=Money(amount="9000.50", currency="EUR"))

    report = tool.complete_setup(tool.create_project(wanted).id, wanted)

    [project] = fake.projects.values()
    assert project["budgetEstimate"]["estimate"] == 900050
    assert project["budgetEstimate"]["active"] and not project["timeEstimate"]["active"]
    assert report is not None and report.budget_set is False and not report.left_out
    assert ["PT40H" in w for w in report.warnings] == [True]


def test_the_workspace_currency_is_read_once_per_process(harness, fake):
    client_id = fake.add_client(unique("Acme"))
    tool = harness.tool()
    rate = Money(amount="100.00", currency="EUR")

    for _ in range(2):
        wanted = spec(client_id, hourly_rate=rate, money_budget=rate, budget_hours=None)
        tool.complete_setup(tool.create_project(wanted).id, wanted)

    reads = [r for r in fake.received if r.method == "GET" and r.path.endswith(fake.workspace_id)]
    assert len(reads) == 1


def test_the_notes_come_first_and_the_marker_keeps_its_own_last_line(harness, fake):
    client_id = fake.add_client(unique("Acme"))
    notes = "Deal: https://app.hubspot.com/contacts/42/record/0-3/7\nFixed bid."
    wanted = spec(client_id, notes=notes)

    created = harness.tool().create_project(wanted)

    assert fake.projects[created.id]["note"] == f"{notes}\ntimesheet-provisioner:{wanted.marker}"


def test_a_note_holding_notes_and_another_offerings_marker_is_not_adopted(harness, fake):
    tool = harness.tool()
    client_id = fake.add_client(unique("Acme"))
    marker = f"P-{uuid.uuid4().hex[:6]}/O-1"
    fake.add_project(client_id, unique("Sibling"), note=f"Notes\ntimesheet-provisioner:{marker}1")

    assert tool.find_project(client_id, marker, unique("Discovery")) is None


def test_a_project_made_before_notes_with_the_marker_alone_is_still_adopted(harness, fake):
    tool = harness.tool()
    client_id = fake.add_client(unique("Acme"))
    wanted = spec(client_id, notes="Notes the rules give now")
    old = fake.add_project(client_id, wanted.name, note=f"timesheet-provisioner:{wanted.marker}")

    # A retry of the create meets the name taken, finds the marker and adopts.
    adopted = tool.create_project(wanted)

    assert adopted.id == old
    assert len(fake.projects) == 1


def test_a_retried_create_with_notes_adopts_its_project_instead_of_failing(harness, fake):
    client_id = fake.add_client(unique("Acme"))
    wanted = spec(client_id, notes="Deal: https://example.com/deal/7")
    first = harness.tool().create_project(wanted)

    again = harness.tool().create_project(wanted)

    assert again.id == first.id
    assert len(fake.projects) == 1


def test_archiving_keeps_the_hourly_rate_and_the_notes(harness, fake):
    client_id = fake.add_client(unique("Acme"))
    tool = harness.tool()
    wanted = spec(client_id, notes="Notes", hourly_rate=Money(amount="80.00", currency="EUR"))
    created = tool.create_project(wanted)

    tool.set_archived(created.id, True)

    project = fake.projects[created.id]
    assert project["archived"] is True
    assert project["hourlyRate"] == {"amount": 8000, "currency": "EUR"}
    assert project["note"].startswith("Notes\n")


def test_a_rate_in_anything_but_whole_cents_is_refused_as_clockify_does(harness, fake):
    client_id = fake.add_client(unique("Acme"))
    body = {"name": unique("Raw"), "clientId": client_id, "hourlyRate": {"amount": 150.5}}

    response = harness.tool().http.request(
        "POST", f"/workspaces/{fake.workspace_id}/projects", json=body, ok_statuses={400}
    )

    assert response.status_code == 400
    assert "cents" in response.json()["message"]
