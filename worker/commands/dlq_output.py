"""What ``provisioner dlq`` prints: the table, the groups, a letter in full, the ``--json``
rows and summary, and the progress bar of a long replay."""

from __future__ import annotations

import base64
import sys
from collections import Counter
from datetime import datetime

from worker.bootstrap import topology as topology_of
from worker.commands import dead_letters as dl
from worker.commands import output
from worker.commands.dead_letters import DeadLetter
from worker.settings import Settings


# -- output -----------------------------------------------------------------------------------
def empty(settings: Settings) -> str:
    return f"{topology_of(settings).dead_letter} is empty: nothing needs a person"


def describe(letter: DeadLetter) -> str:
    return f"{letter.id} {letter.type or '-'} {letter.code}"


def tally(letters: list[DeadLetter]) -> str:
    by_code = Counter(letter.code for letter in letters).most_common()
    detail = ", ".join(f"{code} {n}" for code, n in by_code)
    return f"{len(letters)} ({detail})" if letters else "0"


def row(action: str, letter: DeadLetter, *, routing_key: str | None = None) -> dict:
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


def summary(action: str, letters: list[DeadLetter], where: str, outcome=None) -> dict:
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


def in_full(letter: DeadLetter, now: datetime) -> dict:
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


def print_table(letters: list[DeadLetter], now: datetime, settings: Settings, *, of: int) -> None:
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


def print_groups(letters: list[DeadLetter], *, as_json: bool) -> None:
    found = dl.groups(letters)
    if as_json:
        output.json_lines(found)
        return
    rows = [
        (g["count"], g["code"], g["type"], g["first_failed_at"], g["last_failed_at"]) for g in found
    ]
    output.table(("COUNT", "CODE", "TYPE", "FIRST FAILURE", "LAST FAILURE"), rows)


PROGRESS_FROM = 20  # a bar only where a person would otherwise stare at a silent terminal


class Progress:
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
