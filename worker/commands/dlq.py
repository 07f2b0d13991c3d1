"""``provisioner dlq``: the on-call engineer's tools for NS.dead-letter.

``list`` and ``show`` only look, and they look at the dead-letter journal (``journal``): a
stream that gets every dead letter and every removal, which any number of people can read at
once without taking a single letter from the queue. (Browsing the queue itself, as this did
before, held every letter unacked for the length of a listing, so a colleague's ``dlq list``
at the same moment saw fewer or none.) ``list`` compares the journal with the queue's own
count and says when they disagree.

``replay`` and ``discard`` act on the queue itself (``moving``): publishes with pipelined
confirms, each letter acked only once the broker has confirmed its copy (replay) and the
audit event that names it (both). Letters are audited in batches: one ``dlq.replayed`` /
``dlq.discarded`` CloudEvent on NS.events names up to a few hundred of them, and each letter
still gets its own JSON line on stderr (``audit``).

``--json`` on every command puts one JSON object a line on stdout; notes and errors go to
stderr, one line each.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fnmatch
import re
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pika
from pika.exceptions import AMQPError, ChannelClosedByBroker

from worker.bootstrap import topology as topology_of
from worker.commands import audit, journal, moving, output
from worker.commands import dead_letters as dl
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
    Publish,
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

    listing = cmds.add_parser("list", help="dead letters: id, event id, type, code, attempts, age")
    _json_option(listing)
    listing.add_argument("--group", action="store_true", help="counts by code and type")
    listing.add_argument("--code", help="only dead letters with this error code")
    listing.add_argument("--type", metavar="GLOB", help="only event types matching, e.g. 'deal.*'")
    listing.add_argument(
        "--since", metavar="WHEN", help="dead-lettered since: 30m, 2h, 3d, or an ISO timestamp"
    )
    listing.add_argument("--limit", type=int, metavar="N", help="the first N (oldest first)")
    listing.set_defaults(func=cmd_list)

    show = cmds.add_parser("show", help="one dead letter in full: body and headers")
    show.add_argument("id", help="its id, or a unique prefix of it")
    _json_option(show)
    show.set_defaults(func=cmd_show)

    replay = cmds.add_parser("replay", help="move dead letters back to NS.inbound")
    replay.add_argument("ids", nargs="*", metavar="ID", help="ids or unique prefixes")
    replay.add_argument("--all", action="store_true", help="every dead letter (see --code)")
    replay.add_argument("--code", help="with --all: only dead letters with this error code")
    replay.add_argument("--dry-run", action="store_true", help="say what would move; move none")
    _json_option(replay)
    replay.set_defaults(func=cmd_replay)

    discard = cmds.add_parser("discard", help="drop dead letters, after saying which")
    discard.add_argument("ids", nargs="*", metavar="ID", help="ids or unique prefixes")
    discard.add_argument("--all", action="store_true", help="every dead letter (see --code)")
    discard.add_argument("--code", help="with --all: only dead letters with this error code")
    discard.add_argument("--yes", action="store_true", help="really drop them")
    _json_option(discard)
    discard.set_defaults(func=cmd_discard)


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object a line on stdout")


# -- commands -------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    settings = settings_or_fail()
    now = datetime.now(UTC)
    since = _since(args.since, now) if args.since else None
    if args.limit is not None and args.limit < 1:
        raise Fail("--limit must be 1 or more", USAGE)
    view = _view(settings)
    letters = [
        letter
        for letter in view.letters
        if (not args.code or letter.code == args.code)
        and (not args.type or fnmatch.fnmatchcase(letter.type or "", args.type))
        and (since is None or (letter.last_failed_at and letter.last_failed_at >= since))
    ][: args.limit]
    if note := view.disagreement():
        output.problems([f"note: {note}"])
    if not letters:
        # With --json stdout stays machine-readable: zero objects, the note on stderr.
        empty = _empty(settings) if not view.letters else "no dead letter matches"
        print(empty, file=sys.stderr if args.json else sys.stdout)
    elif args.group:
        _print_groups(letters, as_json=args.json)
    elif args.json:
        output.json_lines(letter.summary(now) for letter in letters)
    else:
        _print_table(letters, now, settings, of=len(view.letters))
    return OK


def cmd_show(args: argparse.Namespace) -> int:
    settings = settings_or_fail()
    now = datetime.now(UTC)
    # The queue itself, held for the moment of the look: the journal's copy of a broker dead
    # letter has lost x-death on RabbitMQ 3.10 (``dead_letters._journal_verdict``).
    with _held_queue(settings) as letters:
        found = _select(letters, [args.id])
    for letter in found:
        if args.json:
            output.json_lines([_in_full(letter, now)])
        else:
            print(dl.render(letter, now))
    return OK


def cmd_replay(args: argparse.Namespace) -> int:
    _check_choice(args, "replay")
    settings = settings_or_fail()
    topology = topology_of(settings)
    if args.dry_run:
        chosen = _chosen_now(settings, args)
        rows = [
            _row("would_replay", letter, routing_key=_routing_key(letter, topology))
            for letter in chosen
        ]
        if args.json:
            output.json_lines([*rows, _summary("would_replay", chosen, topology.inbound)])
            return OK
        for row, letter in zip(rows, chosen, strict=True):
            print(f"would replay {_describe(letter)} -> {row['routing_key']}")
        print(f"would move {_tally(chosen)} to {topology.inbound}; moved nothing (dry run)")
        return OK

    def plan(letter: DeadLetter):
        key = _routing_key(letter, topology)
        copy_ = Publish(topology.inbound, key, letter.body, _replay_properties(letter))
        return [copy_], audit.replayed(letter, routing_key=key)

    return _move(args, settings, "replayed", plan, topology.inbound, declare=True)


def cmd_discard(args: argparse.Namespace) -> int:
    _check_choice(args, "discard")
    settings = settings_or_fail()
    topology = topology_of(settings)
    if not args.yes:
        chosen = _chosen_now(settings, args)
        if args.json:
            output.json_lines([_row("would_discard", letter) for letter in chosen])
        else:
            for letter in chosen:
                print(f"would drop {_describe(letter)}")
        raise Fail(f"dropped nothing: add --yes to drop these {len(chosen)}", USAGE)

    def plan(letter: DeadLetter):
        return [], audit.discarded(letter)  # nothing to publish but the audit event

    return _move(args, settings, "discarded", plan, topology.dead_letter)


def _check_choice(args: argparse.Namespace, verb: str) -> None:
    if args.all == bool(args.ids):
        raise Fail(f"name the dead letters to {verb} (ID…), or --all, not both", USAGE)
    if args.code and not args.all:
        raise Fail(f"--code narrows --all; with ids, name exactly the ones to {verb}", USAGE)


# -- replay and discard -----------------------------------------------------------------------
def _move(args, settings: Settings, action: str, plan, where: str, *, declare: bool = False) -> int:
    """Runs ``plan`` over the queue with pipelined confirms; prints what happened."""
    topology = topology_of(settings)
    wanted = _wanted_ids(settings, args.ids) if args.ids else None

    def chosen(letter: DeadLetter):
        if wanted is not None and letter.id not in wanted:
            return None
        if args.code and letter.code != args.code:
            return None
        return plan(letter)

    by = audit.operator()

    def audit_event(batch: moving.Done):
        record = audit.record([item for _, item in batch], by=by)
        event = audit.event(record, exchange=topology.events, source=settings.source)
        return event, (record, event.properties.message_id)

    ready = _ready(settings, declare=declare)
    progress = _Progress(len(wanted) if wanted else ready)

    def done(batch: moving.Done, audited) -> None:
        record, audit_id = audited
        progress.line(audit.lines(record, audit_id))
        if args.json:
            output.json_lines(
                [
                    _row(action, letter, routing_key=getattr(item, "routing_key", None))
                    for letter, item in batch
                ]
            )
        progress.advance(len(batch))

    mover = moving.Mover(_params(settings), topology.dead_letter, chosen, audit_event, done)
    outcome = mover.run()
    progress.done()
    moved = [letter for letter, _ in outcome.done]
    if args.json:
        output.json_lines([_summary(action, moved, where, outcome)])
    elif action == "replayed":
        print(f"moved {_tally(moved)} to {where}")
    else:
        for letter in moved:
            print(f"dropped {_describe(letter)}")
        print(f"dropped {_tally(moved)} from {where}")
    if not outcome.stopped and outcome.read < outcome.expected:
        output.problems(
            [
                f"note: read {outcome.read} of the {outcome.expected} letters the queue held "
                f"at the start (another dlq command took some, or over {moving.PREFETCH_CAP} "
                "not chosen came first); run it again for the rest"
            ]
        )
    if outcome.error is not None and outcome.stopped is None:
        raise Fail(f"lost the broker: {output.redacted(outcome.error, settings.amqp_url)}")
    if outcome.stopped:
        raise Fail(f"stopped: {outcome.stopped}; {outcome.left} chosen stay dead-lettered")
    if wanted is not None and (missing := wanted - {letter.id for letter in moved}):
        raise Fail(f"not in {topology.dead_letter} any more: {', '.join(sorted(missing))}")
    return OK


# -- what a replay publishes -------------------------------------------------------------------
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
    if letter.first_failed_at and FIRST_FAILED_AT not in headers:
        headers[FIRST_FAILED_AT] = dl.iso(letter.first_failed_at)
    if letter.history:  # the broker's x-death lines too, now that x-death itself goes
        headers[FAILURES] = letter.history[-10:]
    # A new properties object from the old one's fields: a third of copy.copy's cost.
    return pika.BasicProperties(**{**vars(letter.properties), "headers": headers})


# -- choosing -----------------------------------------------------------------------------------
def _chosen_now(settings: Settings, args: argparse.Namespace) -> list[DeadLetter]:
    """What a dry run or an unconfirmed discard names: read from the journal, never held."""
    if args.ids:
        return _find(settings, args.ids)
    view = _view(settings)
    return [letter for letter in view.letters if not args.code or letter.code == args.code]


def _wanted_ids(settings: Settings, prefixes: list[str]) -> set[str]:
    return {letter.id for letter in _find(settings, prefixes)}


def _find(settings: Settings, prefixes: list[str]) -> list[DeadLetter]:
    """The letters ``prefixes`` name, from the journal; a prefix the journal does not know is
    looked up in the queue itself (a letter from before the journal, say), which holds the
    queue for the moment of that look."""
    view = _view(settings)
    known = [p for p in prefixes if any(x.id.startswith(p) for x in view.letters)]
    found = _select(view.letters, known) if known else []
    if unknown := [p for p in prefixes if p not in known]:
        with _held_queue(settings) as letters:
            found += _select(letters, unknown)
    return found


def _select(letters: list[DeadLetter], wanted: list[str]) -> list[DeadLetter]:
    try:
        return dl.select(letters, wanted)
    except dl.SelectionError as exc:
        raise Fail(str(exc)) from None


def _since(text: str, now: datetime) -> datetime:
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
def _params(settings: Settings) -> pika.URLParameters:
    return connection_parameters(settings.amqp_url, name="provisioner dlq")


@contextlib.contextmanager
def _connection(settings: Settings) -> Iterator[pika.BlockingConnection]:
    """A connection whose broker errors end the command in one line, without the password."""
    queue = topology_of(settings).dead_letter
    params = _params(settings)
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


def _view(settings: Settings) -> journal.View:
    with _connection(settings) as connection:
        return journal.read(connection, topology_of(settings))


@contextlib.contextmanager
def _held_queue(settings: Settings) -> Iterator[list[DeadLetter]]:
    """Every letter in the queue itself, held unacked until the block ends."""
    with _connection(settings) as connection:
        yield dl.browse(connection.channel(), topology_of(settings).dead_letter)


def _ready(settings: Settings, *, declare: bool) -> int:
    """Letters now ready in the queue. Only replay declares the topology: a discard with a
    mistyped namespace should say so, not create an empty installation under that name."""
    topology = topology_of(settings)
    with _connection(settings) as connection:
        channel = connection.channel()
        channel.queue_declare(topology.dead_letter, passive=True)
        if declare:
            topology.declare(channel)
        topology.declare_journal(channel)
        return channel.queue_declare(topology.dead_letter, passive=True).method.message_count


# -- output -----------------------------------------------------------------------------------
def _empty(settings: Settings) -> str:
    return f"{topology_of(settings).dead_letter} is empty: nothing needs a person"


def _describe(letter: DeadLetter) -> str:
    return f"{letter.id} {letter.type or '-'} {letter.code}"


def _tally(letters: list[DeadLetter]) -> str:
    by_code = Counter(letter.code for letter in letters).most_common()
    detail = ", ".join(f"{code} {n}" for code, n in by_code)
    return f"{len(letters)} ({detail})" if letters else "0"


def _row(action: str, letter: DeadLetter, *, routing_key: str | None = None) -> dict:
    """``--json`` of replay and discard: one object per dead letter acted on."""
    row = {
        "action": action,
        "id": letter.id,
        "event_id": letter.event_id,
        "type": letter.type,
        "code": letter.code,
        "replays": letter.replays + (action.endswith("replayed") or action == "would_replay"),
    }
    if routing_key is not None:
        row["routing_key"] = routing_key
    return row


def _summary(action: str, letters: list[DeadLetter], where: str, outcome=None) -> dict:
    """``--json``'s last object: how many, by code, and why a run stopped early."""
    summary = {
        "summary": action,
        "count": len(letters),
        "by_code": dict(Counter(letter.code for letter in letters).most_common()),
        "queue": where,
    }
    if outcome is not None:
        summary |= {"stopped": outcome.stopped, "left": outcome.left}
    return summary


def _in_full(letter: DeadLetter, now: datetime) -> dict:
    """``dlq show --json``: the summary, properties, headers, history and the body."""
    props = {k: v for k, v in vars(letter.properties).items() if v is not None and k != "headers"}
    shown = letter.summary(now) | {
        "properties": dl.plain(props),
        "headers": dl.plain(letter.headers),
        "history": letter.history,
    }
    try:
        shown["body"] = letter.body.decode("utf-8")
    except UnicodeDecodeError:  # bytes JSON cannot carry: base64, said so by the key
        shown["body_base64"] = base64.b64encode(letter.body).decode()
    return shown


def _print_table(letters: list[DeadLetter], now: datetime, settings: Settings, *, of: int) -> None:
    short = dl.short_ids(letters)
    rows = [
        (
            short[letter.id],
            letter.event_id,
            letter.type,
            letter.code,
            letter.attempts,
            output.when(letter.first_failed_at),
            dl.human_age(letter.age_seconds(now)),
        )
        for letter in letters
    ]
    output.table(("ID", "EVENT ID", "TYPE", "CODE", "ATTEMPTS", "FIRST FAILURE", "AGE"), rows)
    shown = f"{len(letters)} of {of}" if len(letters) != of else str(of)
    print(f"{shown} in {topology_of(settings).dead_letter}")


def _print_groups(letters: list[DeadLetter], *, as_json: bool) -> None:
    found = dl.groups(letters)
    if as_json:
        output.json_lines(found)
        return
    rows = [
        (g["count"], g["code"], g["type"], g["first_failed_at"], g["last_failed_at"]) for g in found
    ]
    output.table(("COUNT", "CODE", "TYPE", "FIRST FAILURE", "LAST FAILURE"), rows)


class _Progress:
    """``[#####.....] 120/500`` redrawn in place on stderr, for long replays at a terminal."""

    def __init__(self, total: int):
        self.total, self.count = max(total, 1), 0
        self.shown = total > PROGRESS_FROM and sys.stderr.isatty()

    def line(self, text: str) -> None:
        """Lines (audit records) above the bar: one write for a batch of them."""
        prefix = "\r\033[K" if self.shown else ""
        print(f"{prefix}{text}", file=sys.stderr, flush=True)
        self._draw()

    def advance(self, by: int = 1) -> None:
        self.count += by
        self._draw()

    def done(self) -> None:
        if self.shown:
            print("\r\033[K", end="", file=sys.stderr, flush=True)

    def _draw(self) -> None:
        if self.shown:
            filled = min(30 * self.count // self.total, 30)
            bar = "#" * filled + "." * (30 - filled)
            print(f"\r[{bar}] {self.count}/{self.total}", end="", file=sys.stderr, flush=True)
