"""Per-project order, as test data and as a check: a scenario of many projects whose events
are published with their projects shuffled together, and the checks that a project's events
were applied (or copied) in the order they were published.

Each project's events form a lifecycle whose every step has exactly one outcome, and whose
outcomes differ when steps are swapped: closed_won -> project.activated, in_progress ->
timesheet.provisioned, on_hold -> timesheet.archived, in_progress -> timesheet.restored. An
event applied before its predecessor shows as an outcome out of place, a missing one (a
status older than the one stored is ignored) or a retry.

Used by the partition tests and by the scale show test and ``bench.scale``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from tests import builders as b

LIFECYCLE = ("deal.closed_won", "in_progress", "on_hold", "in_progress")
OUTCOMES = (
    "project.activated",
    "timesheet.provisioned",
    "timesheet.archived",
    "timesheet.restored",
)


@dataclass
class Scenario:
    events: list[dict]  # in publish order
    by_project: dict[str, list[str]] = field(default_factory=dict)  # project -> its event ids
    expected: dict[str, list[str]] = field(default_factory=dict)  # event id -> outcome types

    @property
    def projects(self) -> list[str]:
        return list(self.by_project)

    def project_of(self, event_id: str) -> str:
        return self._project_of[event_id]

    def __post_init__(self) -> None:
        self._project_of = {e: p for p, ids in self.by_project.items() for e in ids}


def lifecycle(steps: Iterable[str] = LIFECYCLE) -> tuple[list[dict], list[str]]:
    """One project's events in order (one offering, sold), and the outcome of each."""
    project = b.project(b.offering())
    events = []
    for step in steps:
        if step == "deal.closed_won":
            events.append(b.closed_won(project))
        else:
            events.append(b.status_changed(project, step))
    return events, list(OUTCOMES[: len(events)])


def interleave(sequences: list[list[dict]], rng: random.Random) -> list[dict]:
    """All events, each sequence's in its own order, the sequences shuffled together."""
    owners = [i for i, seq in enumerate(sequences) for _ in seq]
    rng.shuffle(owners)
    cursors = [iter(seq) for seq in sequences]
    return [next(cursors[i]) for i in owners]


def scenario(projects: int, *, seed: int = 0, steps: Iterable[str] = LIFECYCLE) -> Scenario:
    rng = random.Random(seed)
    sequences, by_project, expected = [], {}, {}
    for _ in range(projects):
        events, outcomes = lifecycle(steps)
        sequences.append(events)
        project_id = events[0]["data"]["project"]["id"]
        by_project[project_id] = [e["id"] for e in events]
        for event, outcome in zip(events, outcomes, strict=True):
            expected[event["id"]] = [outcome]
    return Scenario(interleave(sequences, rng), by_project, expected)


def first_seen(ids: Iterable[str]) -> list[str]:
    """``ids`` without repeats, each where it first occurs (a redelivery may repeat one)."""
    seen: dict[str, None] = {}
    for i in ids:
        seen.setdefault(i, None)
    return list(seen)


def order_problems(scenario: Scenario, outcomes: list[dict]) -> list[str]:
    """What is wrong with ``outcomes`` (NS.events, in arrival order): per project, the events
    that caused outcomes, first occurrences only, must be its events in publish order, each
    with the outcome its step has. Empty when all is well."""
    problems = []
    caused: dict[str, list[str]] = {p: [] for p in scenario.projects}
    types: dict[str, set[str]] = {}
    for outcome in outcomes:
        cause = outcome.get("causationid")
        if cause not in scenario.expected:
            continue
        caused[scenario.project_of(cause)].append(cause)
        types.setdefault(cause, set()).add(outcome["type"])
    for project, ids in scenario.by_project.items():
        got = first_seen(caused[project])
        if got != ids:
            problems.append(f"{project}: outcomes caused by {_steps(ids, got)}, published 0..")
        for event_id in ids:
            if types.get(event_id, set()) - set(scenario.expected[event_id]):
                problems.append(f"{project}: {event_id} had {sorted(types[event_id])}")
    return problems


def partition_problems(scenario: Scenario, partitions: dict[int, list[bytes]]) -> list[str]:
    """What is wrong with the partitions' contents (bodies in queue order): every project's
    events are in one partition, first copies in publish order."""
    problems = []
    where: dict[str, set[int]] = {}
    order: dict[str, list[str]] = {p: [] for p in scenario.projects}
    for partition, bodies in partitions.items():
        for body in bodies:
            event_id = json.loads(body)["id"]
            if event_id not in scenario.expected:
                continue
            project = scenario.project_of(event_id)
            where.setdefault(project, set()).add(partition)
            order[project].append(event_id)
    for project, ids in scenario.by_project.items():
        if len(where.get(project, ())) != 1:
            problems.append(f"{project}: in partitions {sorted(where.get(project, ()))}")
        got = first_seen(order[project])
        if got != ids:
            problems.append(f"{project}: copied as steps {_steps(ids, got)}")
    return problems


def _steps(ids: list[str], got: list[str]) -> list[int | str]:
    return [ids.index(i) if i in ids else "?" for i in got]
