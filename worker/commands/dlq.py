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

This module holds the commands and what a replay publishes; which letters a command means
and the broker it reads them from are ``dlq_letters``'s, what it prints is ``dlq_output``'s.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from datetime import UTC, datetime

import pika

from worker.bootstrap import topology as topology_of
from worker.commands import audit, dlq_letters, dlq_output, moving, output
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
from worker.topology import Topology

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
    since = dlq_letters.since(args.since, now) if args.since else None
    if args.limit is not None and args.limit < 1:
        raise Fail("--limit must be 1 or more", USAGE)
    view = dlq_letters.read_journal(settings)
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
        empty = dlq_output.empty(settings) if not view.letters else "no dead letter matches"
        print(empty, file=sys.stderr if args.json else sys.stdout)
    elif args.group:
        dlq_output.print_groups(letters, as_json=args.json)
    elif args.json:
        output.json_lines(letter.summary(now) for letter in letters)
    else:
        dlq_output.print_table(letters, now, settings, of=len(view.letters))
    return OK


def cmd_show(args: argparse.Namespace) -> int:
    settings = settings_or_fail()
    now = datetime.now(UTC)
    # The queue itself, held for the moment of the look: the journal's copy of a broker dead
    # letter has lost x-death on RabbitMQ 3.10 (``dead_letters._journal_verdict``).
    with dlq_letters.held_queue(settings) as letters:
        found = dlq_letters.select(letters, [args.id])
    for letter in found:
        if args.json:
            output.json_lines([dlq_output.in_full(letter, now)])
        else:
            print(dl.render(letter, now))
    return OK


def cmd_replay(args: argparse.Namespace) -> int:
    _check_choice(args, "replay")
    settings = settings_or_fail()
    topology = topology_of(settings)
    if args.dry_run:
        chosen = dlq_letters.chosen_now(settings, args)
        rows = [
            dlq_output.row("would_replay", letter, routing_key=_routing_key(letter, topology))
            for letter in chosen
        ]
        if args.json:
            output.json_lines([*rows, dlq_output.summary("would_replay", chosen, topology.inbound)])
            return OK
        for row, letter in zip(rows, chosen, strict=True):
            print(f"would replay {dlq_output.describe(letter)} -> {row['routing_key']}")
        print(
            f"would move {dlq_output.tally(chosen)} to {topology.inbound}; moved nothing (dry run)"
        )
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
        chosen = dlq_letters.chosen_now(settings, args)
        if args.json:
            output.json_lines([dlq_output.row("would_discard", letter) for letter in chosen])
        else:
            for letter in chosen:
                print(f"would drop {dlq_output.describe(letter)}")
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
    wanted = dlq_letters.wanted_ids(settings, args.ids) if args.ids else None

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

    ready = dlq_letters.ready(settings, declare=declare)
    progress = dlq_output.Progress(len(wanted) if wanted else ready)

    def done(batch: moving.Done, audited) -> None:
        record, audit_id = audited
        progress.line(audit.lines(record, audit_id))
        if args.json:
            output.json_lines(
                [
                    dlq_output.row(action, letter, routing_key=getattr(item, "routing_key", None))
                    for letter, item in batch
                ]
            )
        progress.advance(len(batch))

    mover = moving.Mover(
        dlq_letters.broker_parameters(settings), topology.dead_letter, chosen, audit_event, done
    )
    outcome = mover.run()
    progress.done()
    moved = [letter for letter, _ in outcome.done]
    if args.json:
        output.json_lines([dlq_output.summary(action, moved, where, outcome)])
    elif action == "replayed":
        print(f"moved {dlq_output.tally(moved)} to {where}")
    else:
        for letter in moved:
            print(f"dropped {dlq_output.describe(letter)}")
        print(f"dropped {dlq_output.tally(moved)} from {where}")
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
