"""Restart storms and messages that kill the worker (issue 10, finding 8), with the worker
as a process killed by SIGKILL on the real broker."""

from __future__ import annotations

import random
import signal
import threading

from tests import builders as b
from tests.e2e.bus import wait_until
from worker.processing import RUN_LIMIT

STORM = 24  # more kills than the old delivery limit of 20


def test_a_restart_storm_dead_letters_no_work_that_never_ran(bus, harvest, spawn_worker):
    projects = [b.project() for _ in range(60)]
    first = spawn_worker(PROVISIONER_CONCURRENCY="2")
    for p in projects:
        bus.publish(b.closed_won(p))
    bus.wait_for(60, type="project.activated", timeout=60)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    harvest.latency = 0.5  # a provisioning takes about 1.5 s: the storm outlasts the work
    for p in projects:
        bus.publish(b.status_changed(p, "in_progress"))

    lifetimes = random.Random(10)
    for _ in range(STORM):  # each worker killed at a random moment of its short life
        worker = spawn_worker(PROVISIONER_CONCURRENCY="2")
        worker.wait_log("consuming")
        threading.Event().wait(lifetimes.uniform(0.3, 2.0))  # the fault's timing, not a poll
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait()
    spawn_worker(PROVISIONER_CONCURRENCY="2")

    # A worker killed after its outcome was confirmed but before its ack republishes that
    # outcome (same event id) on the next run: count offerings, not events.
    def offerings(outcomes):
        return {o["data"]["offering_id"] for o in outcomes if o["type"] == "timesheet.provisioned"}

    bus.wait_until(lambda outcomes: len(offerings(outcomes)) >= 60, 180)
    assert bus.dead_letters() == []
    assert offerings(bus.outcomes) == {p["offerings"][0]["id"] for p in projects}
    assert len(harvest.projects) == 60  # adopted after a kill, never made twice


def test_a_message_that_kills_the_worker_every_run_is_dead_lettered_with_its_reason(
    bus, harvest, spawn_worker
):
    project = b.project()
    worker = spawn_worker()
    bus.publish(b.closed_won(project))
    bus.wait_for(1, project_id=project["id"])
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait()
    # A busy broker may not yet have noticed: the event would go to the dead process, come
    # back marked redelivered, and its first run would count as a crash.
    wait_until(lambda: bus.consumer_count(bus.topology.work_queue) == 0, "the worker is gone")
    harvest.latency = 30.0  # every run dies in its first vendor call
    arrived = requests_arriving(harvest)
    bus.publish(b.status_changed(project, "in_progress"))

    runs = 0
    while not bus.dead_letters():
        assert runs <= RUN_LIMIT + 2, "never dead-lettered"
        seen = len(arrived)
        worker = spawn_worker()
        wait_until(
            lambda n=seen: len(arrived) > n or bus.queue_depth(bus.topology.dead_letter),
            "a vendor call or a dead letter",
        )
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait()
        runs += 1

    [(headers, _)] = bus.dead_letters()
    assert headers["x-error-code"] == "worker_crashed"
    assert f"stopped {RUN_LIMIT} times" in headers["x-error-message"]
    # The first delivery, the counted runs, and the delivery that is dead-lettered at once.
    assert runs == RUN_LIMIT + 2
    harvest.latency = 0.0
    spawn_worker()
    [failed] = bus.wait_for(1, type="timesheet.failed", project_id=project["id"])
    assert failed["data"]["code"] == "worker_crashed" and failed["data"]["dead_lettered"]


def requests_arriving(fake) -> list[str]:
    """The paths of requests as they arrive (the fake's own log has them once answered)."""
    arrived: list[str] = []
    answer = fake.handle

    def counting(request):
        arrived.append(request.path)
        return answer(request)

    fake.handle = counting
    return arrived
