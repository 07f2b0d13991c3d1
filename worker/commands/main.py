"""``provisioner``: the one console script, its parser and ``run``/``publish``.

Each command group registers its own subcommands; they are imported here, and only here."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from pika.exceptions import AMQPError

from handlers.rules import RulesError
from worker.commands.output import FAILED, OK, USAGE, Fail, settings_or_fail


def cmd_run(args: argparse.Namespace) -> int:
    import structlog

    from adapters.migrate import DatabaseTooNew, MigrationError
    from worker import bootstrap, cpu, logs, memory
    from worker.commands import startup
    from worker.commands.db import too_new

    settings = settings_or_fail()
    logs.configure(settings.log_level, secrets=settings.secrets(), form=settings.log_format)
    arenas_limited = memory.limit_malloc_arenas()  # before any thread starts
    # Every start-up check before the broker is dialled: exit 2, one line naming the setting.
    startup.rules_or_fail(settings)
    try:
        # Before the store (which may migrate) and the lanes' threads, which inherit it.
        pinned = cpu.pin(settings.cpu)
        deps = bootstrap.build_deps(settings, startup.store_or_fail(settings))  # migrates
    except (RulesError, cpu.CpuError) as exc:
        raise Fail(str(exc), USAGE) from None
    except DatabaseTooNew as exc:
        raise too_new(exc, settings.database_url) from None
    except MigrationError as exc:
        raise Fail(f"state store: {exc}") from None
    structlog.get_logger().info("process", pinned_to=pinned, malloc_arenas_limited=arenas_limited)
    consumer = bootstrap.build_consumer(settings, deps)
    try:
        bootstrap.serve_probes(settings, consumer, deps.store)
    except OSError as exc:
        raise Fail(
            f"PROVISIONER_METRICS_BIND: cannot serve there ({exc.strerror})", USAGE
        ) from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: consumer.stop())
    consumer.run()
    deps.store.close()
    return OK


def cmd_publish(args: argparse.Namespace) -> int:
    from worker.commands.publishing import EventRefused, check_event, publish_event

    try:
        body = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise Fail(f"{args.file}: {exc.strerror}", USAGE) from None
    try:
        if args.check:
            inbound = check_event(body)
            print(f"{args.file}: valid {inbound.type} {inbound.envelope.id} (nothing published)")
            return OK
        from worker import bootstrap

        settings = settings_or_fail()
        event = publish_event(settings.amqp_url, bootstrap.topology(settings), body)
    except EventRefused as exc:
        raise Fail(f"{args.file}: {exc}", FAILED) from None
    except AMQPError as exc:
        raise Fail(f"broker refused or unreachable: {type(exc).__name__} {exc}") from None
    print(f"published {event.type} {event.id} to {settings.namespace}.inbound")
    return OK


def parser() -> argparse.ArgumentParser:
    from worker.commands import (
        asyncapi,
        check,
        clients,
        db,
        demo,
        dlq,
        events,
        ingress,
        reconcile,
        rules,
    )

    top = argparse.ArgumentParser(
        prog="provisioner", description="Provision timesheet projects from CRM deal events."
    )
    top.add_argument("--version", action="version", version=f"provisioner {installed_version()}")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="the worker").set_defaults(func=cmd_run)
    publish = sub.add_parser("publish", help="publish one CloudEvent to NS.inbound")
    publish.add_argument("file", help="a CloudEvent JSON file, or - for stdin")
    publish.add_argument(
        "--check", action="store_true", help="validate it as the worker would; publish nothing"
    )
    publish.set_defaults(func=cmd_publish)
    for group in (dlq, rules, clients, ingress, events, asyncapi, db, demo, reconcile, check):
        group.register(sub)
    return top


def installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("timesheet-provisioner")
    except PackageNotFoundError:  # a checkout run without ``make setup``
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except Fail as exc:
        for line in str(exc).splitlines():  # one line a problem
            print(f"provisioner: {line}", file=sys.stderr)
        return exc.status
