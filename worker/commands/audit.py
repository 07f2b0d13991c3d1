"""Who did what to which dead letters: the ``dlq.replayed`` / ``dlq.discarded`` CloudEvents on
NS.events, one for a batch of letters, and one JSON line per letter on stderr for the person
at the terminal.

The event is published, with confirms, before any letter it names is acked (``moving``), so a
letter never leaves the queue without its record; the dead-letter journal is bound to these
types and reads each as the removal of every letter it names (``journal``). One event a batch
rather than one a letter: a replay then costs one confirmed publish a letter (its copy), not
two, which is most of its speed. Neither carries anything from the broker URL or the settings
but the ``source``.
"""

from __future__ import annotations

import getpass
import json
import uuid
from datetime import UTC, datetime

from schemas.outbound import (
    AuditedLetter,
    DeadLetterAudit,
    DeadLetterDiscarded,
    DeadLetterReplayed,
    DiscardedLetter,
    ReplayedLetter,
)
from worker.commands import dead_letters as dl
from worker.commands.dead_letters import DeadLetter
from worker.messages import Publish, event_message


def replayed(letter: DeadLetter, *, routing_key: str) -> ReplayedLetter:
    return ReplayedLetter(**_about(letter), replays=letter.replays + 1, routing_key=routing_key)


def discarded(letter: DeadLetter) -> DiscardedLetter:
    return DiscardedLetter(**_about(letter), replays=letter.replays)


def record(items: list[ReplayedLetter] | list[DiscardedLetter], *, by: str) -> DeadLetterAudit:
    """The audit record of a batch: replayed or discarded as its items are."""
    kind = DeadLetterReplayed if isinstance(items[0], ReplayedLetter) else DeadLetterDiscarded
    return kind(by=by, at=datetime.now(UTC), count=len(items), letters=items)


def event(record: DeadLetterAudit, *, exchange: str, source: str) -> Publish:
    """The CloudEvent of ``record``. With one letter its subject is that letter's id and its
    cause the letter's own event; a batch of several names no single subject or cause."""
    event_id = str(uuid.uuid4())  # every act is new: a second replay is a second event
    envelope = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": record.type,
        "time": _iso(record.at),
        "datacontenttype": "application/json",
    }
    if len(record.letters) == 1:
        [only] = record.letters
        envelope["subject"] = only.dead_letter_id
        if only.event_id:
            envelope["causationid"] = only.event_id
    # pydantic's own JSON of the data, spliced in: one serialisation a batch.
    envelope_json, data = json.dumps(envelope), record.model_dump_json()
    return event_message(exchange, record.type, event_id, envelope_json, data)


def lines(record: DeadLetterAudit, audit_id: str) -> str:
    """The stderr audit lines of a batch, one a letter (a person greps for a letter, not a
    batch): ``dlq_replayed``/``dlq_discarded``, the letter's fields, who and when, and the id
    of the audit event that names it."""
    kind = record.type.replace(".", "_")
    common = {"by": record.by, "at": _iso(record.at), "audit_id": audit_id}
    return "\n".join(json.dumps(_line(kind, item) | common) for item in record.letters)


def operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry
        return "unknown"


def _line(kind: str, item: AuditedLetter) -> dict:
    out = {
        "event": kind,
        "id": item.dead_letter_id,
        "event_id": item.event_id,
        "type": item.event_type,
        "code": item.error_code,
        "replays": item.replays,
    }
    if isinstance(item, ReplayedLetter):
        out["routing_key"] = item.routing_key
    return out


def _about(letter: DeadLetter) -> dict:
    return {
        "dead_letter_id": letter.id,
        "event_id": letter.event_id,
        "event_type": letter.type,
        "error_code": letter.code,
    }


def _iso(when: datetime) -> str:
    return dl.iso(when) or ""
