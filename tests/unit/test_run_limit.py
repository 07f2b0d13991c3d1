"""RUN_LIMIT: an event begun more than RUN_LIMIT times, each time cut short, is a message
that kills the worker and goes to a person (``worker_crashed``). A run counts when another
worker process finds it begun and never ended; copies handed to one process, and runs that
ended with a decision, count nothing; a copy of an event that did finish is a duplicate. The
chaos trials met what counting every redelivered start did: two or three copies of one
event, and the events queued behind it, used the limit up several times as fast as the
kills did."""

from __future__ import annotations

from schemas.errors import VendorUnavailable
from tests import builders as b
from tests.unit.world import World
from worker.processing import RUN_LIMIT


def crashed_runs(world: World, event: dict, runs: int) -> None:
    """``runs`` runs of the event, each in a worker process of its own, each cut short."""
    key = (event["source"], event["id"])
    for run in range(runs):
        world.store.note_run(key, f"crashed-worker-{run}:1", 0)


def test_copies_handed_to_one_process_count_as_one_run(tmp_path):
    world = World(tmp_path)
    project = b.project()
    world.send(b.closed_won(project))
    event = b.status_changed(project, "in_progress")
    crashed_runs(world, event, RUN_LIMIT - 1)
    world.tool.fail_creates = 1  # the first copy does not finish: it is retried

    first, second, third = (
        world.send(event, redelivered=True, run_by="worker-9:1") for _ in range(3)
    )

    assert first.retried
    assert second.decision.log == "processed" and second.of("timesheet.provisioned")
    assert third.decision.log == "duplicate_republished"
    assert not any(c.of("timesheet.failed") for c in (first, second, third))
    assert world.store.note_run((event["source"], event["id"]), "worker-9:1", 9) == RUN_LIMIT


def test_a_new_process_past_the_limit_dead_letters_an_event_that_never_finished(tmp_path):
    world = World(tmp_path)
    project = b.project()
    world.send(b.closed_won(project))
    event = b.status_changed(project, "in_progress")
    crashed_runs(world, event, RUN_LIMIT)

    result = world.send(event, redelivered=True, run_by="worker-10:1")

    [failed] = result.of("timesheet.failed")
    assert (failed["code"], result.dead_lettered) == ("worker_crashed", True)
    assert world.tool.projects == {}  # the vendor was never called for it


def test_a_copy_of_an_event_that_finished_is_a_duplicate_whatever_its_runs(tmp_path):
    world = World(tmp_path)
    project = b.project()
    world.send(b.closed_won(project))
    event = b.status_changed(project, "in_progress")
    done = world.send(event)
    crashed_runs(world, event, RUN_LIMIT + 5)

    copy = world.send(event, redelivered=True, run_by="worker-30:1")

    assert copy.decision.log == "duplicate_republished" and not copy.dead_lettered
    assert [e["id"] for e in copy.events] == [e["id"] for e in done.events]
    assert len(world.tool.projects) == len(done.of("timesheet.provisioned"))


def test_runs_that_ended_with_a_decision_are_no_crashes_however_many(tmp_path, monkeypatch):
    # A message that waited behind others, or whose run ended in a retry before the worker
    # died, comes back redelivered: no crash of its doing, however often that happens.
    world = World(tmp_path)
    project = b.project()
    world.send(b.closed_won(project))
    event = b.status_changed(project, "in_progress")

    def down(spec):
        raise VendorUnavailable("503 from the tool")

    monkeypatch.setattr(world.tool, "create_project", down)

    runs = [world.send(event, redelivered=True, run_by=f"worker-{n}:1") for n in range(30)]

    assert all(r.retried for r in runs)
    assert not any(r.of("timesheet.failed") for r in runs)
