"""What ``NS.dead-letter`` holds, read from the dead-letter journal without touching the queue.

Why a journal. ``NS.dead-letter`` is a classic queue, and the only way AMQP lets anyone read a
classic queue is to take its messages: a browse holds every letter unacked until it ends, and
another engineer's ``dlq list`` at that moment sees fewer or none. ``basic.get`` in small
windows with an immediate requeue is no cure: two readers still hide letters from each other
while they hold them, and a requeued letter may come back in another place. So every dead
letter also goes to ``NS.dead-letter.journal``, a stream bound to the same dead-letter
exchange (``worker.topology``); a stream is read from an offset, never consumed away, so any
number of people can read it at once and the queue is not held at all. Every replay and
discard publishes audit events (``dlq.replayed`` / ``dlq.discarded``, each naming a batch of
letters) to ``NS.events``, and the journal is bound to those too, so:

    letters now = letters in the journal - one removal per audit event item naming that id

in journal order. A stream has no "end" a reader is told about, so a reader appends a marker
of its own (a tiny message to the journal, with confirms) and reads from the first offset up
to it: everything before the marker was there when the read began.

When the two views disagree. The journal and the queue are told the same things by the same
publishes, but not everything that changes the queue goes through us: a purge by hand, a
``basic.get`` by another tool, letters from a worker older than the journal, a replay that
died between its audit event and its ack, letters past the journal's retention. ``View``
compares its count with the queue's own message count and says how they differ; the
commands that change the queue (``replay``, ``discard``) act on the queue itself, so they
never act on a letter that is not there, and still find letters the journal missed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass

import pika
from pika.adapters.blocking_connection import BlockingConnection

from worker.commands import dead_letters as dl
from worker.commands.dead_letters import DeadLetter
from worker.topology import AUDIT_TYPES, Topology

MARKER = "x-journal-marker"  # header of a reader's end marker; not a letter
READ_AHEAD = 2000  # stream deliveries in flight to a reader (a stream consumer needs a qos)
ACK_EVERY = 500  # a stream ack only returns credit: one multiple ack per this many
QUIET_LIMIT = 30.0  # seconds without a journal entry before a reader gives up


class JournalError(RuntimeError):
    """The journal could not be read to its end."""


@dataclass(frozen=True)
class View:
    """The dead letters now in the queue as the journal knows them, and the queue's count."""

    letters: list[DeadLetter]
    queue_count: int  # ready messages in NS.dead-letter (letters a replay holds are not ready)
    queue: str

    def disagreement(self) -> str | None:
        """One line saying how the journal and the queue differ, or None when they agree."""
        journal = len(self.letters)
        if journal == self.queue_count:
            return None
        if self.queue_count < journal:
            return (
                f"{self.queue} holds {self.queue_count} messages, the journal lists {journal}: "
                "a replay or discard running now holds some, or someone took letters without "
                "dlq (a purge, a basic.get); replay/discard act on what the queue holds"
            )
        return (
            f"{self.queue} holds {self.queue_count} messages, the journal lists {journal}: "
            f"{self.queue_count - journal} came in without the journal (by hand, from a worker "
            "older than the journal, past its retention, or a replay stopped before its ack); "
            "replay --all and discard --all still reach them"
        )


def read(connection: BlockingConnection, topology: Topology) -> View:
    """The journal's letters minus its removals, oldest first. Raises ``ChannelClosedByBroker``
    (404) when the namespace has no dead-letter queue: nothing is declared then."""
    channel = connection.channel()
    queue_count = channel.queue_declare(topology.dead_letter, passive=True).method.message_count
    topology.declare_journal(channel)  # an installation older than the journal gains it here
    marker = uuid.uuid4().hex
    channel.confirm_delivery()
    channel.basic_publish("", topology.dead_letter_journal, b"", _marker_properties(marker))
    entries = _read_to(connection, topology.dead_letter_journal, marker)
    channel.close()
    return View(_fold(entries), queue_count, topology.dead_letter)


def _marker_properties(marker: str) -> pika.BasicProperties:
    return pika.BasicProperties(headers={MARKER: marker}, delivery_mode=2)


def _read_to(connection: BlockingConnection, journal: str, marker: str) -> list:
    """(offset, properties, body) of every entry before ``marker``."""
    channel = connection.channel()
    channel.basic_qos(prefetch_count=READ_AHEAD)
    entries: list = []
    done = False
    last_tag = 0
    heard = time.monotonic()

    def on_entry(_ch, method, properties, body) -> None:
        nonlocal done, last_tag, heard
        if done:
            return
        last_tag, heard = method.delivery_tag, time.monotonic()
        found = (properties.headers or {}).get(MARKER)
        if found is not None:
            done = dl.plain(found) == marker
        else:
            entries.append((method.delivery_tag, properties, body))
        if last_tag % ACK_EVERY == 0:
            channel.basic_ack(last_tag, multiple=True)

    channel.basic_consume(journal, on_entry, arguments={"x-stream-offset": "first"})
    while not done:
        connection.process_data_events(time_limit=1)
        if time.monotonic() - heard > QUIET_LIMIT:
            raise JournalError(f"{journal} went quiet before the end of the read")
    channel.close()
    return entries


def _fold(entries: list) -> list[DeadLetter]:
    """Letters in journal order, each audit event taking away the oldest letter of its id."""
    letters: list[DeadLetter | None] = []
    by_id: dict[str, deque[int]] = defaultdict(deque)
    for offset, properties, body in entries:
        if properties.type in AUDIT_TYPES:
            for gone in _removed_ids(body):
                if by_id.get(gone):
                    letters[by_id[gone].popleft()] = None
            continue
        letter = dl.read(offset, properties, body)
        by_id[letter.id].append(len(letters))
        letters.append(letter)
    return [letter for letter in letters if letter is not None]


def _removed_ids(body: bytes) -> list[str]:
    """The dead-letter ids an audit event names, one removal each (an id twice: two). Only
    the batch shape (``data.letters``): the one-letter shape before it was never released."""
    try:
        named = json.loads(body)["data"]["letters"]
        return [item["dead_letter_id"] for item in named]
    except (ValueError, KeyError, TypeError):
        return []  # not our audit event: someone else published that type; it removes nothing
