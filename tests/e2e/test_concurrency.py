"""Many offerings in flight (issue 6): per-project order under concurrency, and a
minute-long vendor call that does not cost the broker connection."""

from __future__ import annotations

from collections import defaultdict

from tests import builders as b
from tests.e2e.bus import rabbitmqctl, wait_until


def test_events_of_one_project_keep_their_order_under_concurrency(bus, harvest, start_worker):
    harvest.latency = 0.02  # every call takes a while, so lanes really overlap
    projects = [b.project(*(b.offering(f"Part {i}") for i in range(4))) for _ in range(8)]
    start_worker(PROVISIONER_CONCURRENCY="8")

    for p in projects:
        bus.publish(b.closed_won(p))
    for i in range(4):  # interleaved: part i of every project, then part i + 1
        for p in projects:
            bus.publish(b.provision_requested(p, p["offerings"][i]["id"]))
    outcomes = bus.wait_for(8 * 5, timeout=60)

    seen: dict[str, list[str]] = defaultdict(list)
    for o in outcomes:
        seen[o["data"]["project_id"]].append(o["data"].get("offering_id", "activated"))
    for p in projects:
        assert seen[p["id"]] == ["activated", *(o["id"] for o in p["offerings"])]
    assert len(harvest.projects) == 32


def test_a_minute_long_vendor_call_keeps_the_connection_and_acks_once(bus, harvest, spawn_worker):
    project = b.project()
    worker = spawn_worker(PROVISIONER_HEARTBEAT="10", PROVISIONER_VENDOR_TIMEOUT="120")
    bus.publish(b.closed_won(project))
    bus.wait_for(1, project_id=project["id"])
    harvest.hold_answer("POST", "/v2/projects", 60.0)

    bus.publish(b.status_changed(project, "in_progress"))
    [done] = bus.wait_for(1, type="timesheet.provisioned", project_id=project["id"], timeout=120)

    assert done["data"]["created"] is True
    assert [o["type"] for o in bus.settle(quiet=1.0)].count("timesheet.provisioned") == 1
    assert bus.queue_depth(bus.topology.work_queue) == 0
    assert "connection_lost" not in worker.logs() and "reconnecting" not in worker.logs()
    assert worker.stop() == 0


def test_a_message_held_by_a_slow_vendor_call_holds_back_no_other_ack(bus, harvest, start_worker):
    """Acks go out in batches (one ``multiple`` ack for the oldest run of finished messages);
    a message still in a vendor call must not keep the later ones unacked behind it."""
    slow, others = b.project(), [b.project() for _ in range(20)]
    start_worker(PROVISIONER_CONCURRENCY="4", PROVISIONER_VENDOR_TIMEOUT="60")
    bus.publish(b.closed_won(slow))
    bus.wait_for(1, project_id=slow["id"])
    # Held long enough for twenty activations and rabbitmqctl's answers on a loaded machine
    # (each rabbitmqctl call starts an Erlang node: seconds when the CPUs are busy).
    harvest.hold_answer("POST", "/v2/projects", 30.0)
    bus.publish(b.status_changed(slow, "in_progress"))  # delivered first: the oldest tag
    for p in others:
        bus.publish(b.closed_won(p))
    bus.wait_for(1 + 20, type="project.activated")

    wait_until(lambda: unacked(bus.topology.work_queue) == 1, "only the slow one is unacked")
    assert "timesheet.provisioned" not in [o["type"] for o in bus.outcomes]  # still held
    bus.wait_for(1, type="timesheet.provisioned", project_id=slow["id"], timeout=90)
    wait_until(lambda: unacked(bus.topology.work_queue) == 0, "nothing is unacked")


def unacked(queue: str) -> int:
    listing = rabbitmqctl("list_queues", "name", "messages_unacknowledged")
    counts = dict(line.split("\t") for line in listing.splitlines() if "\t" in line)
    return int(counts[queue])


def test_eight_projects_of_one_new_client_started_at_once_share_one_client(
    bus, harvest, start_worker
):
    """Issue 10, finding 3: lanes are per project, the client map is shared."""
    harvest.latency = 0.02  # every call takes a while, so the eight lanes really overlap
    client = {"id": b.rid("C"), "name": b.rid("Initech")}
    projects = [b.project(client=client, name=b.rid("Site")) for _ in range(8)]
    start_worker(PROVISIONER_CONCURRENCY="8")

    for p in projects:
        bus.publish(b.closed_won(p))
    for p in projects:
        bus.publish(b.status_changed(p, "in_progress"))
    bus.wait_until(lambda seen: len([o for o in seen if o["type"] != "project.activated"]) >= 8)

    outcomes = bus.settle(quiet=1.0)
    assert [o["data"] for o in outcomes if o["type"] == "timesheet.failed"] == []
    provisioned = [o["data"] for o in outcomes if o["type"] == "timesheet.provisioned"]
    assert sorted(d["project_id"] for d in provisioned) == sorted(p["id"] for p in projects)
    assert [c["name"] for c in harvest.clients.values()] == [client["name"]]
    [harvest_client] = harvest.clients
    assert {d["timesheet_client_id"] for d in provisioned} == {str(harvest_client)}
    assert len(harvest.projects) == 8
    assert bus.dead_letters() == []
