"""``provisioner db``: the state store's schema version, and its upgrade.

The worker upgrades the schema itself when it starts; ``db upgrade`` does the same without
starting it (before a rollout, say), and ``db status`` shows where a database stands. Nothing
here prints a database URL as given: it can hold a password.
"""

from __future__ import annotations

import argparse

from worker.commands import output
from worker.commands.output import FAILED, OK, USAGE, Fail, settings_or_fail


def register(sub) -> None:
    db = sub.add_parser("db", help="the state store's schema version").add_subparsers(
        dest="db_command", required=True
    )
    status = db.add_parser("status", help="the current and the latest schema version")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(func=cmd_db_status)
    db.add_parser("upgrade", help="apply the migrations not yet applied").set_defaults(
        func=cmd_db_upgrade
    )


def too_new(exc: Exception, url: str) -> Fail:
    """A newer release's database: a configuration problem (exit 2), never run against."""
    from adapters.sql import without_password

    return Fail(f"PROVISIONER_DATABASE_URL ({without_password(url)}): {exc}", USAGE)


def cmd_db_status(args: argparse.Namespace) -> int:
    from adapters import migrate
    from adapters.sql import dialect_for, without_password

    url = settings_or_fail().database_url
    versions = _or_fail(lambda: migrate.status(dialect_for(url)), url)
    current = versions.current or (
        "none (made by release 0.1.0; baselined at the next start)"
        if versions.unversioned
        else "none"
    )
    row = {
        "database": without_password(url),
        "current": versions.current,
        "latest": versions.latest,
        "pending": list(versions.pending),
        "unknown": list(versions.unknown),
        "unversioned": versions.unversioned,
    }
    if args.json:
        output.json_lines([row])
        return OK
    rows = [("database", row["database"]), ("current", current), ("latest", versions.latest)]
    rows.append(("pending", list(versions.pending)))
    if versions.unknown:
        rows.append(("unknown", list(versions.unknown)))  # a newer release's migrations
    for name, value in rows:
        print(f"{name:<9}{output.printable(output.cell(value))}")
    return OK


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    from adapters import migrate
    from adapters.sql import dialect_for

    url = settings_or_fail().database_url
    before = _or_fail(lambda: migrate.status(dialect_for(url)), url)
    after = _or_fail(lambda: migrate.upgrade(dialect_for(url)), url)
    if not before.pending:
        print(f"already at schema version {after.current}")
    else:
        done = [m for m in before.pending if m not in after.pending]
        if before.unversioned:  # recorded as applied, not run: release 0.1.0 made those tables
            done[0] += " (baselined)"
        print(f"schema version {before.current or 'none'} -> {after.current}: {', '.join(done)}")
    return OK


def _or_fail(work, url: str):
    from adapters import migrate
    from adapters.sql import DRIVER_ERRORS
    from worker.commands.clients import _without_secrets

    try:
        return work()
    except migrate.DatabaseTooNew as exc:
        raise too_new(exc, url) from None
    except migrate.MigrationError as exc:
        raise Fail(f"state store: {exc}", FAILED) from None
    except DRIVER_ERRORS as exc:
        raise Fail(f"state store: {_without_secrets(exc, url)}", FAILED) from None
