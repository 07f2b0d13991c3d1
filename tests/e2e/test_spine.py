"""The worker spine on the real RabbitMQ and the fake Harvest over HTTP (issue 2)."""

from __future__ import annotations

from tests import builders as b


def by_offering(outcomes: list[dict]) -> dict[str, dict]:
    return {o["data"]["offering_id"]: o for o in outcomes if "offering_id" in o["data"]}


def test_won_deal_then_in_progress_provisions_sold_ticked_offerings(bus, harvest, start_worker):
    ana = harvest.add_user("ana@example.com", "Ana", "Lima")
    team = [b.member("Ana@Example.com"), b.member("ghost@example.com")]
    discovery = b.offering("Discovery", budget_hours=40, team=team, starts_on="2026-12-01")
    build = b.offering("Build", budget_hours=120)
    support = b.offering("Support", sold=False)
    project = b.project(discovery, build, support)
    start_worker()

    bus.publish(b.closed_won(project))
    bus.publish(b.status_changed(project, "in_progress", selection={build["id"]: False}))
    outcomes = bus.wait_for(4, project_id=project["id"])

    assert outcomes[0]["type"] == "project.activated"
    assert outcomes[0]["data"]["offering_ids"] == [discovery["id"], build["id"], support["id"]]
    results = by_offering(outcomes[1:])
    provisioned = results[discovery["id"]]
    assert provisioned["type"] == "timesheet.provisioned"
    assert results[build["id"]]["data"]["reason"] == "opted_out"
    assert results[support["id"]]["data"]["reason"] == "not_sold"
    [created] = harvest.projects.values()
    data = provisioned["data"]
    assert data["timesheet_project_id"] == str(created["id"])
    assert data["timesheet_url"] == f"{harvest.base_uri}/projects/{created['id']}"
    assert (data["budget_hours"], data["created"], data["tool"]) == (40, True, "harvest")
    assert (data["team_assigned"], data["team_missing"]) == (
        ["ana@example.com"],
        ["ghost@example.com"],
    )
    assert created["client"]["name"] == project["client"]["name"]
    assert str(created["client"]["id"]) == data["timesheet_client_id"]
    assert (created["budget"], created["budget_by"], created["is_billable"]) == (
        40,
        "project",
        True,
    )
    marker_line = f"timesheet-provisioner: {project['id']}/{discovery['id']}"
    assert marker_line in created["notes"].splitlines()
    assigned = [
        a["user"]["id"]
        for a in harvest.user_assignments.values()
        if a["project"]["id"] == created["id"]
    ]
    assert assigned == [ana]


def test_outcome_events_follow_the_envelope_contract(bus, harvest, start_worker):
    project = b.project()
    start_worker()
    inbound = b.closed_won(project)

    bus.publish(inbound)
    [activated] = bus.wait_for(1, project_id=project["id"])

    properties = bus.outcome_properties[0]
    assert properties.content_type == "application/cloudevents+json"
    assert properties.delivery_mode == 2
    assert (properties.message_id, properties.type) == (activated["id"], "project.activated")
    assert activated["specversion"] == "1.0" and activated["time"] and activated["source"]
    assert activated["subject"] == project["id"]
    assert activated["causationid"] == inbound["id"]


def test_the_same_event_twice_makes_one_vendor_project(bus, harvest, start_worker):
    project = b.project()
    start_worker()
    bus.publish(b.closed_won(project))
    in_progress = b.status_changed(project, "in_progress")

    bus.publish(in_progress)
    bus.publish(in_progress)
    outcomes = bus.wait_for(3, project_id=project["id"])

    assert len(harvest.projects) == 1
    provisioned = [o for o in outcomes if o["type"] == "timesheet.provisioned"]
    # The copy republishes the same outcome, with the same id, for downstream dedupe.
    assert len({o["id"] for o in provisioned}) == 1
    assert all(o["type"] != "timesheet.skipped" for o in bus.settle())


def test_a_second_in_progress_event_skips_the_linked_offering(bus, harvest, start_worker):
    project = b.project()
    start_worker()
    bus.publish(b.closed_won(project))
    bus.publish(b.status_changed(project, "in_progress"))
    bus.wait_for(1, type="timesheet.provisioned", project_id=project["id"])

    bus.publish(b.status_changed(project, "in_progress"))
    [skipped] = bus.wait_for(1, type="timesheet.skipped", project_id=project["id"])

    assert skipped["data"]["reason"] == "already_linked"
    assert len(harvest.projects) == 1


def test_provision_new_for_one_offering(bus, harvest, start_worker):
    first, second = b.offering("Discovery"), b.offering("Support")
    project = b.project(first, second)
    start_worker()
    bus.publish(b.closed_won(project))

    bus.publish(b.provision_requested(project, second["id"], tool="harvest"))
    bus.publish(b.provision_requested(project, second["id"]))
    outcomes = bus.wait_for(3, project_id=project["id"])

    assert [o["type"] for o in outcomes] == [
        "project.activated",
        "timesheet.provisioned",
        "timesheet.skipped",
    ]
    assert outcomes[2]["data"]["reason"] == "already_linked"
    assert [p["name"] for p in harvest.projects.values()] == ["Website Rebuild - Support"]


def test_the_worker_runs_on_postgresql_too(bus, harvest, start_worker, pg_schema_url):
    project = b.project()
    start_worker(PROVISIONER_DATABASE_URL=pg_schema_url)
    in_progress = b.status_changed(project, "in_progress")

    bus.publish(b.closed_won(project))
    bus.publish(in_progress)
    bus.publish(in_progress)
    outcomes = bus.wait_for(3, project_id=project["id"])

    assert [o["type"] for o in outcomes] == [
        "project.activated",
        "timesheet.provisioned",
        "timesheet.provisioned",
    ]
    assert len(harvest.projects) == 1
