"""What a check says: one line, ``ok``/``warn``/``FAIL``, what was tried, and how to fix it.

A failing line names the setting (or the rules entry) to change. The exit status is 1 when
any line is ``FAIL``; a ``warn`` is something that works but deserves a look.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from worker.commands.output import FAILED, OK, printable

Status = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True)
class Line:
    status: Status
    area: str  # broker, store, pacing, harvest, toggl, clockify, hubspot, ..., ingress
    what: str
    fix: str | None = None

    def text(self) -> str:
        fix = f" - {self.fix}" if self.fix else ""
        return printable(f"{self.status:<4} {self.area}: {self.what}{fix}")

    def row(self) -> dict:
        return {"status": self.status, "area": self.area, "what": self.what, "fix": self.fix}


def ok(area: str, what: str) -> Line:
    return Line("ok", area, what)


def warn(area: str, what: str, fix: str | None = None) -> Line:
    return Line("warn", area, what, fix)


def fail(area: str, what: str, fix: str) -> Line:
    return Line("FAIL", area, what, fix)


def exit_status(lines: Iterable[Line]) -> int:
    return FAILED if any(line.status == "FAIL" for line in lines) else OK


def redacted(line: Line, secrets: Iterable[str]) -> Line:
    """The line with every secret value replaced: a last guard, should a vendor or a driver
    ever quote one back in a message we show."""
    parts = [line.what, line.fix or ""]
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        parts = [p.replace(secret, "***") for p in parts]
    return Line(line.status, line.area, parts[0], parts[1] or None)
