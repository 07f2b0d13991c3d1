"""Test-side view of the real broker: publish inbound events, collect outcome events, read
dead letters. Polls with deadlines; never sleeps a fixed time."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pika

from worker.topology import Topology, connection_parameters

# How long a wait may take before it fails. A deadline costs nothing while the condition
# comes true, and CI runs the suite on two busy cores beside a busy broker: a short one only
# turns a slow machine into a red run.
DEADLINE = 60.0


class Bus:
    def __init__(self, amqp_url: str, topology: Topology):
        self.topology = topology
        self.connection = pika.BlockingConnection(connection_parameters(amqp_url))
        self.channel = self.connection.channel()
        topology.declare(self.channel)
        self.channel.confirm_delivery()
        self.outcomes_queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.outcomes_queue, topology.events, routing_key="#")
        self.outcomes: list[dict] = []
        self.outcome_properties: list[pika.BasicProperties] = []

    def publish(
        self, event: dict | bytes, *, routing_key: str | None = None, headers: dict | None = None
    ) -> None:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        key = routing_key or (event.get("type", "x") if isinstance(event, dict) else "x")
        properties = pika.BasicProperties(
            content_type="application/cloudevents+json",
            delivery_mode=2,
            headers=headers,
            message_id=event.get("id") if isinstance(event, dict) else None,
            type=key,
        )
        self.channel.basic_publish(self.topology.inbound, key, body, properties)

    def _drain(self) -> None:
        while True:
            method, properties, body = self.channel.basic_get(self.outcomes_queue, auto_ack=True)
            if method is None:
                return
            self.outcomes.append(json.loads(body))
            self.outcome_properties.append(properties)

    def wait_until(
        self, done: Callable[[list[dict]], bool], timeout: float = DEADLINE
    ) -> list[dict]:
        """Collects outcome events until ``done(outcomes)`` holds; fails at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            self._drain()
            if done(self.outcomes):
                return self.outcomes
            if time.monotonic() > deadline:
                kinds = [(o["type"], o["data"].get("offering_id")) for o in self.outcomes]
                raise AssertionError(f"timed out after {timeout}s; outcomes so far: {kinds}")
            self.connection.process_data_events(time_limit=0.05)

    def wait_for(
        self,
        count: int,
        *,
        project_id: str | None = None,
        timeout: float = DEADLINE,
        type: str | None = None,
    ) -> list[dict]:
        """The first ``count`` outcomes (of ``project_id``/``type`` if given), in arrival order."""

        def matching(outcomes: list[dict]) -> list[dict]:
            return [
                o
                for o in outcomes
                if (project_id is None or o["data"].get("project_id") == project_id)
                and (type is None or o["type"] == type)
            ]

        self.wait_until(lambda outcomes: len(matching(outcomes)) >= count, timeout)
        return matching(self.outcomes)

    def settle(self, quiet: float = 0.5) -> list[dict]:
        """Outcomes once nothing new arrived for ``quiet`` seconds: proves an absence."""
        last, changed = len(self.outcomes), time.monotonic()
        while time.monotonic() - changed < quiet:
            self.connection.process_data_events(time_limit=0.05)
            self._drain()
            if len(self.outcomes) != last:
                last, changed = len(self.outcomes), time.monotonic()
        return self.outcomes

    def dead_letters(self) -> list[tuple[dict[str, Any], bytes]]:
        """Every dead letter (headers, body), left in place."""
        channel = self.connection.channel()
        found = []
        while True:
            method, properties, body = channel.basic_get(self.topology.dead_letter)
            if method is None:
                break
            found.append((dict(properties.headers or {}), body))
        channel.close()  # unacked: everything goes back, in order
        return found

    def wait_dead_letters(self, count: int, timeout: float = DEADLINE) -> list:
        deadline = time.monotonic() + timeout
        while len(letters := self.dead_letters()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(letters)} dead letters after {timeout}s, not {count}")
            self.connection.process_data_events(time_limit=0.1)
        return letters

    def queue_depth(self, queue: str) -> int:
        return self.channel.queue_declare(queue, passive=True).method.message_count

    def consumer_count(self, queue: str) -> int:
        """Consumers the broker still counts on ``queue``: a killed process's stay until the
        broker has handled its connection's end (and until then get deliveries)."""
        return self.channel.queue_declare(queue, passive=True).method.consumer_count

    def delete_namespace(self, extra_delays: list[float] = ()) -> None:
        self.topology.delete(self.channel)
        for delay in extra_delays:
            self.channel.queue_delete(self.topology.retry_queue(delay))
        self.connection.close()


def rabbitmqctl(*args: str) -> str:
    """What ``rabbitmqctl -q ARGS`` prints: broker-side facts no AMQP client can see."""
    return subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)
