"""Who did what to which dead letter: the ``dlq.replayed`` / ``dlq.discarded`` CloudEvents on
NS.events, and the same record as one JSON line on stderr for the person at the terminal.

The event is published, with confirms, before the dead letter is acked (``moving``), so a
letter never leaves the queue without its record; the dead-letter journal is bound to these
types and reads each as the removal of the letter it names (``journal``). Neither carries
anything from the broker URL or the settings but the ``source``.
"""

from __future__ import annotations

import getpass
import json
import uuid
from datetime import UTC, datetime

import pika

from schemas.envelope import CONTENT_TYPE
from schemas.outbound import DeadLetterAudit, DeadLetterDiscarded, DeadLetterReplayed
from worker.commands import dead_letters as dl
from worker.commands.dead_letters import DeadLetter
from worker.messages import Publish


def replayed(letter: DeadLetter, *, routing_key: str, by: str) -> DeadLetterReplayed:
    return DeadLetterReplayed(
        **_about(letter, by), replays=letter.replays + 1, routing_key=routing_key
    )


def discarded(letter: DeadLetter, *, by: str) -> DeadLetterDiscarded:
    return DeadLetterDiscarded(**_about(letter, by), replays=letter.replays)


def event(record: DeadLetterAudit, letter: DeadLetter, *, exchange: str, source: str) -> Publish:
    """The CloudEvent of ``record``; its cause is the dead letter's own event."""
    event_id = str(uuid.uuid4())  # every act is new: a second replay is a second event
    envelope = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": record.type,
        "time": _iso(record.at),
        "subject": letter.id,
        "datacontenttype": "application/json",
    }
    if letter.event_id:
        envelope["causationid"] = letter.event_id
    # pydantic's own JSON of the data, spliced in: one serialisation per letter.
    body = f'{json.dumps(envelope)[:-1]}, "data": {record.model_dump_json()}}}'
    properties = pika.BasicProperties(
        content_type=CONTENT_TYPE,
        message_id=event_id,
        type=record.type,
        delivery_mode=2,
        app_id="timesheet-provisioner",
    )
    return Publish(exchange, record.type, body.encode(), properties)


def line(record: DeadLetterAudit) -> str:
    """The stderr audit line: ``dlq_replayed``/``dlq_discarded`` and the record's fields."""
    out = {
        "event": record.type.replace(".", "_"),
        "id": record.dead_letter_id,
        "event_id": record.event_id,
        "type": record.event_type,
        "code": record.error_code,
        "replays": record.replays,
    }
    if isinstance(record, DeadLetterReplayed):
        out["routing_key"] = record.routing_key
    return json.dumps(out | {"by": record.by, "at": _iso(record.at)})


def operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry
        return "unknown"


def _about(letter: DeadLetter, by: str) -> dict:
    return {
        "by": by,
        "at": datetime.now(UTC),
        "dead_letter_id": letter.id,
        "event_id": letter.event_id,
        "event_type": letter.type,
        "error_code": letter.code,
    }


def _iso(when: datetime) -> str:
    return dl.iso(when) or ""
