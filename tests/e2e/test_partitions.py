"""Several worker processes on partitions (``PROVISIONER_PARTITIONS``): they share the
partitions evenly, hand them over when one joins or dies, and every project's events are
applied in the order they were published, also across a kill."""

from __future__ import annotations

import json
import random
import signal
from collections import Counter

import pytest

from tests import ordering
from tests.e2e.bus import wait_until
from tests.e2e.conftest import ProcessWorker
from worker.commands.main import main as cli


def assignments(worker: ProcessWorker) -> list[list[int]]:
    """Every share of the partitions the worker announced, oldest first."""
    shares = []
    for line in worker.logs().splitlines():
        if '"partitions_assigned"' in line:
            shares.append(json.loads(line)["partitions"])
    return shares


def current(workers: list[ProcessWorker]) -> list[list[int]]:
    return [(assignments(w) or [[]])[-1] for w in workers]


def settled_even(workers: list[ProcessWorker], count: int) -> bool:
    """Every worker announced a share, the shares cover each partition once, and no two
    differ by more than one."""
    for w in workers:
        assert w.process.poll() is None, f"a worker exited; its log:\n{w.logs()[-3000:]}"
    shares = current(workers)
    flat = sorted(p for share in shares for p in share)
    sizes = [len(s) for s in shares]
    return flat == list(range(count)) and max(sizes) - min(sizes) <= 1


@pytest.fixture
def partition_env(pg_schema_url, partitioned):
    def env(count: int, **more: str) -> dict[str, str]:
        partitioned(count)
        return {
            "PROVISIONER_PARTITIONS": str(count),
            "PROVISIONER_DATABASE_URL": pg_schema_url,
            **more,
        }

    return env


def test_workers_share_the_partitions_and_rebalance_when_one_joins_or_dies(
    bus, spawn_worker, partition_env
):
    env = partition_env(12)
    workers = [spawn_worker(**env) for _ in range(3)]
    wait_until(lambda: settled_even(workers, 12), "three workers share 12 partitions", 60)
    assert sorted(len(s) for s in current(workers)) == [4, 4, 4]

    workers.append(spawn_worker(**env))
    wait_until(lambda: settled_even(workers, 12), "a fourth takes its share", 60)
    assert sorted(len(s) for s in current(workers)) == [3, 3, 3, 3]

    victim = workers.pop(1)
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(10)
    wait_until(lambda: settled_even(workers, 12), "the dead one's partitions go to the others", 60)
    assert sorted(len(s) for s in current(workers)) == [4, 4, 4]

    assert workers.pop(0).stop() == 0  # SIGTERM: a clean stop hands over too
    wait_until(lambda: settled_even(workers, 12), "two share what three had", 60)
    assert sorted(len(s) for s in current(workers)) == [6, 6]


def run_scenario(bus, harvest, spawn_worker, env, *, projects: int, seed: int, chaos=None):
    """Publishes a shuffled scenario to three workers (``chaos(workers)`` runs once some
    outcomes are in), waits for every outcome, and checks the order and the vendor."""
    harvest.latency = 0.01  # lanes overlap, and a project's events meet in flight
    workers = [spawn_worker(**env) for _ in range(3)]
    wait_until(lambda: settled_even(workers, int(env["PROVISIONER_PARTITIONS"])), "shared", 60)
    scenario = ordering.scenario(projects, seed=seed)
    half = len(scenario.events) // 2
    for event in scenario.events[:half]:
        bus.publish(event)
    if chaos is not None:
        bus.wait_until(lambda outcomes: len(outcomes) >= half // 2, timeout=120)
        chaos(workers)
    for event in scenario.events[half:]:
        bus.publish(event)

    def every_event_answered(outcomes: list[dict]) -> bool:
        return {o.get("causationid") for o in outcomes} >= set(scenario.expected)

    outcomes = bus.wait_until(every_event_answered, timeout=240)
    outcomes = bus.settle(quiet=1.0)
    assert ordering.order_problems(scenario, outcomes) == []
    provisioned = Counter(
        o["data"]["offering_id"] for o in outcomes if o["type"] == "timesheet.provisioned"
    )
    assert len(provisioned) == projects
    assert len(harvest.projects) == projects  # one vendor project per offering, never two
    return workers


def test_three_workers_apply_every_projects_events_in_publish_order(
    bus, harvest, spawn_worker, partition_env
):
    run_scenario(bus, harvest, spawn_worker, partition_env(8), projects=50, seed=11)


def test_order_holds_when_a_worker_is_killed_mid_run_and_another_joins(
    bus, harvest, spawn_worker, partition_env
):
    env = partition_env(8)

    def kill_one_start_one(workers: list[ProcessWorker]) -> None:
        # The active router's process, if one is known by now: its partitions and the
        # routing both change hands.
        routers = [w for w in workers if '"routing"' in w.logs()]
        victim = routers[0] if routers else random.Random(5).choice(workers)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(10)
        workers.append(spawn_worker(**env))

    workers = run_scenario(
        bus, harvest, spawn_worker, env, projects=50, seed=12, chaos=kill_one_start_one
    )
    assert sum('"routing"' in w.logs() for w in workers) >= 2  # the routing changed hands


def test_on_partitions_a_retry_comes_back_and_a_dead_letter_replays_to_its_type(
    bus, harvest, start_worker, worker_env, partition_env, monkeypatch
):
    """Retries go round through NS.worker and the router; the dead letter made in a
    partition still names the event's own exchange and type, so a replay finds its way."""
    project = ordering.lifecycle(["deal.closed_won", "in_progress"])[0]
    won, started = project
    start_worker(**partition_env(4))
    bus.publish(won)
    bus.wait_for(1, type="project.activated", timeout=60)
    harvest.fail_next(10_000, status=503)

    bus.publish(started)
    [failed] = bus.wait_for(1, type="timesheet.failed", timeout=90)
    [(headers, _)] = bus.wait_dead_letters(1)
    assert failed["data"]["attempts"] == 3  # two retries, each back through the router
    assert headers["x-original-exchange"] == bus.topology.inbound
    assert headers["x-original-routing-key"] == "project.status_changed"

    harvest.clear_faults()
    for name, value in worker_env.items():
        monkeypatch.setenv(name, value)
    assert cli(["dlq", "replay", "--all"]) == 0
    [done] = bus.wait_for(1, type="timesheet.provisioned", timeout=60)
    assert done["data"]["created"] is True and len(harvest.projects) == 1
