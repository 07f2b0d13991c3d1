"""Reading NS.dead-letter without changing it: what each dead letter is, and how a person
names one.

A dead letter comes from one of two places. The worker copies an inbound message there with
headers that say why (``worker.messages.failure_copy``) and a unique ``x-copy-id`` (the
consumer). The broker puts a message there itself when it passes the work queue's delivery
limit; those carry the broker's ``x-death`` and never our ``x-error-*`` verdict (the worker
strips ``x-death`` from its own copies, so its presence is the broker's mark).

``read`` takes a letter from the queue or from the dead-letter journal (``journal``), whose
copy of a broker dead letter lacks x-death on RabbitMQ 3.10 (see ``_journal_verdict``).
``browse`` holds the queue itself: ``basic.get`` with manual ack on one channel until the
queue is empty, every message unacked until the channel closes and puts the rest back where
they were, in order. Only ``dlq show`` uses it, for the moment of one look; ``dlq list``
reads the journal and holds nothing. Nothing here acks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from schemas.errors import Unreadable
from schemas.json_body import read_json
from worker.commands.output import printable
from worker.messages import (
    ATTEMPTS,
    COPY_ID,
    ERROR_CODE,
    ERROR_MESSAGE,
    FAILURES,
    FIRST_FAILED_AT,
    LAST_FAILED_AT,
    REPLAYS,
)
from worker.topology import DELIVERY_LIMIT

FIRST_DEATH_REASON = "x-first-death-reason"  # the broker's, next to x-death
FIRST_DEATH_QUEUE = "x-first-death-queue"
SHORT_ID = 12  # characters of an id shown in tables (longer where needed to stay unique)
DELIVERY_LIMIT_CODE = "delivery_limit_exceeded"
BODY_SHOWN = 4000  # characters of a body ``dlq show`` prints before it cuts


class SelectionError(LookupError):
    """An id argument that names no dead letter, or more than one."""


@dataclass(frozen=True)
class DeadLetter:
    tag: int  # delivery tag on the browsing channel: what an ack needs
    body: bytes
    properties: pika.BasicProperties
    id: str
    event_id: str | None
    type: str | None
    source: str | None
    code: str
    message: str
    attempts: int
    replays: int
    first_failed_at: datetime | None
    last_failed_at: datetime | None
    history: list[str]

    @property
    def headers(self) -> dict[str, Any]:
        return dict(self.properties.headers or {})

    def age_seconds(self, now: datetime) -> float | None:
        return (now - self.last_failed_at).total_seconds() if self.last_failed_at else None

    def summary(self, now: datetime) -> dict[str, Any]:
        """What ``dlq list --json`` prints for it, one object a line."""
        age = self.age_seconds(now)
        return {
            "id": self.id,
            "event_id": self.event_id,
            "type": self.type,
            "source": self.source,
            "code": self.code,
            "message": self.message,
            "attempts": self.attempts,
            "replays": self.replays,
            "first_failed_at": iso(self.first_failed_at),
            "last_failed_at": iso(self.last_failed_at),
            "age_seconds": round(age) if age is not None else None,
        }


def browse(channel: BlockingChannel, queue: str) -> list[DeadLetter]:
    """Every dead letter now in ``queue``, oldest first, held unacked on ``channel``.

    Stops at the count the queue had when we started: with a worker running, new dead letters
    (a replayed poison message coming back, say) would otherwise keep the loop going."""
    expected = channel.queue_declare(queue, passive=True).method.message_count
    letters: list[DeadLetter] = []
    while len(letters) < expected:
        method, properties, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            break
        letters.append(read(method.delivery_tag, properties, body))
    return letters


def read(
    tag: int, properties: pika.BasicProperties, body: bytes, *, source: bool = True
) -> DeadLetter:
    """A letter as the dlq commands see it. Without ``source`` the body is parsed only when
    the properties lack the event id or type: a replay has no use for the rest of it, and
    parsing every body cost a replay of 10,000 letters about a second."""
    headers = dict(properties.headers or {})
    needed = source or not (properties.message_id and properties.type)
    event = _cloud_event(body) if needed else {}
    deaths = [d for d in headers.get("x-death") or [] if isinstance(d, dict)]
    if deaths:
        code, message, attempts = _broker_verdict(deaths)
        death_times = [t for d in deaths if (t := _when(d.get("time")))]
        first = _when(headers.get(FIRST_FAILED_AT)) or min(death_times, default=None)
        last = max(death_times, default=None)
    elif not headers.get(ERROR_CODE) and (reason := _text(headers.get(FIRST_DEATH_REASON))):
        code, message, attempts = _journal_verdict(reason, _text(headers.get(FIRST_DEATH_QUEUE)))
        first = last = _when(headers.get(FIRST_FAILED_AT))
    else:
        code = _text(headers.get(ERROR_CODE)) or "unknown"
        message = _text(headers.get(ERROR_MESSAGE)) or ""
        attempts = _int(headers.get(ATTEMPTS))
        first = _when(headers.get(FIRST_FAILED_AT))
        last = _when(headers.get(LAST_FAILED_AT)) or first
    history = [_text(h) for h in headers.get(FAILURES) or []]
    history += [_death_line(d) for d in deaths]
    return DeadLetter(
        tag=tag,
        body=body,
        properties=properties,
        id=_text(headers.get(COPY_ID)) or fallback_id(properties.message_id, body),
        event_id=properties.message_id or _text(event.get("id")) or None,
        type=properties.type or _text(event.get("type")) or None,
        source=_text(event.get("source")) or None,
        code=code,
        message=message,
        attempts=attempts,
        replays=_int(headers.get(REPLAYS)),
        first_failed_at=first,
        last_failed_at=last,
        history=history,
    )


def fallback_id(message_id: str | None, body: bytes) -> str:
    """For dead letters without ``x-copy-id`` (the broker's): stable across listings, so the
    id a person copies from ``dlq list`` still works a minute later. Identical copies of one
    message share it, and a selection then takes them all."""
    digest = hashlib.sha256(body).hexdigest()[:8]
    return f"{message_id}.{digest}" if message_id else digest


def select(letters: list[DeadLetter], wanted: list[str]) -> list[DeadLetter]:
    """The dead letters named by ``wanted`` (full ids or unique prefixes), in queue order."""
    chosen: set[str] = set()
    for prefix in wanted:
        ids = {letter.id for letter in letters if letter.id.startswith(prefix)}
        if not ids:
            raise SelectionError(f"no dead letter has an id starting with {prefix!r}")
        if len(ids) > 1:
            sample = ", ".join(sorted(i[: len(prefix) + 4] for i in ids)[:5])
            raise SelectionError(f"{prefix!r} matches {len(ids)} dead letters ({sample}…)")
        chosen |= ids
    return [letter for letter in letters if letter.id in chosen]


def groups(letters: list[DeadLetter]) -> list[dict[str, Any]]:
    """Counts by (code, type) with the first and last failure, the biggest group first."""
    by_key: dict[tuple[str, str], list[DeadLetter]] = {}
    for letter in letters:
        by_key.setdefault((letter.code, letter.type or "-"), []).append(letter)
    found = []
    for (code, type_), members in by_key.items():
        firsts = [m.first_failed_at for m in members if m.first_failed_at]
        lasts = [m.last_failed_at for m in members if m.last_failed_at]
        found.append(
            {
                "count": len(members),
                "code": code,
                "type": type_,
                "first_failed_at": min(firsts, default=None),
                "last_failed_at": max(lasts, default=None),
            }
        )
    return sorted(found, key=lambda g: (-g["count"], g["code"], g["type"]))


def render(letter: DeadLetter, now: datetime) -> str:
    """``dlq show``: the summary, every property and header, the history, then the body."""
    summary = letter.summary(now)
    summary["age"] = human_age(summary.pop("age_seconds"))
    lines = [f"{k.replace('_', ' '):<17}{'-' if v is None else v}" for k, v in summary.items()]
    props = {k: v for k, v in vars(letter.properties).items() if v is not None and k != "headers"}
    lines += ["", "properties"] + [f"  {k:<18}{v}" for k, v in sorted(props.items())]
    lines += ["", "headers"] + [
        f"  {k:<26}{json.dumps(plain(v), ensure_ascii=False)}"
        for k, v in sorted(letter.headers.items())
    ]
    lines += ["", "failure history"] + [f"  {h}" for h in letter.history or ["(none recorded)"]]
    lines += ["", f"body ({len(letter.body)} bytes)", _body_text(letter.body)]
    return "\n".join(printable(line) for line in lines)


def short_ids(letters: list[DeadLetter]) -> dict[str, str]:
    """Each id cut to ``SHORT_ID`` characters, or longer where that would be ambiguous."""
    ids = sorted({letter.id for letter in letters})
    short = {}
    for i, full in enumerate(ids):
        neighbours = ids[max(i - 1, 0) : i] + ids[i + 1 : i + 2]
        common = max((_common_prefix(full, n) for n in neighbours), default=0)
        short[full] = full[: max(SHORT_ID, common + 1)]
    return short


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def plain(value: Any) -> Any:
    """A header value as JSON can hold it (pika hands over bytes, datetimes, nested tables)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, bytes):
        return _text(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def iso(when: datetime | None) -> str | None:
    return _iso(when) if when else None


# -- helpers ----------------------------------------------------------------------------------
# What each x-death reason means here, for the person reading ``dlq list`` and ``dlq show``.
BROKER_REASONS = {
    "delivery_limit": "the broker gave up after {limit} deliveries from {queue} that were never "
    "acked: a worker was killed or crashed while holding it every time (see the worker logs "
    "for the event id); replay it once the cause is gone",
    "rejected": "the worker rejected it from {queue}: its verdict could not be written into "
    "its headers (see the worker log for the delivery); fix the producer's headers",
    "expired": "it expired in {queue} before anyone took it",
    "maxlen": "{queue} was full",
}


def _broker_verdict(deaths: list[dict]) -> tuple[str, str, int]:
    latest = deaths[0]  # the broker keeps x-death newest first
    reason = _text(latest.get("reason")) or "unknown"
    code = DELIVERY_LIMIT_CODE if reason == "delivery_limit" else f"broker_{reason}"
    queue = _text(latest.get("queue")) or "?"
    template = BROKER_REASONS.get(reason, "the broker dead-lettered it from {queue} ({reason})")
    message = template.format(limit=DELIVERY_LIMIT, queue=queue, reason=reason)
    # The broker's own count is of dead-letterings; a delivery limit means that many deliveries.
    attempts = DELIVERY_LIMIT if reason == "delivery_limit" else 0
    attempts = max(attempts, sum(_int(d.get("count")) for d in deaths))
    return code, message, attempts


def _journal_verdict(reason: str, queue: str) -> tuple[str, str, int]:
    """The broker's verdict from the journal's copy of one of its dead letters. A stream on
    RabbitMQ 3.10 keeps no array or table header, so x-death (the reasons and their times) is
    gone there; the broker's x-first-death-* strings stay. A first death in a retry queue
    (it expired back to the work queue, as planned) says nothing of the death that brought
    the message here; ``dlq show`` reads the queue itself, where x-death is whole."""
    if ".retry." in queue:
        message = (
            "the broker dead-lettered it from the work queue after a retry; the journal "
            "cannot say why: dlq show has the broker's reason"
        )
        return "broker_dead_lettered", message, 0
    return _broker_verdict([{"reason": reason, "queue": queue, "count": 1}])


def _body_text(body: bytes) -> str:
    try:
        text = json.dumps(read_json(body), indent=2, ensure_ascii=False)
    except Unreadable:  # shown as bytes: nested 100,000 deep, not UTF-8, a 6,000-digit number
        text = repr(body)
    if len(text) > BODY_SHOWN:
        return f"{text[:BODY_SHOWN]}\n… cut at {BODY_SHOWN} of {len(text)} characters"
    return text


def _death_line(death: dict) -> str:
    when = _when(death.get("time"))
    return (
        f"{_iso(when) if when else '?'} broker: {_text(death.get('reason'))} "
        f"from {_text(death.get('queue'))} x{_int(death.get('count'))}"
    )


def _cloud_event(body: bytes) -> dict:
    try:
        event = read_json(body)
    except Unreadable:
        return {}
    return event if isinstance(event, dict) else {}


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bytes | str):
        try:
            parsed = datetime.fromisoformat(_text(value).replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    # A lone surrogate from a JSON escape cannot be printed or encoded: replace it.
    return str(value).encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _int(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def _common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n
