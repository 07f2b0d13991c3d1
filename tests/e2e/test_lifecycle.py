"""Status follow-up, Connect Existing and crash-proof creation against the fake Harvest,
through the real broker and the real worker process (issue 3)."""

from __future__ import annotations

import signal

from tests import builders as b
from tests.e2e.bus import wait_until


def test_on_hold_archives_and_in_progress_restores_in_harvest(bus, harvest, start_worker):
    project = b.project(b.offering("Discovery"), b.offering("Build"))
    start_worker()
    bus.publish(b.closed_won(project))
    bus.publish(b.status_changed(project, "in_progress"))
    bus.wait_for(2, type="timesheet.provisioned", project_id=project["id"])

    bus.publish(b.status_changed(project, "on_hold"))
    bus.wait_for(2, type="timesheet.archived", project_id=project["id"])
    assert [p["is_active"] for p in harvest.projects.values()] == [False, False]

    bus.publish(b.status_changed(project, "in_progress"))
    bus.wait_for(2, type="timesheet.restored", project_id=project["id"])
    assert [p["is_active"] for p in harvest.projects.values()] == [True, True]


def test_connect_existing_by_url_links_the_harvest_project(bus, harvest, start_worker):
    offering = b.offering()
    project = b.project(offering)
    client = harvest.add_client(project["client"]["name"])
    existing = harvest.add_project(client, "Running work")
    start_worker()
    bus.publish(b.closed_won(project))

    url = f"https://acme.harvestapp.com/projects/{existing}/edit"
    bus.publish(b.connect_requested(project, offering["id"], url, tool="harvest"))
    [connected] = bus.wait_for(1, type="timesheet.connected", project_id=project["id"])

    assert connected["data"]["timesheet_project_id"] == str(existing)
    assert connected["data"]["timesheet_client_id"] == str(client)
    bus.publish(b.status_changed(project, "in_progress"))
    [skipped] = bus.wait_for(1, type="timesheet.skipped", project_id=project["id"])
    assert skipped["data"]["reason"] == "already_linked"
    assert len(harvest.projects) == 1


def test_a_worker_killed_after_the_create_leaves_exactly_one_project(bus, harvest, spawn_worker):
    project = b.project()
    worker = spawn_worker()
    bus.publish(b.closed_won(project))
    bus.wait_for(1, project_id=project["id"])
    # Harvest makes the project at once but answers late: the worker dies in between.
    harvest.hold_answer("POST", "/v2/projects", 30.0)
    bus.publish(b.status_changed(project, "in_progress"))
    wait_until(lambda: harvest.projects, "Harvest made the project")

    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait(10)
    spawn_worker()

    [done] = bus.wait_for(1, type="timesheet.provisioned", project_id=project["id"])
    assert done["data"]["created"] is False
    [made] = harvest.projects.values()
    assert done["data"]["timesheet_project_id"] == str(made["id"])
    creates = [r for r in harvest.received if (r.method, r.path) == ("POST", "/v2/projects")]
    assert len(creates) == 1  # the second worker looked the project up instead
