"""``provisioner events tail``: the outcome events on ``NS.events``, printed as they come.

It listens on a queue of its own (server-named, exclusive, auto-delete: it goes when the
command does, and never takes an event from anyone else's queue). ``--type`` takes
fnmatch-style globs, matched here, on our side: a glob's ``*`` crosses dots and a topic
pattern's does not, so translating them would change their meaning. A glob without wildcards
is an exact type, though, and is bound as that routing key, so the broker sends only those.

Nothing is declared but that queue: a mistyped ``PROVISIONER_NAMESPACE`` is an error (the
exchange does not exist), not a silent wait on an installation nobody uses.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import signal
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError, ChannelClosedByBroker

from schemas.errors import Unreadable
from schemas.json_body import read_json
from worker.commands import output
from worker.commands.output import OK, USAGE, Fail, redacted, settings_or_fail
from worker.topology import Topology, connection_parameters

NOT_FOUND = 404
TICK = 0.2  # seconds between looks at the clock and at a stop request while the bus is quiet
WILDCARDS = frozenset("*?[")
# The field that says what came of the event, by type; others show none.
KEY_FIELD = {
    "project.activated": "offering_ids",
    "timesheet.provisioned": "timesheet_project_id",
    "timesheet.connected": "timesheet_project_id",
    "timesheet.archived": "timesheet_project_id",
    "timesheet.restored": "timesheet_project_id",
    "timesheet.skipped": "reason",
    "timesheet.failed": "code",
}


def register(sub) -> None:
    events = sub.add_parser("events", help="the outcome events on NS.events").add_subparsers(
        dest="events_command", required=True
    )
    tail = events.add_parser("tail", help="print outcome events as they come")
    tail.add_argument(
        "--type",
        action="append",
        default=[],
        metavar="GLOB",
        help="only these types (fnmatch glob, e.g. 'timesheet.*'); repeatable",
    )
    tail.add_argument("--json", action="store_true", help="each CloudEvent as one JSON line")
    tail.add_argument("--count", type=int, metavar="N", help="exit 0 after N events")
    tail.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds")
    tail.set_defaults(func=cmd_events_tail)


def cmd_events_tail(args: argparse.Namespace) -> int:
    if (args.count is not None and args.count < 1) or (
        args.timeout is not None and args.timeout <= 0
    ):
        raise Fail("--count and --timeout must be positive", USAGE)
    settings = settings_or_fail()
    exchange = Topology(settings.namespace, ()).events
    deadline = time.monotonic() + args.timeout if args.timeout else None
    seen = 0
    with _stop_requested() as stopped, _listening(settings.amqp_url, exchange, args.type) as events:
        output.problems([f"listening on {exchange}; Ctrl-C stops"], OK)
        for body in events:
            if stopped() or (deadline and time.monotonic() >= deadline):
                break
            if body is None or not _show(body, args.type, args.json):
                continue
            seen += 1
            if args.count and seen >= args.count:
                break
    if args.count and seen < args.count and not stopped():
        raise Fail(f"{seen} of {args.count} event(s) came within {args.timeout:g} s")
    return OK


def _show(body: bytes, globs: list[str], as_json: bool) -> bool:
    """Prints the event if its type is wanted; says whether it did."""
    try:
        event = read_json(body)
    except Unreadable as exc:
        event = exc.message
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        # Not the worker's: someone else publishes on NS.events. Said, and passed over.
        why = event if isinstance(event, str) else "no CloudEvent type"
        output.problems([f"passed over a message that is no CloudEvent: {why}"], OK)
        return False
    if globs and not any(fnmatch.fnmatchcase(event["type"], g) for g in globs):
        return False
    if as_json:
        output.json_lines([event])
    else:
        print(output.printable(line(event)), flush=True)
    return True


def line(event: dict[str, Any]) -> str:
    """One readable line: time, type, project, offering, tool, and what came of it."""
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    key = KEY_FIELD.get(event["type"])
    outcome = f"{key}={output.cell(data.get(key))}" if key else ""
    if event["type"] == "timesheet.failed" and data.get("message"):
        outcome += f" {data['message']}"
    cells = [
        _when(event.get("time")),
        f"{event['type']:<22}",
        *(output.cell(data.get(k)) for k in ("project_id", "offering_id", "tool")),
        outcome,
    ]
    return "  ".join(cells).rstrip()


def _when(value: Any) -> str:
    try:
        return output.when(datetime.fromisoformat(value))
    except (TypeError, ValueError):
        return output.cell(value)


@contextlib.contextmanager
def _listening(amqp_url: str, exchange: str, globs: list[str]) -> Iterator[Iterator[bytes | None]]:
    """The bodies on ``exchange`` as they come, ``None`` at each quiet ``TICK``; one line and
    exit 1 if the broker cannot be reached, refuses, goes away, or has no such exchange."""
    params = connection_parameters(amqp_url, name="provisioner events tail")
    try:
        connection = pika.BlockingConnection(params)
    except AMQPError as exc:
        where = f"{params.host}:{params.port}"
        raise Fail(f"broker unreachable at {where}: {redacted(exc, amqp_url)}") from None
    try:
        channel = connection.channel()
        queue = _own_queue(channel, exchange, globs)
        consumed = channel.consume(queue, auto_ack=True, inactivity_timeout=TICK)
        yield (body for _method, _properties, body in consumed)
    except ChannelClosedByBroker as exc:
        if exc.reply_code == NOT_FOUND:
            raise Fail(
                f"{exchange} does not exist: is PROVISIONER_NAMESPACE right? "
                "(the worker declares it when it starts)"
            ) from None
        raise Fail(f"the broker refused: {redacted(exc, amqp_url)}") from None
    except AMQPError as exc:
        raise Fail(f"lost the broker: {redacted(exc, amqp_url)}") from None
    finally:
        with contextlib.suppress(AMQPError):
            if connection.is_open:
                connection.close()


def _own_queue(channel: BlockingChannel, exchange: str, globs: list[str]) -> str:
    channel.exchange_declare(exchange, passive=True)  # 404 if the namespace is wrong
    declared = channel.queue_declare("", exclusive=True, auto_delete=True)
    queue = declared.method.queue
    exact = all(globs) and not any(WILDCARDS & set(g) for g in globs)
    for routing_key in sorted(set(globs)) if globs and exact else ["#"]:
        channel.queue_bind(queue, exchange, routing_key=routing_key)
    return queue


@contextlib.contextmanager
def _stop_requested() -> Iterator[Callable[[], bool]]:
    """Ctrl-C and SIGTERM ask the tail to stop at its next tick: a clean exit 0, with the
    connection closed, rather than a KeyboardInterrupt inside pika."""
    requested: list[int] = []
    handlers = {
        sig: signal.signal(sig, lambda signum, _frame: requested.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield lambda: bool(requested)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
