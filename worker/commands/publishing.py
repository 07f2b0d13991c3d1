"""Publishing inbound events with confirms: ``provisioner publish`` and the DLQ replay."""

from __future__ import annotations

import pika

from schemas.envelope import CONTENT_TYPE, CloudEvent
from schemas.errors import Unreadable
from schemas.inbound import Inbound, parse_inbound
from worker.topology import Topology, connection_parameters


class EventRefused(ValueError):
    """The event is not one to publish: the worker would dead-letter it at once (the message
    is its ``code: reason``, exactly what the dead letter would say), or AMQP cannot carry it."""


def check_event(body: bytes) -> Inbound:
    """The event as the worker reads it (``parse_inbound``, the very function its consumer
    calls), and small enough for AMQP's short strings; ``EventRefused`` otherwise."""
    try:
        inbound = parse_inbound(body)
    except Unreadable as exc:
        raise EventRefused(f"{exc.code}: {exc.message}") from None
    for name in ("id", "type"):  # AMQP short strings: message_id and the routing key
        if len(getattr(inbound.envelope, name).encode()) > 255:
            raise EventRefused(f"{name}: over 255 bytes, too long for AMQP")
    return inbound


def inbound_properties(event: CloudEvent, headers: dict | None = None) -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type=CONTENT_TYPE,
        message_id=event.id,
        type=event.type,
        delivery_mode=2,
        headers=headers,
    )


def publish_event(amqp_url: str, topology: Topology, body: bytes) -> CloudEvent:
    """Declares the topology, publishes to NS.inbound and waits for the broker's confirm.

    Raises ``EventRefused`` for an event the worker would refuse (nothing is published: a
    producer's mistake is better caught at its desk than in the dead-letter queue) and pika
    errors when the broker refuses."""
    event = check_event(body).envelope
    connection = pika.BlockingConnection(connection_parameters(amqp_url))
    try:
        channel = connection.channel()
        topology.declare(channel)
        channel.confirm_delivery()
        channel.basic_publish(
            topology.inbound, event.type, body, inbound_properties(event), mandatory=True
        )
    finally:
        connection.close()
    return event
