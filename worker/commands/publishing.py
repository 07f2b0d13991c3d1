"""Publishing inbound events with confirms: ``provisioner publish`` and the DLQ replay."""

from __future__ import annotations

import pika
from pydantic import ValidationError

from schemas.envelope import CONTENT_TYPE, MAX_BODY_BYTES, CloudEvent
from schemas.errors import Unreadable
from schemas.json_body import read_json
from worker.topology import Topology, connection_parameters


class EventFileError(ValueError):
    """The file is not a CloudEvent we can publish."""


def read_event(body: bytes) -> CloudEvent:
    if len(body) > MAX_BODY_BYTES:
        raise EventFileError(f"event is {len(body)} bytes, over the 256 KiB limit")
    try:
        event = CloudEvent.model_validate(read_json(body))
    except Unreadable as exc:
        raise EventFileError(exc.message) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) + ": " + first["msg"]
        raise EventFileError(f"not a CloudEvent: {where}") from None
    for name in ("id", "type"):  # AMQP short strings: message_id and the routing key
        if len(getattr(event, name).encode()) > 255:
            raise EventFileError(f"{name}: over 255 bytes, too long for AMQP")
    return event


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

    Raises ``EventFileError`` for a bad event and pika errors when the broker refuses."""
    event = read_event(body)
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
