"""The intake router on the real broker: one process at a time moves NS.worker's messages
into the partitions, each project's into one, in the order they were published; a router
that goes away hands over to a standby and nothing is lost."""

from __future__ import annotations

import json
import time

import pika
import pytest

from tests import ordering
from tests.e2e.bus import wait_until
from tests.e2e.tcp_proxy import TcpProxy
from worker.router import IntakeRouter

PARTITIONS = 4


@pytest.fixture
def routers(amqp_url, partitioned):
    topology = partitioned(PARTITIONS)
    started: list[IntakeRouter] = []

    def start(url: str = amqp_url) -> IntakeRouter:
        router = IntakeRouter(amqp_url=url, topology=topology).start()
        started.append(router)
        return router

    yield start
    for router in started:
        router.stop()


def contents(amqp_url, topology) -> dict[int, list[bytes]]:
    """Every partition's bodies in queue order, left in place (a single-active-consumer
    quorum queue refuses basic.get: a subscription reads them, unacked)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    found = {}
    for partition in range(topology.partitions):
        queue = topology.partition_queue(partition)
        channel = connection.channel()
        depth = channel.queue_declare(queue, passive=True).method.message_count
        bodies: list[bytes] = []
        if depth:
            channel.basic_qos(prefetch_count=depth)
            for _, _, body in channel.consume(queue, inactivity_timeout=10):
                assert body is not None, f"{queue}: {len(bodies)} of {depth} delivered"
                bodies.append(body)
                if len(bodies) == depth:
                    break
        channel.close()  # unacked: they go back
        found[partition] = bodies
    connection.close()
    return found


def complete_contents(amqp_url, topology, scenario, timeout: float = 60.0):
    """The partitions' contents once every event of ``scenario`` is in one of them."""
    deadline = time.monotonic() + timeout
    while True:
        found = contents(amqp_url, topology)
        ids = {json.loads(body)["id"] for bodies in found.values() for body in bodies}
        if ids >= set(scenario.expected) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def copied(bus, topology, count: int) -> bool:
    depths = [bus.queue_depth(topology.partition_queue(p)) for p in range(topology.partitions)]
    return bus.queue_depth(topology.work_queue) == 0 and sum(depths) >= count


def test_one_of_two_routers_routes_each_project_into_one_partition_in_order(bus, routers, amqp_url):
    first, second = routers(), routers()
    wait_until(lambda: first.active or second.active, "a router is active")
    scenario = ordering.scenario(40, seed=1)
    for event in scenario.events:
        bus.publish(event)
    topology = first.topology
    wait_until(lambda: copied(bus, topology, len(scenario.events)), "all copied", 60)

    assert [first.active, second.active].count(True) == 1
    assert first.routed + second.routed == len(scenario.events)
    found = contents(amqp_url, topology)
    assert sum(map(len, found.values())) == len(scenario.events)
    assert len([p for p in found.values() if p]) > 1  # the projects are spread
    assert ordering.partition_problems(scenario, found) == []


def test_a_router_that_goes_away_hands_over_and_nothing_is_lost_or_reordered(
    bus, routers, amqp_url
):
    """The first router routes a first half, then hangs (its proxy passes on nothing it
    sends) while the broker hands it the second half, and then goes away (its connection
    drops) holding all of it unacked. Each step waits for a state the broker reports, never
    for a time or a count reached in between: how far the first router got does not depend
    on the machine's load."""
    scenario = ordering.scenario(100, seed=2)
    half = len(scenario.events) // 2
    proxy = TcpProxy(("127.0.0.1", 5672)).start()
    try:
        first = routers(f"amqp://guest:guest@127.0.0.1:{proxy.port}/")
        wait_until(lambda: first.active, "the first router is active", 60)
        second = routers()
        topology = first.topology
        for event in scenario.events[:half]:
            bus.publish(event)
        wait_until(lambda: first.routed == half, "the first router routes the first half", 60)

        proxy.pause()  # its copies, confirms' acks and heartbeats go nowhere from now on
        for event in scenario.events[half:]:
            bus.publish(event)
        wait_until(
            lambda: bus.queue_depth(topology.work_queue) == 0,
            "the broker handed the second half to the first router",
            60,
        )
        assert second.routed == 0  # a standby while the first one's subscription lives
    finally:
        proxy.stop()  # the first router's connection drops: the broker takes back its half
    first.stop()

    wait_until(lambda: second.active, "the standby takes over", 60)
    total = len(scenario.events)
    wait_until(lambda: copied(bus, topology, total), "no original left waiting", 60)
    found = complete_contents(amqp_url, topology, scenario)

    assert first.routed == half
    assert second.routed >= total - half
    assert ordering.partition_problems(scenario, found) == []
