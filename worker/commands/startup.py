"""What ``provisioner run`` checks before it connects to the broker: the rules against the
credentials, and the state store. Each failure is exit 2 with one line naming its setting
(a rules file with several problems: one line each), never a traceback, and never a
password: a database URL is shown with ``***`` in its place.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from adapters.sql import DRIVER_ERRORS, without_password
from adapters.store import SqlStore
from handlers.rules import Rules, RulesError, load_rules
from worker.commands.output import USAGE, Fail
from worker.settings import CREDENTIALS, Settings


def rules_or_fail(settings: Settings) -> Rules:
    """The rules of ``PROVISIONER_RULES`` (or the built-in ones), every tool they name
    enabled."""
    try:
        rules = load_rules(settings.rules)
    except RulesError as exc:
        raise Fail("\n".join(f"PROVISIONER_RULES: {p}" for p in exc.problems), USAGE) from None
    if gaps := disabled_tools(rules, settings):
        named = (
            f"PROVISIONER_RULES ({rules.source}) sends"
            if settings.rules
            else ("the built-in rules (PROVISIONER_RULES unset) send")
        )
        tools = "; ".join(f"{tool}, which is not enabled ({unset} unset)" for tool, unset in gaps)
        raise Fail(f"{named} work to {tools}", USAGE)
    return rules


def disabled_tools(rules: Rules, settings: Settings) -> list[tuple[str, str]]:
    """Each tool the rules name that has no credentials here, with the unset variables:
    ``("harvest", "HARVEST_ACCOUNT_ID and HARVEST_ACCESS_TOKEN")``."""
    gaps = []
    for tool in sorted(rules.tools_named() - set(settings.enabled_tools())):
        names = [n for n in CREDENTIALS[tool] if getattr(settings, n) is None]
        gaps.append((tool, " and ".join(Settings.model_fields[n].alias for n in names)))
    return gaps


def store_or_fail(settings: Settings) -> SqlStore:
    """The state store of ``PROVISIONER_DATABASE_URL``, opened (and its schema made)."""
    url = settings.database_url
    if problem := _sqlite_place_problem(url):
        raise Fail(f"PROVISIONER_DATABASE_URL: {problem} ({without_password(url)})", USAGE)
    try:
        return SqlStore.from_url(url)
    except (*DRIVER_ERRORS, OSError, ValueError) as exc:
        problem = database_problem(exc, url)
        raise Fail(
            f"PROVISIONER_DATABASE_URL: cannot open the state store: {problem}", USAGE
        ) from None


def database_problem(exc: Exception, url: str) -> str:
    """The driver's first line and the URL without its password, which it may carry."""
    detail = (str(exc).splitlines() or [""])[0].strip()
    for secret in (url, urlsplit(url).password):
        if secret:
            detail = detail.replace(str(secret), "***")
    return f"{type(exc).__name__} at {without_password(url)}: {detail}"


def _sqlite_place_problem(url: str) -> str | None:
    """SQLite says only "unable to open database file": say which part is wrong."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///")
    if path == ":memory:" or path.startswith("file:"):
        return None
    file = Path(path)
    directory = file.parent
    if not directory.exists():
        return f"directory {directory} does not exist"
    if not directory.is_dir():
        return f"{directory} is not a directory"
    if file.exists() and not os.access(file, os.R_OK | os.W_OK):
        return f"{file} is not writable by this user (uid {os.getuid()})"
    # The journal and the WAL files are made beside the database.
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"directory {directory} is not writable by this user (uid {os.getuid()})"
    return None
