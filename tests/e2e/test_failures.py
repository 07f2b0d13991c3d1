"""Failure handling on the real broker (issue 5): delayed retries, dead letters, replay."""

from __future__ import annotations

import json

from tests import builders as b
from worker.commands.main import main as cli


def test_in_progress_before_closed_won_provisions_once_the_deal_arrives(bus, harvest, start_worker):
    project = b.project()
    start_worker(PROVISIONER_RETRY_DELAYS="1,2,4")

    bus.publish(b.status_changed(project, "in_progress"))
    bus.publish(b.closed_won(project))
    outcomes = bus.wait_for(2, project_id=project["id"])

    assert [o["type"] for o in outcomes] == ["project.activated", "timesheet.provisioned"]
    assert len(harvest.projects) == 1 and bus.dead_letters() == []


def test_a_project_never_won_ends_as_project_not_active(bus, start_worker):
    project = b.project()
    start_worker()  # delays 0.2 s and 0.4 s: three attempts in all

    bus.publish(b.status_changed(project, "in_progress"))
    [failed] = bus.wait_for(1, type="timesheet.failed", project_id=project["id"])
    [(headers, _)] = bus.wait_dead_letters(1)

    assert failed["data"]["code"] == "project_not_active"
    assert (failed["data"]["attempts"], failed["data"]["dead_lettered"]) == (3, True)
    assert (headers["x-error-code"], headers["x-attempts"]) == ("project_not_active", 3)
    assert len(headers["x-failure-history"]) == 3


def test_a_vendor_down_past_every_retry_is_dead_lettered_then_replayed_once(
    bus, harvest, start_worker, worker_env, monkeypatch
):
    project = b.project()
    start_worker()
    bus.publish(b.closed_won(project))
    bus.wait_for(1, project_id=project["id"])
    harvest.fail_next(10_000, status=503)

    bus.publish(b.status_changed(project, "in_progress"))
    [failed] = bus.wait_for(1, type="timesheet.failed", project_id=project["id"], timeout=90)
    [(headers, _)] = bus.wait_dead_letters(1)
    assert failed["data"]["code"] == "vendor_unavailable"
    assert (failed["data"]["retryable"], failed["data"]["attempts"]) == (True, 3)
    assert headers["x-error-code"] == "vendor_unavailable"
    assert harvest.projects == {}

    harvest.clear_faults()  # the vendor is back
    for name, value in worker_env.items():
        monkeypatch.setenv(name, value)
    assert cli(["dlq", "replay", "--all"]) == 0
    [done] = bus.wait_for(1, type="timesheet.provisioned", project_id=project["id"])

    assert done["data"]["created"] is True and len(harvest.projects) == 1
    assert bus.dead_letters() == []


def test_client_ambiguous_is_dead_lettered_until_a_person_maps_the_duplicate(
    bus, harvest, start_worker, worker_env, monkeypatch, capsys
):
    first = b.project(client={"id": b.rid("C"), "name": "Acme"})
    duplicate = b.project(client={"id": b.rid("C"), "name": "Acme"})
    start_worker()
    for p in (first, duplicate):  # one after the other: the first one owns "Acme"
        bus.publish(b.closed_won(p))
        bus.publish(b.status_changed(p, "in_progress"))
        bus.wait_for(2, project_id=p["id"])
    [failed] = bus.wait_for(1, type="timesheet.failed", project_id=duplicate["id"])
    [(headers, _)] = bus.wait_dead_letters(1)
    [acme] = harvest.clients
    message = failed["data"]["message"]
    assert failed["data"]["code"] == headers["x-error-code"] == "client_ambiguous"
    for named in (first["client"]["id"], duplicate["client"]["id"], str(acme)):
        assert named in message

    other = harvest.add_client("Acme (Europe)")
    for name, value in worker_env.items():
        monkeypatch.setenv(name, value)
    crm = duplicate["client"]["id"]
    assert (
        cli(["clients", "map", "--tool", "harvest", "--crm", crm, "--tool-client", str(other)]) == 0
    )
    assert cli(["dlq", "replay", "--all", "--code", "client_ambiguous"]) == 0
    [done] = bus.wait_for(1, type="timesheet.provisioned", project_id=duplicate["id"])

    assert done["data"]["timesheet_client_id"] == str(other)
    assert bus.dead_letters() == [] and len(harvest.projects) == 2


def test_refused_credentials_fail_as_vendor_auth_and_the_token_stays_secret(
    bus, harvest, spawn_worker
):
    secret = "tok-" + b.rid("secret")
    project = b.project()
    worker = spawn_worker(HARVEST_ACCESS_TOKEN=secret)  # not the token the fake knows

    bus.publish(b.closed_won(project))
    bus.publish(b.status_changed(project, "in_progress"))
    [failed] = bus.wait_for(1, type="timesheet.failed", project_id=project["id"])
    [(headers, _)] = bus.wait_dead_letters(1)

    assert (failed["data"]["code"], failed["data"]["retryable"]) == ("vendor_auth", False)
    assert failed["data"]["attempts"] == 1  # a refusal is not retried
    assert headers["x-error-code"] == "vendor_auth"
    assert worker.process.poll() is None  # still running
    assert worker.stop() == 0
    seen = json.dumps(bus.outcomes) + json.dumps(headers, default=str) + worker.logs()
    assert secret not in seen
