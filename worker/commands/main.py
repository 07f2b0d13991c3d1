"""``provisioner``: the one console script, its parser and ``run``/``publish``.

Each command group registers its own subcommands; they are imported here, and only here."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from pika.exceptions import AMQPError

from handlers.rules import RulesError
from worker.commands.output import OK, USAGE, Fail, settings_or_fail


def cmd_run(args: argparse.Namespace) -> int:
    import structlog

    from adapters.migrate import DatabaseTooNew, MigrationError
    from worker import bootstrap, cpu, logs, memory
    from worker.commands.db import too_new

    settings = settings_or_fail()
    logs.configure(secrets=settings.secrets())
    arenas_limited = memory.limit_malloc_arenas()  # before any thread starts
    try:
        deps = bootstrap.build_deps(settings)
        pinned = cpu.pin(settings.cpu)  # before the lanes' threads start: they inherit it
    except (RulesError, cpu.CpuError) as exc:
        raise Fail(str(exc), USAGE) from None
    except DatabaseTooNew as exc:
        raise too_new(exc, settings.database_url) from None
    except MigrationError as exc:
        raise Fail(f"state store: {exc}") from None
    structlog.get_logger().info("process", pinned_to=pinned, malloc_arenas_limited=arenas_limited)
    consumer = bootstrap.build_consumer(settings, deps)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: consumer.stop())
    consumer.run()
    deps.store.close()
    return OK


def cmd_publish(args: argparse.Namespace) -> int:
    from worker import bootstrap
    from worker.commands.publishing import EventFileError, publish_event

    settings = settings_or_fail()
    try:
        body = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise Fail(f"{args.file}: {exc.strerror}", USAGE) from None
    try:
        event = publish_event(settings.amqp_url, bootstrap.topology(settings), body)
    except EventFileError as exc:
        raise Fail(f"{args.file}: {exc}", USAGE) from None
    except AMQPError as exc:
        raise Fail(f"broker refused or unreachable: {type(exc).__name__} {exc}") from None
    print(f"published {event.type} {event.id} to {settings.namespace}.inbound")
    return OK


def parser() -> argparse.ArgumentParser:
    from worker.commands import clients, db, dlq, ingress, rules

    top = argparse.ArgumentParser(
        prog="provisioner", description="Provision timesheet projects from CRM deal events."
    )
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="the worker").set_defaults(func=cmd_run)
    publish = sub.add_parser("publish", help="publish one CloudEvent to NS.inbound")
    publish.add_argument("file", help="a CloudEvent JSON file, or - for stdin")
    publish.set_defaults(func=cmd_publish)
    for group in (dlq, rules, clients, ingress, db):
        group.register(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except Fail as exc:
        print(f"provisioner: {exc}", file=sys.stderr)
        return exc.status
