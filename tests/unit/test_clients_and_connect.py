"""Client mapping (one tool client per CRM client, and back) and Connect Existing."""

from __future__ import annotations

import pytest

from handlers.ports import ClientMapping
from tests import builders as b
from tests.unit.world import World


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def provision(world: World, project: dict):
    world.send(b.closed_won(project))
    return world.send(b.status_changed(project, "in_progress"))


def test_a_mapped_client_is_reused_across_projects(world):
    client = {"id": b.rid("C"), "name": "Acme"}

    first = provision(world, b.project(client=client)).of("timesheet.provisioned")[0]
    second = provision(world, b.project(client=client)).of("timesheet.provisioned")[0]

    assert first["timesheet_client_id"] == second["timesheet_client_id"]
    assert len(world.tool.clients) == 1


def test_a_new_crm_client_adopts_the_tool_client_of_the_same_name(world):
    existing = world.tool.add_client("Acme Corp")

    done = provision(world, b.project(client={"id": "C-1", "name": "  acme corp"}))

    assert done.of("timesheet.provisioned")[0]["timesheet_client_id"] == existing
    assert world.store.tool_client("harvest", "C-1") == existing


def test_two_crm_clients_claiming_one_tool_client_is_ambiguous_and_dead_lettered(world):
    provision(world, b.project(client={"id": "C-1", "name": "Acme"}))
    tool_client = world.store.tool_client("harvest", "C-1")

    duplicate = b.project(client={"id": "C-2", "name": "Acme"})
    result = provision(world, duplicate)

    [failed] = result.of("timesheet.failed")
    assert failed["code"] == "client_ambiguous" and failed["dead_lettered"] is True
    for named in ("C-1", "C-2", tool_client):
        assert named in failed["message"]
    assert result.dead_lettered
    assert result.copy.properties.headers["x-error-code"] == "client_ambiguous"


def test_a_persons_mapping_fix_lets_the_next_request_provision(world):
    provision(world, b.project(client={"id": "C-1", "name": "Acme"}))
    duplicate = b.project(client={"id": "C-2", "name": "Acme"})
    event = b.status_changed(duplicate, "in_progress")
    world.send(b.closed_won(duplicate))
    assert world.send(event).dead_lettered

    other = world.tool.add_client("Acme (EU)")
    world.store.remap_client(ClientMapping("harvest", "C-2", other, "Acme"))
    replayed = world.send(event)  # a replay keeps the event id

    [done] = replayed.of("timesheet.provisioned")
    assert done["timesheet_client_id"] == other and replayed.copy is None


def test_several_tool_clients_of_one_name_are_ambiguous(world):
    first, second = world.tool.add_client("Globex"), world.tool.add_client("GLOBEX")

    result = provision(world, b.project(client={"id": "C-9", "name": "Globex"}))

    [failed] = result.of("timesheet.failed")
    assert failed["code"] == "client_ambiguous"
    assert first in failed["message"] and second in failed["message"]


def connect(world: World, project: dict, offering_id: str, reference: str):
    return world.send(b.connect_requested(project, offering_id, reference, tool="harvest"))


@pytest.mark.parametrize("as_url", [False, True])
def test_connect_existing_by_id_or_url_links_and_maps_the_client(world, as_url):
    world.tool.add_user("ana@example.com")
    offering = b.offering(team=[b.member("ana@example.com")])
    project = b.project(offering)
    world.send(b.closed_won(project))
    client = world.tool.add_client("Acme")
    existing = world.tool.add_project(client)
    reference = world.tool.project_url(existing) if as_url else existing

    [connected] = connect(world, project, offering["id"], reference).of("timesheet.connected")

    assert (connected["timesheet_project_id"], connected["timesheet_client_id"]) == (
        existing,
        client,
    )
    assert connected["team_assigned"] == ["ana@example.com"]
    assert world.store.link(project["id"], offering["id"]).timesheet_project_id == existing
    assert world.store.tool_client("harvest", project["client"]["id"]) == client
    assert world.tool.projects[existing].members


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("garbage", "invalid_timesheet_reference"),
        ("missing", "timesheet_not_found"),
        ("other_client", "client_mismatch"),
        ("unknown_offering", "unknown_offering"),
        ("linked_elsewhere", "already_linked"),
    ],
)
def test_connect_existing_failures_have_their_contract_codes(world, case, code):
    offering = b.offering()
    project = b.project(offering)
    world.send(b.closed_won(project))
    mine, theirs = world.tool.add_client("Acme"), world.tool.add_client("Initech")
    world.store.map_client(ClientMapping("harvest", project["client"]["id"], mine))
    world.store.map_client(ClientMapping("harvest", "C-other", theirs))
    ours, foreign = world.tool.add_project(mine), world.tool.add_project(theirs)
    offering_id, reference = offering["id"], ours
    if case == "garbage":
        reference = "https://example.com/not/a/project"
    elif case == "missing":
        reference = "99999999"
    elif case == "other_client":
        reference = foreign
    elif case == "unknown_offering":
        offering_id = "O-nope"
    else:
        connect(world, project, offering_id, ours)
        reference = world.tool.add_project(mine, "Another")

    result = connect(world, project, offering_id, reference)

    [failed] = result.of("timesheet.failed")
    assert failed["code"] == code
    assert (failed["dead_lettered"], result.copy) == (False, None)


def test_connecting_the_same_project_twice_is_harmless(world):
    offering = b.offering()
    project = b.project(offering)
    world.send(b.closed_won(project))
    existing = world.tool.add_project(world.tool.add_client("Acme"))

    connect(world, project, offering["id"], existing)
    again = connect(world, project, offering["id"], existing)

    assert again.of("timesheet.connected")[0]["timesheet_project_id"] == existing
