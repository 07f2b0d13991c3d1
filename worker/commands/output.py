"""How every command prints and ends: exit codes, the one-line failure, tables, JSON lines.

Exit 0 success, 1 the operation failed, 2 bad usage or configuration. Errors go to stderr,
one line a problem, prefixed ``provisioner:``. ``--json`` output is one object a line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

OK, FAILED, USAGE = 0, 1, 2


class Fail(Exception):
    """Ends a command: its message is printed as one line on stderr, ``status`` is the exit."""

    def __init__(self, message: str, status: int = FAILED):
        super().__init__(message)
        self.status = status


def settings_or_fail():
    """The worker's settings; a bad one is exit 2 naming the variable."""
    from worker.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        raise Fail(str(exc), USAGE) from None


def redacted(exc: Exception, amqp_url: str) -> str:
    """A broker error as one line, the password of ``amqp_url`` replaced: pika's messages
    can quote the URL they were given."""
    from pika import URLParameters

    text = f"{type(exc).__name__} {exc}".strip()
    password = URLParameters(amqp_url).credentials.password
    return text.replace(password, "***") if password else text


def printable(text: str) -> str:
    """Control characters escaped: a cell can come from whatever someone sent, and none of it
    may drive the reader's terminal."""
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


def cell(value) -> str:
    """A value as a table shows it: ``-`` for nothing, yes/no, lists joined by commas."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    if isinstance(value, datetime):
        return when(value)
    return str(value)


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


def table_lines(header: Sequence[str], rows: Iterable[Sequence], indent: str = "") -> list[str]:
    """Columns padded to their widest cell; every cell through ``cell`` and ``printable``."""
    shown = [[printable(cell(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in [list(header), *shown]) for i in range(len(header))]
    return [
        indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [list(header), *shown]
    ]


def table(header: Sequence[str], rows: Iterable[Sequence], indent: str = "") -> None:
    for line in table_lines(header, rows, indent):
        print(line)


def json_lines(rows: Iterable[dict]) -> None:
    """One JSON object a line, flushed, so that a pipe sees each call's rows as they come
    (in one write: a replay prints thousands)."""
    text = "".join(json.dumps(row, ensure_ascii=False, default=_plain) + "\n" for row in rows)
    sys.stdout.write(text)
    sys.stdout.flush()


def problems(lines: Iterable[str], status: int = USAGE) -> int:
    """Each problem on its own stderr line; returns the exit status."""
    for line in lines:
        print(f"provisioner: {line}", file=sys.stderr)
    return status


def _plain(value):
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON")
