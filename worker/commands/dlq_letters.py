"""Which dead letters a ``provisioner dlq`` command means, and the broker it reads them from.

Listing and choosing read the dead-letter journal (``journal``), which no reader holds; only
a letter the journal does not know, and ``dlq show``, look at the queue itself, holding it
for the moment of the look. Broker errors end the command in one line, without the password.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pika
from pika.exceptions import AMQPError, ChannelClosedByBroker

from worker.bootstrap import topology as topology_of
from worker.commands import dead_letters as dl
from worker.commands import journal, output
from worker.commands.dead_letters import DeadLetter
from worker.commands.output import USAGE, Fail
from worker.settings import Settings
from worker.topology import connection_parameters


# -- choosing -----------------------------------------------------------------------------------
def chosen_now(settings: Settings, args: argparse.Namespace) -> list[DeadLetter]:
    """What a dry run or an unconfirmed discard names: read from the journal, never held."""
    if args.ids:
        return find(settings, args.ids)
    view = read_journal(settings)
    return [letter for letter in view.letters if not args.code or letter.code == args.code]


def wanted_ids(settings: Settings, prefixes: list[str]) -> set[str]:
    return {letter.id for letter in find(settings, prefixes)}


def find(settings: Settings, prefixes: list[str]) -> list[DeadLetter]:
    """The letters ``prefixes`` name, from the journal; a prefix the journal does not know is
    looked up in the queue itself (a letter from before the journal, say), which holds the
    queue for the moment of that look."""
    view = read_journal(settings)
    known = [p for p in prefixes if any(x.id.startswith(p) for x in view.letters)]
    found = select(view.letters, known) if known else []
    if unknown := [p for p in prefixes if p not in known]:
        with held_queue(settings) as letters:
            found += select(letters, unknown)
    return found


def select(letters: list[DeadLetter], wanted: list[str]) -> list[DeadLetter]:
    try:
        return dl.select(letters, wanted)
    except dl.SelectionError as exc:
        raise Fail(str(exc)) from None


def since(text: str, now: datetime) -> datetime:
    if match := re.fullmatch(r"(\d+)([smhdw])", text.strip()):
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match[2]]
        return now - timedelta(seconds=int(match[1]) * unit)
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Fail(
            f"--since {text!r}: not a duration (30m, 2h, 3d) or an ISO time", USAGE
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# -- the broker -------------------------------------------------------------------------------
def broker_parameters(settings: Settings) -> pika.URLParameters:
    return connection_parameters(settings.amqp_url, name="provisioner dlq")


@contextlib.contextmanager
def broker(settings: Settings) -> Iterator[pika.BlockingConnection]:
    """A connection whose broker errors end the command in one line, without the password."""
    queue = topology_of(settings).dead_letter
    params = broker_parameters(settings)
    try:
        connection = pika.BlockingConnection(params)
    except AMQPError as exc:
        where = f"{params.host}:{params.port}"
        raise Fail(
            f"broker unreachable at {where}: {output.redacted(exc, settings.amqp_url)}"
        ) from None
    try:
        yield connection
    except ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            raise Fail(f"{queue} does not exist: is PROVISIONER_NAMESPACE right?") from None
        raise Fail(f"the broker refused: {output.redacted(exc, settings.amqp_url)}") from None
    except (AMQPError, journal.JournalError) as exc:
        raise Fail(f"lost the broker: {output.redacted(exc, settings.amqp_url)}") from None
    finally:
        with contextlib.suppress(AMQPError):
            if connection.is_open:
                connection.close()


def read_journal(settings: Settings) -> journal.View:
    with broker(settings) as connection:
        return journal.read(connection, topology_of(settings))


@contextlib.contextmanager
def held_queue(settings: Settings) -> Iterator[list[DeadLetter]]:
    """Every letter in the queue itself, held unacked until the block ends."""
    with broker(settings) as connection:
        yield dl.browse(connection.channel(), topology_of(settings).dead_letter)


def ready(settings: Settings, *, declare: bool) -> int:
    """Letters now ready in the queue. Only replay declares the topology: a discard with a
    mistyped namespace should say so, not create an empty installation under that name."""
    topology = topology_of(settings)
    with broker(settings) as connection:
        channel = connection.channel()
        channel.queue_declare(topology.dead_letter, passive=True)
        if declare:
            topology.declare(channel)
        topology.declare_journal(channel)
        return channel.queue_declare(topology.dead_letter, passive=True).method.message_count
