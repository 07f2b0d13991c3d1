"""The trial's side of the real broker: publish with confirms, keep every outcome event in a
durable queue of our own (it must outlive a broker restart), read the dead letters without
taking them, measure queue depths, and delete everything of the namespace afterwards.

Each call opens its own short connection: a broker restart or a closed connection in the
middle of a trial then costs one retry, not a broken trial.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pika
from pika.exceptions import AMQPError

from tests.chaos.scenario import Publication
from tests.chaos.supervisor import rabbitmqctl
from worker.commands import dead_letters
from worker.topology import Topology, connection_parameters

T = TypeVar("T")
PUBLICATION = "x-chaos-publication"  # header: which publication a dead letter came from


@dataclass(frozen=True)
class Letter:
    """One dead letter as the invariants need it."""

    publication: int | None
    key: tuple[str, str] | None
    code: str  # "unknown" when neither our header nor the broker's x-death says why
    broker_made: bool  # dead-lettered by the broker (x-death), not by the worker
    dlq_error: str | None  # what ``worker.dead_letters.read`` raised on it, if anything


class TrialBroker:
    def __init__(self, amqp_url: str, topology: Topology):
        self.url = amqp_url
        self.topology = topology
        self.outcomes_queue = f"{topology.namespace}.chaos-outcomes"

    def _with_channel(self, work: Callable[[Any], T], attempts: int = 60) -> T:
        for attempt in range(attempts):
            try:
                connection = pika.BlockingConnection(
                    connection_parameters(self.url, name=f"chaos {self.topology.namespace}")
                )
            except AMQPError:
                if attempt == attempts - 1:
                    raise
                time.sleep(1)  # the broker is restarting: it takes seconds
                continue
            try:
                return work(connection.channel())
            except AMQPError:
                if attempt == attempts - 1:
                    raise
            finally:
                with contextlib.suppress(AMQPError):
                    connection.close()
        raise AssertionError("unreachable")

    def declare(self) -> None:
        def declare(channel) -> None:
            self.topology.declare(channel)
            channel.queue_declare(self.outcomes_queue, durable=True)
            channel.queue_bind(self.outcomes_queue, self.topology.events, routing_key="#")

        self._with_channel(declare)

    def publish(self, publications: list[tuple[int, Publication]]) -> None:
        """Publishes with confirms; a batch cut by a dropped connection is sent again whole
        (a second copy of an event is one more duplicate, which the worker must take)."""

        def send(channel) -> None:
            channel.confirm_delivery()
            for index, p in publications:
                properties = pika.BasicProperties(
                    content_type="application/cloudevents+json",
                    delivery_mode=2,
                    message_id=p.key[1] if p.key else None,
                    type=p.routing_key,
                    headers={PUBLICATION: index},
                )
                channel.basic_publish(self.topology.inbound, p.routing_key, p.body, properties)

        self._with_channel(send)

    def outcomes(self) -> list[dict]:
        def drain(channel) -> list[dict]:
            found = []
            while True:
                method, _, body = channel.basic_get(self.outcomes_queue, auto_ack=False)
                if method is None:
                    return found  # closing unacked puts them back: a second read sees them
                found.append(json.loads(body))

        return self._with_channel(drain)

    def dead_letters(self) -> list[Letter]:
        def browse(channel) -> list[Letter]:
            found = []
            while True:
                method, properties, body = channel.basic_get(self.topology.dead_letter)
                if method is None:
                    return found
                found.append(_letter(method.delivery_tag, properties, body))

        return self._with_channel(browse)

    def depths(self) -> dict[str, int]:
        """Messages (ready and unacked) in the work and retry queues, broker-side; -1 for a
        queue the broker does not list with a count (just after a restart, quorum queues
        come back one by one): not known to be empty is not empty."""
        mine = {self.topology.work_queue}
        mine |= {self.topology.retry_queue(d) for d in self.topology.retry_delays}
        try:
            listing = rabbitmqctl("list_queues", "name", "messages")
        except (subprocess.SubprocessError, OSError):
            return {"(broker not answering)": 1}  # restarting: not drained, ask again
        depths = dict.fromkeys(mine, -1)
        for line in listing.splitlines():
            name, _, count = line.partition("\t")
            if name in mine and count.strip().isdigit():
                depths[name] = int(count)
        return depths

    def delete_namespace(self) -> None:
        def delete(channel) -> None:
            t = self.topology
            retries = sorted({t.retry_queue(d) for d in t.retry_delays})
            for queue in [
                t.work_queue,
                t.dead_letter,
                t.dead_letter_journal,
                self.outcomes_queue,
                *retries,
            ]:
                channel.queue_delete(queue)
            for exchange in (t.inbound, t.events, t.dead_letter_exchange):
                channel.exchange_delete(exchange)

        self._with_channel(delete, attempts=5)


def _letter(tag: int, properties: pika.BasicProperties, body: bytes) -> Letter:
    headers = dict(properties.headers or {})
    publication = headers.get(PUBLICATION)
    try:
        read = dead_letters.read(tag, properties, body)
        code, error = read.code, None
    except Exception as exc:  # the dlq tools cannot read it: a finding of its own
        code = _text(headers.get("x-error-code")) or ("broker" if "x-death" in headers else "")
        code, error = code or "unknown", f"{type(exc).__name__}"
    return Letter(
        publication=int(publication) if isinstance(publication, int) else None,
        key=_key(body),
        code=code,
        broker_made="x-death" in headers,
        dlq_error=error,
    )


def _key(body: bytes) -> tuple[str, str] | None:
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if isinstance(event, dict) and all(isinstance(event.get(k), str) for k in ("source", "id")):
        return (event["source"], event["id"])
    return None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")
