"""AMQP messages the worker sends: outcome events, retry copies, dead letters.

Outcome event ids are derived from the inbound event and the outcome's content, so a
redelivered or retried event republishes the same ids and downstream services can dedupe.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pika

from schemas.envelope import CONTENT_TYPE
from schemas.outbound import Outbound

_IDS = uuid.UUID("6f1c2a0e-3b7d-4c55-9d1e-7a2b8c4d5e6f")

# Headers the worker adds to copies it sends back to itself or to people.
ATTEMPTS = "x-attempts"
REPLAYS = "x-replays"
ERROR_CODE = "x-error-code"
ERROR_MESSAGE = "x-error-message"
FIRST_FAILED_AT = "x-first-failed-at"
LAST_FAILED_AT = "x-last-failed-at"
ORIGINAL_EXCHANGE = "x-original-exchange"
ORIGINAL_ROUTING_KEY = "x-original-routing-key"
FAILURES = "x-failure-history"
COPY_ID = "x-copy-id"  # unique per retry or dead-letter copy: the dead letter's id
# When the vendor said its budget comes back (ISO 8601, UTC): set on a retry copy whose wait
# outlasts the longest retry queue; until then the copy is parked again, the vendor not called.
VENDOR_RESET_AT = "x-vendor-reset-at"
MAX_ATTEMPTS = 1_000_000  # a producer's x-attempts is clamped: AMQP carries 64-bit integers


@dataclass(frozen=True)
class Delivery:
    """One inbound message as the broker handed it over."""

    body: bytes
    properties: pika.BasicProperties
    exchange: str
    routing_key: str
    redelivered: bool = False
    # When it reached this process (monotonic seconds): a CRM read begun later serves it.
    received_at: float = field(default_factory=time.monotonic)
    # The worker process it was handed to: a run that process began and never ended counts
    # as a crash when another process begins the event (``worker.processing.RUN_LIMIT``). A
    # connection lost in a living process is no crash (the broker's delivery limit is the
    # backstop for a message that breaks connections).
    run_by: str = ""

    @property
    def headers(self) -> dict[str, Any]:
        return dict(self.properties.headers or {})

    @property
    def attempts_before(self) -> int:
        """Attempts made before this delivery (our own counter: x-death is not reliable)."""
        try:
            return min(max(int(self.headers.get(ATTEMPTS, 0)), 0), MAX_ATTEMPTS)
        except (TypeError, ValueError, OverflowError):
            return 0

    @property
    def vendor_reset_at(self) -> float | None:
        """The vendor's reset (epoch seconds) this copy waits for, if any; a header a producer
        garbled counts as none."""
        value = self.headers.get(VENDOR_RESET_AT)
        try:
            text = value.decode() if isinstance(value, bytes) else value
            at = datetime.fromisoformat(text)
        except (TypeError, ValueError, UnicodeDecodeError):
            return None
        return at.timestamp() if at.tzinfo is not None else None


@dataclass(frozen=True)
class Publish:
    exchange: str
    routing_key: str
    body: bytes
    properties: pika.BasicProperties
    # Internal copies (retry, dead letter) must reach a queue; an unroutable one is a failure.
    mandatory: bool = False


@dataclass(frozen=True)
class Decision:
    """Everything to publish, with confirms, before the inbound message is acked."""

    publishes: list[Publish] = field(default_factory=list)
    log: str = "processed"
    fields: dict[str, Any] = field(default_factory=dict)
    # No copy could be made: basic.reject without requeue, and the broker dead-letters it.
    reject: bool = False


def outcome_message(
    outcome: Outbound, *, exchange: str, cause_source: str, cause_id: str, source: str
) -> Publish:
    # The body is assembled around pydantic's own JSON of the data: one serialisation per
    # outcome, where a dict and two json.dumps cost more than the rest of the message.
    data = outcome.model_dump_json()
    digest = json.dumps([cause_source, cause_id, outcome.type]) + data
    event_id = str(uuid.uuid5(_IDS, digest))
    envelope = json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": outcome.type,
            "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "subject": outcome.project_id,
            "datacontenttype": "application/json",
            "causationid": cause_id,
        }
    )
    return event_message(exchange, outcome.type, event_id, envelope, data)


def event_message(
    exchange: str, event_type: str, event_id: str, envelope: str, data: str
) -> Publish:
    """A structured-mode CloudEvent as the contract puts it on the bus: ``data`` (JSON text)
    spliced into the ``envelope`` (JSON text of an object), persistent, routed by type."""
    body = f'{envelope[:-1]}, "data": {data}}}'.encode()
    properties = pika.BasicProperties(
        content_type=CONTENT_TYPE,
        message_id=event_id,
        type=event_type,
        delivery_mode=2,
        app_id="timesheet-provisioner",
    )
    return Publish(exchange, event_type, body, properties)


def failure_copy(
    delivery: Delivery,
    *,
    queue: str,
    code: str,
    message: str,
    attempts: int,
    exchange: str = "",
    vendor_reset_at: float | None = None,
) -> Publish:
    """The inbound message, body and properties untouched, with headers that say why.

    A retry copy goes straight to its queue (``exchange`` empty); a dead letter goes through
    the dead-letter exchange, so that the dead-letter journal gets it too. Only a retry copy
    waiting for a vendor's reset carries ``vendor_reset_at``; every other copy loses it, so a
    dead letter replayed is worked at once."""
    now = datetime.now(UTC).isoformat()
    headers = delivery.headers
    # The headers are the producer's too: only a list of text is a history we can extend.
    earlier = headers.get(FAILURES)
    history = (
        [h for h in earlier if isinstance(h, str | bytes)] if isinstance(earlier, list) else []
    )
    history = history[-9:]  # the last ten, to bound header size
    history.append(f"{now} attempt {attempts}: {code}: {message[:200]}")
    headers.update(
        {
            ATTEMPTS: attempts,
            ERROR_CODE: code,
            ERROR_MESSAGE: message[:1000],
            LAST_FAILED_AT: now,
            FAILURES: history,
        }
    )
    headers.setdefault(FIRST_FAILED_AT, now)
    headers.setdefault(ORIGINAL_EXCHANGE, delivery.exchange)
    headers.setdefault(ORIGINAL_ROUTING_KEY, delivery.routing_key)
    headers.pop(VENDOR_RESET_AT, None)
    if vendor_reset_at is not None:
        headers[VENDOR_RESET_AT] = datetime.fromtimestamp(vendor_reset_at, UTC).isoformat()
    return _copy(delivery, headers, exchange, queue)


def parked_copy(delivery: Delivery, *, queue: str) -> Publish:
    """The message as it came, headers included (its attempts and the vendor's reset), back
    to a retry queue: a wait, not a failure, so nothing is added to its history."""
    return _copy(delivery, delivery.headers, "", queue)


def _copy(delivery: Delivery, headers: dict[str, Any], exchange: str, queue: str) -> Publish:
    headers.pop("x-death", None)  # the broker's own bookkeeping from the retry queue
    p = delivery.properties
    properties = pika.BasicProperties(
        content_type=p.content_type,
        content_encoding=p.content_encoding,
        headers=headers,
        delivery_mode=2,
        priority=p.priority,
        correlation_id=p.correlation_id,
        reply_to=p.reply_to,
        message_id=p.message_id,
        timestamp=p.timestamp,
        type=p.type,
        user_id=p.user_id,
        app_id=p.app_id,
    )
    return Publish(exchange, queue, delivery.body, properties, mandatory=True)
