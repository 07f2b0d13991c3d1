"""Projects of one client worked at once on different lanes (issue 10, finding 3): the client
is looked up, created and mapped once, and nobody calls the fresh mapping a conflict."""

from __future__ import annotations

import contextlib
import threading

from tests import builders as b
from tests.unit.memory_tool import MemoryTool
from tests.unit.world import Result, World

# How long a lane waits in ``clients_named`` for the other lane to arrive there too. The old
# code let both in at once; with the client lock the second never comes, and the first goes
# on alone once this has passed.
MEETING = 0.5


class MeetingTool(MemoryTool):
    """Every look-up by name answers only once a second one has listed the clients too, so
    two lanes that may look up one client together both see the tool as it was before
    either of them created it."""

    def __init__(self):
        super().__init__()
        self.meeting = threading.Barrier(2)

    def clients_named(self, name):
        found = super().clients_named(name)
        # Once the other lane has listed the clients too, or alone once MEETING has passed.
        with contextlib.suppress(threading.BrokenBarrierError):
            self.meeting.wait(MEETING)
        return found


def world_with_meetings(tmp_path) -> World:
    world = World(tmp_path)
    world.tools["harvest"] = world.deps.tools["harvest"] = MeetingTool()
    return world


def at_once(world: World, events: list[dict]) -> list[Result]:
    results: list[Result | None] = [None] * len(events)

    def send(i: int) -> None:
        results[i] = world.send(events[i])

    lanes = [threading.Thread(target=send, args=(i,)) for i in range(len(events))]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join(30)
    assert all(r is not None for r in results)
    return results


def test_two_projects_of_one_new_client_started_at_once_share_one_tool_client(tmp_path):
    world = world_with_meetings(tmp_path)
    client = {"id": b.rid("C"), "name": b.rid("Acme")}
    projects = [b.project(client=client), b.project(client=client)]
    for p in projects:
        world.send(b.closed_won(p))

    results = at_once(world, [b.status_changed(p, "in_progress") for p in projects])

    assert [r.of("timesheet.failed") for r in results] == [[], []]
    assert not any(r.copy for r in results)  # neither retried nor dead-lettered
    [first], [second] = (r.of("timesheet.provisioned") for r in results)
    assert first["timesheet_client_id"] == second["timesheet_client_id"]
    assert list(world.tool.clients) == [first["timesheet_client_id"]]
    assert world.store.tool_client("harvest", client["id"]) == first["timesheet_client_id"]


def test_two_crm_clients_of_one_name_at_once_make_one_tool_client_and_one_is_ambiguous(tmp_path):
    world = world_with_meetings(tmp_path)
    name = b.rid("Globex")
    projects = [b.project(client={"id": b.rid("C"), "name": n}) for n in (name, name.upper())]
    for p in projects:
        world.send(b.closed_won(p))

    results = at_once(world, [b.status_changed(p, "in_progress") for p in projects])

    assert len(world.tool.clients) == 1  # never two tool clients of one name
    outcomes = sorted(
        ["provisioned"]
        if r.of("timesheet.provisioned")
        else [f["code"] for f in r.of("timesheet.failed")]
        for r in results
    )
    assert outcomes == [["client_ambiguous"], ["provisioned"]]
