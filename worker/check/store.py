"""The state store (reachable, its schema at this release's version) and, when pacing is
shared, Redis. Only reads: a pending migration is applied by ``run`` or ``db upgrade``."""

from __future__ import annotations

from pathlib import Path

from worker.check.lines import Line, fail, ok, warn
from worker.settings import Settings


def check_store(settings: Settings) -> list[Line]:
    from adapters import migrate
    from adapters.sql import DRIVER_ERRORS, dialect_for, without_password
    from worker.commands.startup import database_problem

    url, area = settings.database_url, "store"
    shown = without_password(url)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        # Opening it would create it: say so instead.
        return [warn(area, f"{shown} does not exist yet", "it is created at the first start")]
    try:
        versions = migrate.status(dialect_for(url))
    except (*DRIVER_ERRORS, OSError, ValueError) as exc:
        return [
            fail(
                area,
                f"cannot open: {database_problem(exc, url)}",
                "set PROVISIONER_DATABASE_URL to a database that answers, with its user's password",
            )
        ]
    if versions.unknown:
        return [fail(area, str(versions.too_new()), "run the release that made the database")]
    if versions.pending:
        return [
            warn(
                area,
                f"{shown}: schema version {versions.current or 'none'}, "
                f"{len(versions.pending)} migration(s) pending ({', '.join(versions.pending)})",
                "applied at the next start, or now with: provisioner db upgrade",
            )
        ]
    return [ok(area, f"{shown}: reachable, schema version {versions.current} (latest)")]


def check_pacing(settings: Settings) -> list[Line]:
    """Redis answers PING, when PROVISIONER_PACING_URL is set."""
    if settings.pacing_url is None:
        return []
    import redis

    try:
        client = redis.Redis.from_url(
            settings.pacing_url, socket_timeout=3, socket_connect_timeout=3
        )
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return [
            fail(
                "pacing",
                f"Redis does not answer PING ({type(exc).__name__})",
                "set PROVISIONER_PACING_URL to a Redis that answers, or unset it to pace each "
                "process alone",
            )
        ]
    return [ok("pacing", "Redis answers PING (shared pacing)")]
