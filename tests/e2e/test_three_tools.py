"""One project whose offerings the rules send to three different tools (issue 4)."""

from __future__ import annotations

import pytest

from fakes.clockify import FakeClockify
from fakes.toggl import FakeToggl
from tests import builders as b

RULES = """
[[rules]]
match = { offering = "Training*" }
tool = "toggl"

[[rules]]
match = { kind = "fixed_bid" }
tool = "clockify"
"""


@pytest.fixture
def toggl():
    with FakeToggl(rate_limit=(1000, 1.0)) as fake:
        yield fake


@pytest.fixture
def clockify():
    with FakeClockify(rate_limit=(1000, 1.0)) as fake:
        yield fake


def test_rules_send_one_projects_offerings_to_three_tools(
    bus, harvest, toggl, clockify, start_worker, tmp_path
):
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    for fake in (harvest, toggl, clockify):
        fake.add_user("ana@example.com")
    team = [b.member("ana@example.com")]
    advice = b.offering("Advice", team=team, budget_hours=10)
    training = b.offering("Training day", team=team, budget_hours=7.5)
    build = b.offering("Build", kind="fixed_bid", team=team, budget_hours=37.5)
    project = b.project(advice, training, build)
    start_worker(
        PROVISIONER_RULES=str(rules),
        TOGGL_API_TOKEN=toggl.token,
        TOGGL_WORKSPACE_ID=str(toggl.workspace_id),
        TOGGL_BASE_URL=f"{toggl.origin}/api/v9",
        TOGGL_RATE_LIMIT="1000/1",
        CLOCKIFY_API_KEY=clockify.api_key,
        CLOCKIFY_WORKSPACE_ID=clockify.workspace_id,
        CLOCKIFY_BASE_URL=f"{clockify.origin}/api/v1",
        CLOCKIFY_RATE_LIMIT="1000/1",
    )

    bus.publish(b.closed_won(project))
    bus.publish(b.status_changed(project, "in_progress"))
    done = bus.wait_for(3, type="timesheet.provisioned", project_id=project["id"])

    tools = {o["data"]["offering_id"]: o["data"]["tool"] for o in done}
    assert tools == {advice["id"]: "harvest", training["id"]: "toggl", build["id"]: "clockify"}
    assert all(o["data"]["team_assigned"] == ["ana@example.com"] for o in done)
    [harvest_project] = harvest.projects.values()
    [toggl_project] = toggl.projects.values()
    [clockify_project] = clockify.projects.values()
    assert harvest_project["budget"] == 10
    assert toggl_project["estimated_hours"] == 8 and toggl_project["is_private"] is True
    assert clockify_project["timeEstimate"]["estimate"] == "PT37H30M"  # PATCH .../estimate
    by_tool = {o["data"]["tool"]: o["data"]["timesheet_url"] for o in done}
    assert by_tool["toggl"].startswith(f"https://track.toggl.com/{toggl.workspace_id}/projects/")
    assert by_tool["clockify"].startswith("https://app.clockify.me/projects/")
