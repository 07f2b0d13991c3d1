"""``provisioner crm reconcile``: ask each CRM which deals changed, and publish one
``crm.deal_changed`` for each that matters to the rules (``worker.reconcile``).

Exit 0 when every CRM was swept; 1 when one could not be (the others still are, and their
cursors advance); 2 for unusable settings: no CRM configured, a ``--crm`` not configured,
a ``--since`` that is no time or duration, an ``--every`` that is no duration or comes with
``--since`` or ``--dry-run``. With ``--every`` it runs until SIGTERM or SIGINT, then exits
0 (``worker.reconcile_schedule``); a CRM that fails is logged and tried again next interval.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

from schemas.crm import rfc3339
from worker.commands import output
from worker.commands.output import FAILED, OK, USAGE, Fail, settings_or_fail

CRMS = ("hubspot", "pipedrive", "salesforce")
RECONCILE_EPILOG = """\
Without --since, each CRM account is swept from where its last successful sweep ended
(less two minutes), or, the first time, from PROVISIONER_RECONCILE_LOOKBACK ago (7d).
A backfill at install: provisioner crm reconcile --since 2026-01-01. A second run over
the same window publishes the same event ids, which the worker gives no second effect.
--every 15m sweeps once at start, then at every quarter hour, until stopped; of several
replicas, one sweeps at a time (the broker's exclusive queue NS.reconcile) and the others
skip that interval. Metrics on PROVISIONER_METRICS_BIND, as provisioner run."""


def register(sub) -> None:
    crm = sub.add_parser("crm", help="the CRMs the deals come from").add_subparsers(
        dest="crm_command", required=True
    )
    reconcile = crm.add_parser(
        "reconcile",
        help="publish a crm.deal_changed for each deal a CRM changed that no webhook told",
        epilog=RECONCILE_EPILOG,
    )
    reconcile.add_argument(
        "--crm",
        action="extend",
        nargs="+",
        choices=CRMS,
        metavar="NAME",
        help="only these CRMs (default: every configured one)",
    )
    reconcile.add_argument(
        "--since",
        metavar="TIMESTAMP|DURATION",
        help="from this RFC 3339 time or date (UTC), or this long ago (30m, 12h, 7d)",
    )
    reconcile.add_argument(
        "--dry-run", action="store_true", help="list what would be published; publish nothing"
    )
    reconcile.add_argument("--json", action="store_true", help="one JSON object a line")
    reconcile.add_argument(
        "--every",
        metavar="DURATION",
        help="sweep once per DURATION (15m, 1h) until stopped; not with --since or --dry-run",
    )
    reconcile.set_defaults(func=cmd_crm_reconcile)


def parse_since(text: str, now: datetime) -> datetime:
    """An RFC 3339 time (``Z`` or an offset), a date (midnight UTC), or a duration before
    ``now``; ``ValueError`` naming the forms, and for a time after ``now``."""
    from worker.settings import duration_seconds

    text = text.strip()
    try:
        return now - timedelta(seconds=duration_seconds(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"--since {text[:40]!r}: not an RFC 3339 time (2026-01-01T00:00:00Z), a date "
            "(2026-01-01) or a duration (30m, 12h, 7d)"
        ) from None
    if moment.tzinfo is None:
        if len(text) > len("2026-01-01"):
            raise ValueError(f"--since {text[:40]!r}: a time needs Z or an offset (RFC 3339)")
        moment = moment.replace(tzinfo=UTC)
    if moment > now:
        raise ValueError(f"--since {text[:40]!r} is in the future")
    return moment


def chosen_crms(configured: list[str], named: list[str] | None) -> list[str]:
    """The CRMs to sweep, in the order named; ``Fail`` (exit 2) when none can be."""
    if not configured:
        raise Fail(
            "no CRM is configured: set HUBSPOT_ACCESS_TOKEN, PIPEDRIVE_API_TOKEN and "
            "PIPEDRIVE_BASE_URL, or a Salesforce sign-in",
            USAGE,
        )
    if named is None:
        return configured
    if missing := [c for c in dict.fromkeys(named) if c not in configured]:
        raise Fail(f"--crm {', '.join(missing)}: not configured here", USAGE)
    return list(dict.fromkeys(named))


def every_seconds(args: argparse.Namespace) -> float | None:
    """The interval of ``--every``, or None; ``Fail`` (exit 2) for one that cannot be."""
    from worker.settings import duration_seconds

    if args.every is None:
        return None
    if args.since is not None or args.dry_run:
        raise Fail("--every sweeps from each cursor and publishes: not with --since or --dry-run",
                   USAGE)  # fmt: skip
    try:
        seconds = duration_seconds(args.every)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise Fail(f"--every {args.every[:40]!r}: not a duration above zero (15m, 1h)", USAGE)
    return seconds


def cmd_crm_reconcile(args: argparse.Namespace) -> int:
    from handlers.rules import RulesError, load_rules
    from worker import bootstrap, logs
    from worker.commands.startup import store_or_fail
    from worker.pacing import pacing_store

    every = every_seconds(args)
    settings = settings_or_fail()
    # Log lines (a reader's warnings) go to stderr, redacted: stdout is the command's output.
    logs.configure(settings.log_level, secrets=settings.secrets(), form=settings.log_format)
    now = datetime.now(UTC)
    try:
        since = parse_since(args.since, now) if args.since is not None else None
    except ValueError as exc:
        raise Fail(str(exc), USAGE) from None
    crms = chosen_crms(settings.enabled_crms(), args.crm)
    try:
        rules = load_rules(settings.rules)
    except RulesError as exc:
        raise Fail("\n".join(f"PROVISIONER_RULES: {p}" for p in exc.problems), USAGE) from None
    store = store_or_fail(settings)
    readers = bootstrap.build_crms(settings, rules, pacing_store(settings), store)
    sweeper = Sweeper(settings, crms, readers, rules, store)
    try:
        if every is not None:
            return _schedule(settings, sweeper, every, store)
        return _once(args, sweeper, now, since)
    finally:
        store.close()


class Sweeper:
    """Every chosen CRM swept in turn, each ending in its ``Sweep`` or the one-line reason it
    could not be swept (the CRM's, the broker's or the store's error; never a secret)."""

    def __init__(self, settings, crms: list[str], readers: dict, rules, store):
        self.settings, self.crms, self.readers = settings, crms, readers
        self.rules, self.store = rules, store

    def publisher(self):
        """A confirmed publisher on ``NS.inbound``, or the broker's error as a line."""
        from pika.exceptions import AMQPError

        from worker import bootstrap, reconcile

        try:
            return reconcile.ConfirmedPublisher(
                self.settings.amqp_url, bootstrap.topology(self.settings)
            )
        except AMQPError as exc:
            return f"broker: {output.redacted(exc, self.settings.amqp_url)}"

    def each(self, publish, *, now: datetime, since: datetime | None = None, abandon=None):
        from pika.exceptions import AMQPError

        from adapters.sql import DRIVER_ERRORS
        from schemas.errors import ProvisionerError
        from worker import reconcile

        for crm in self.crms:
            if abandon is not None and abandon():
                raise reconcile.SweepAbandoned(f"{crm}: not begun")
            try:
                swept = reconcile.sweep_crm(
                    crm,
                    self.readers[crm],
                    rules=self.rules,
                    store=self.store,
                    publish=publish,
                    now=now,
                    lookback=timedelta(seconds=self.settings.reconcile_lookback),
                    since=since,
                    abandon=abandon,
                )
            except ProvisionerError as exc:
                swept = str(exc)
            except AMQPError as exc:
                swept = f"broker: {output.redacted(exc, self.settings.amqp_url)}"
            except DRIVER_ERRORS as exc:
                swept = f"state store: {type(exc).__name__}"
            yield crm, swept

    def interval(self, abandon):
        """One scheduled sweep: a publisher of its own (a connection idle between intervals
        would miss its heartbeats), every CRM from its cursor."""
        publisher = self.publisher()
        if isinstance(publisher, str):
            yield from ((crm, publisher) for crm in self.crms)
            return
        try:
            yield from self.each(publisher, now=datetime.now(UTC), abandon=abandon)
        finally:
            publisher.close()


def _once(args: argparse.Namespace, sweeper: Sweeper, now: datetime, since) -> int:
    publisher = None
    if not args.dry_run:
        publisher = sweeper.publisher()
        if isinstance(publisher, str):
            raise Fail(publisher)
    status = OK
    try:
        for crm, swept in sweeper.each(publisher, now=now, since=since):
            if isinstance(swept, str):
                status = _failed(args, crm, swept)
            else:
                _report(args, swept)
    finally:
        if publisher is not None:
            publisher.close()
    return status


def _schedule(settings, sweeper: Sweeper, every: float, store) -> int:
    import signal

    from worker import bootstrap
    from worker.reconcile_schedule import Schedule, Stopping, SweepLock

    stopping = Stopping()
    schedule = Schedule(
        crms=sweeper.crms,
        interval=every,
        lock=SweepLock(settings.amqp_url, bootstrap.topology(settings), settings.heartbeat),
        sweep_each=sweeper.interval,
        stopping=stopping,
    )
    try:
        bootstrap.serve_reconcile_probes(settings, schedule, store)
    except OSError as exc:
        raise Fail(
            f"PROVISIONER_METRICS_BIND: cannot serve there ({exc.strerror})", USAGE
        ) from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stopping)
    schedule.run()
    return OK


def _failed(args: argparse.Namespace, crm: str, problem: str) -> int:
    print(f"provisioner: {crm}: not swept: {problem}", file=sys.stderr)
    if args.json:
        output.json_lines([{"crm": crm, "swept": False, "error": problem}])
    return FAILED


def _report(args: argparse.Namespace, swept) -> None:
    window = swept.window
    for problem in swept.problems:
        print(f"provisioner: {swept.crm}: skipped: {problem}", file=sys.stderr)
    if args.json:
        rows = [
            {
                "crm": swept.crm, "deal_id": p.deal_id, "event_id": p.event_id,
                "modified_at": p.modified_at, "stage": p.stage, "would_publish": True,
            }
            for p in swept.planned
        ]  # fmt: skip
        rows.append(
            {
                "crm": swept.crm, "account": swept.account, "swept": True,
                "dry_run": swept.dry_run, "examined": swept.examined,
                "published": swept.published, "would_publish": len(swept.planned),
                "skipped": swept.skipped, "since": window.since, "until": window.until,
            }
        )  # fmt: skip
        output.json_lines(rows)
        return
    for p in swept.planned:
        print(
            f"would publish {p.event_id}: {swept.crm} deal {p.deal_id} "
            f"(stage {p.stage or '-'}, modified {rfc3339(p.modified_at)})"
        )
    published = (
        f"would publish {len(swept.planned)}" if swept.dry_run else f"published {swept.published}"
    )
    print(
        f"{swept.crm} {swept.account}{' (dry run)' if swept.dry_run else ''}: "
        f"examined {swept.examined}, {published}, skipped {swept.skipped}, "
        f"window {rfc3339(window.since)} .. {rfc3339(window.until)}"
    )
