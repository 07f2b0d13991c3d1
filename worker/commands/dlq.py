"""``provisioner dlq``: the on-call engineer's tools for NS.dead-letter.

``list`` and ``show`` only look (``dead_letters`` browses without removing). ``replay``
and ``discard`` change the queue, and each message they touch leaves one JSON audit line on
stderr saying who did what to which event.

Replay never loses a message: it publishes to NS.inbound with publisher confirms and
``mandatory``, and acks the dead letter only once the broker has confirmed the copy. A crash
in between leaves the message in both places; the worker's idempotency (``source``, ``id``)
makes the duplicate harmless. Dead letters not chosen go back in order when the channel
closes.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import getpass
import json
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError, ChannelClosedByBroker, NackError, UnroutableError

from worker.bootstrap import topology as topology_of
from worker.commands import dead_letters as dl
from worker.commands import output
from worker.commands.dead_letters import DeadLetter
from worker.commands.output import OK, USAGE, Fail, settings_or_fail
from worker.messages import (
    ATTEMPTS,
    COPY_ID,
    ERROR_CODE,
    ERROR_MESSAGE,
    FAILURES,
    FIRST_FAILED_AT,
    LAST_FAILED_AT,
    ORIGINAL_ROUTING_KEY,
    REPLAYS,
)
from worker.settings import Settings
from worker.topology import Topology, connection_parameters

# A replay gets a fresh retry budget: the verdict and the counters of the last run go; what
# happened before (first failure, history) stays, and x-replays counts the round trips.
# x-first-death-* go with x-death: the broker would otherwise keep the first run's values.
DROPPED_ON_REPLAY = (
    ERROR_CODE,
    ERROR_MESSAGE,
    ATTEMPTS,
    COPY_ID,
    LAST_FAILED_AT,
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
)
PROGRESS_FROM = 20  # a bar only where a person would otherwise stare at a silent terminal


def register(sub) -> None:
    dlq = sub.add_parser("dlq", help="work the dead letters in NS.dead-letter")
    cmds = dlq.add_subparsers(dest="dlq_command", required=True)

    listing = cmds.add_parser("list", help="dead letters: id, type, code, attempts, age")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    listing.add_argument("--group", action="store_true", help="counts by code and type")
    listing.set_defaults(func=cmd_list)

    show = cmds.add_parser("show", help="one dead letter in full: body and headers")
    show.add_argument("id", help="its id, or a unique prefix of it")
    show.set_defaults(func=cmd_show)

    replay = cmds.add_parser("replay", help="move dead letters back to NS.inbound")
    replay.add_argument("ids", nargs="*", metavar="ID", help="ids or unique prefixes")
    replay.add_argument("--all", action="store_true", help="every dead letter (see --code)")
    replay.add_argument("--code", help="with --all: only dead letters with this error code")
    replay.add_argument("--dry-run", action="store_true", help="say what would move; move none")
    replay.set_defaults(func=cmd_replay)

    discard = cmds.add_parser("discard", help="drop dead letters, after saying which")
    discard.add_argument("ids", nargs="+", metavar="ID", help="ids or unique prefixes")
    discard.add_argument("--yes", action="store_true", help="really drop them")
    discard.set_defaults(func=cmd_discard)


# -- commands -------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    settings = settings_or_fail()
    now = datetime.now(UTC)
    with _dead_letters(settings) as (_, letters):
        if not letters:
            # With --json stdout stays machine-readable: zero objects, the note on stderr.
            print(_empty(settings), file=sys.stderr if args.json else sys.stdout)
        elif args.group:
            _print_groups(letters, as_json=args.json)
        elif args.json:
            for letter in letters:
                print(json.dumps(letter.summary(now)))
        else:
            _print_table(letters, now, settings)
    return OK


def cmd_show(args: argparse.Namespace) -> int:
    settings = settings_or_fail()
    with _dead_letters(settings) as (_, letters):
        for letter in _select(letters, [args.id]):
            print(dl.render(letter, datetime.now(UTC)))
    return OK


def cmd_replay(args: argparse.Namespace) -> int:
    if args.all == bool(args.ids):
        raise Fail("name the dead letters to replay (ID…), or --all, not both", USAGE)
    if args.code and not args.all:
        raise Fail("--code narrows --all; with ids, name exactly the ones to replay", USAGE)
    settings = settings_or_fail()
    topology = topology_of(settings)
    with _dead_letters(settings, declare=True) as (channel, letters):
        chosen = _select(letters, args.ids) if args.ids else letters
        if args.code:
            chosen = [letter for letter in chosen if letter.code == args.code]
        if not chosen:
            print(f"nothing to replay{f' with code {args.code}' if args.code else ''}")
            return OK
        if args.dry_run:
            for letter in chosen:
                print(f"would replay {_describe(letter)} -> {_routing_key(letter, topology)}")
            print(f"would move {_tally(chosen)} to {topology.inbound}; moved nothing (dry run)")
            return OK
        moved = _replay(channel, chosen, topology)
    print(f"moved {_tally(moved)} to {topology.inbound}")
    return OK


def cmd_discard(args: argparse.Namespace) -> int:
    settings = settings_or_fail()
    with _dead_letters(settings) as (channel, letters):
        chosen = _select(letters, args.ids)
        if not args.yes:
            for letter in chosen:
                print(f"would drop {_describe(letter)}")
            raise Fail(f"dropped nothing: add --yes to drop these {len(chosen)}", USAGE)
        for letter in chosen:
            channel.basic_ack(letter.tag)
            _audit("dlq_discarded", letter, replays=letter.replays)
            print(f"dropped {_describe(letter)}")
    print(f"dropped {_tally(chosen)} from {topology_of(settings).dead_letter}")
    return OK


# -- replay -----------------------------------------------------------------------------------
def _replay(channel: BlockingChannel, chosen: list[DeadLetter], topology: Topology) -> list:
    """Publishes each with confirms, then acks it; stops at the first refusal."""
    channel.confirm_delivery()
    progress = _Progress(len(chosen))
    moved: list[DeadLetter] = []
    for letter in chosen:
        key = _routing_key(letter, topology)
        try:
            # Blocks until the broker confirms; raises if it nacks or cannot route the copy.
            channel.basic_publish(
                topology.inbound, key, letter.body, _replay_properties(letter), mandatory=True
            )
        except (NackError, UnroutableError) as exc:
            progress.done()
            print(f"moved {_tally(moved)} to {topology.inbound}")
            raise Fail(
                f"stopped at {_describe(letter)}: broker {type(exc).__name__}; "
                f"it and the {len(chosen) - len(moved) - 1} after it stay dead-lettered"
            ) from None
        channel.basic_ack(letter.tag)
        moved.append(letter)
        progress.line(_audit_line("dlq_replayed", letter, replays=letter.replays + 1, key=key))
        progress.advance()
    progress.done()
    return moved


def _routing_key(letter: DeadLetter, topology: Topology) -> str:
    # A message that went round a retry queue came back under the work queue's name; that
    # key means nothing on NS.inbound, where the contract routes by event type.
    original = dl.plain(letter.headers.get(ORIGINAL_ROUTING_KEY))
    if original and original != topology.work_queue:
        return original
    return letter.type or "unknown"


def _replay_properties(letter: DeadLetter) -> pika.BasicProperties:
    headers = {k: v for k, v in letter.headers.items() if k not in DROPPED_ON_REPLAY}
    headers[REPLAYS] = letter.replays + 1
    if letter.first_failed_at:
        headers.setdefault(FIRST_FAILED_AT, dl.iso(letter.first_failed_at))
    if letter.history:  # the broker's x-death lines too, now that x-death itself goes
        headers[FAILURES] = letter.history[-10:]
    properties = copy.copy(letter.properties)
    properties.headers = headers
    return properties


# -- the broker -------------------------------------------------------------------------------
@contextlib.contextmanager
def _dead_letters(
    settings: Settings, *, declare: bool = False
) -> Iterator[tuple[BlockingChannel, list[DeadLetter]]]:
    """A channel holding every dead letter unacked; closing it returns those not acked.

    Only replay declares the topology: a read with a mistyped namespace should say so, not
    create an empty installation under that name."""
    topology = topology_of(settings)
    queue = topology.dead_letter
    params = connection_parameters(settings.amqp_url)
    try:
        connection = pika.BlockingConnection(params)
    except AMQPError as exc:
        where = f"{params.host}:{params.port}"
        raise Fail(f"broker unreachable at {where}: {_redacted(exc, settings)}") from None
    try:
        channel = connection.channel()
        if declare:
            topology.declare(channel)
        yield channel, dl.browse(channel, queue)
    except ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            raise Fail(f"{queue} does not exist: is PROVISIONER_NAMESPACE right?") from None
        raise Fail(f"the broker refused: {_redacted(exc, settings)}") from None
    except AMQPError as exc:
        raise Fail(f"lost the broker: {_redacted(exc, settings)}") from None
    finally:
        with contextlib.suppress(AMQPError):
            if connection.is_open:
                connection.close()


def _redacted(exc: Exception, settings: Settings) -> str:
    text = f"{type(exc).__name__} {exc}".strip()
    password = pika.URLParameters(settings.amqp_url).credentials.password
    return text.replace(password, "***") if password else text


def _select(letters: list[DeadLetter], wanted: list[str]) -> list[DeadLetter]:
    try:
        return dl.select(letters, wanted)
    except dl.SelectionError as exc:
        raise Fail(str(exc)) from None


# -- output -----------------------------------------------------------------------------------
def _empty(settings: Settings) -> str:
    return f"{topology_of(settings).dead_letter} is empty: nothing needs a person"


def _describe(letter: DeadLetter) -> str:
    return f"{letter.id} {letter.type or '-'} {letter.code}"


def _tally(letters: list[DeadLetter]) -> str:
    by_code = Counter(letter.code for letter in letters).most_common()
    detail = ", ".join(f"{code} {n}" for code, n in by_code)
    return f"{len(letters)} ({detail})" if letters else "0"


def _print_table(letters: list[DeadLetter], now: datetime, settings: Settings) -> None:
    short = dl.short_ids(letters)
    rows = [
        (
            short[letter.id],
            letter.type or "-",
            letter.code,
            str(letter.attempts),
            output.when(letter.first_failed_at),
            dl.human_age(letter.age_seconds(now)),
        )
        for letter in letters
    ]
    output.table(("ID", "TYPE", "CODE", "ATTEMPTS", "FIRST FAILURE", "AGE"), rows)
    print(f"{len(letters)} in {topology_of(settings).dead_letter}")


def _print_groups(letters: list[DeadLetter], *, as_json: bool) -> None:
    found = dl.groups(letters)
    if as_json:
        for g in found:
            times = {k: dl.iso(g[k]) for k in ("first_failed_at", "last_failed_at")}
            print(json.dumps({**g, **times}))
        return
    rows = [
        (
            str(g["count"]),
            g["code"],
            g["type"],
            output.when(g["first_failed_at"]),
            output.when(g["last_failed_at"]),
        )
        for g in found
    ]
    output.table(("COUNT", "CODE", "TYPE", "FIRST FAILURE", "LAST FAILURE"), rows)


# -- audit and progress -----------------------------------------------------------------------
def _audit(event: str, letter: DeadLetter, **fields) -> None:
    print(_audit_line(event, letter, **fields), file=sys.stderr, flush=True)


def _audit_line(event: str, letter: DeadLetter, *, replays: int, key: str | None = None) -> str:
    """One JSON object: which message, what was done, by whom. Never the broker URL."""
    record = {
        "event": event,
        "id": letter.id,
        "event_id": letter.event_id,
        "type": letter.type,
        "code": letter.code,
        "replays": replays,
    }
    if key is not None:
        record["routing_key"] = key
    record |= {"by": _operator(), "at": dl.iso(datetime.now(UTC))}
    return json.dumps(record)


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry
        return "unknown"


class _Progress:
    """``[#####.....] 120/500`` redrawn in place on stderr, for long replays at a terminal."""

    def __init__(self, total: int):
        self.total, self.count = total, 0
        self.shown = total > PROGRESS_FROM and sys.stderr.isatty()

    def line(self, text: str) -> None:
        """A line (an audit record) above the bar."""
        prefix = "\r\033[K" if self.shown else ""
        print(f"{prefix}{text}", file=sys.stderr, flush=True)
        self._draw()

    def advance(self) -> None:
        self.count += 1
        self._draw()

    def done(self) -> None:
        if self.shown:
            print("\r\033[K", end="", file=sys.stderr, flush=True)

    def _draw(self) -> None:
        if self.shown:
            filled = 30 * self.count // self.total
            bar = "#" * filled + "." * (30 - filled)
            print(f"\r[{bar}] {self.count}/{self.total}", end="", file=sys.stderr, flush=True)
