"""The facts the show must end with, as a pure function of what was gathered.

- **none twice**: one vendor project per offering that was to be provisioned, none for an
  offering unticked or not sold (and never asked for), none for one connected to a project
  made beforehand; no vendor client name twice.
- **in order**: each project's outcome events, in the order they reached ``NS.events``,
  follow its inbound events (by ``causationid``). An outcome re-sent for a copy of an event
  or after a crash keeps its event id, so only each id's first arrival counts: that is what a
  consumer that drops repeated ids sees.
- **all done, cleanly**: every inbound event caused an outcome, no ``timesheet.failed``,
  nothing dead-lettered, every vendor project active again (the story ends In Progress).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from tests.scale_show.scenario import Scenario


@dataclass(frozen=True)
class VendorProject:
    id: str
    code: str | None  # our marker "project/offering"; None for a project a person made
    active: bool


def check(
    scenario: Scenario,
    outcomes: list[dict],
    vendor_projects: list[VendorProject],
    client_names: list[str],
    dead_letters: int,
    refs: dict[str, str],
) -> list[str]:
    problems: list[str] = []
    problems += _none_twice(scenario, vendor_projects, client_names)
    problems += out_of_order(scenario, outcomes)
    seen = {o.get("causationid") for o in outcomes}
    missing = [e for ids in scenario.order.values() for e in ids if e not in seen]
    if missing:
        problems.append(f"{len(missing)} inbound events caused no outcome, e.g. {missing[:3]}")
    failed = [o["data"] for o in outcomes if o["type"] == "timesheet.failed"]
    if failed:
        problems.append(f"{len(failed)} timesheet.failed, e.g. {failed[:2]}")
    if dead_letters:
        problems.append(f"{dead_letters} messages dead-lettered")
    inactive = [p.code or p.id for p in vendor_projects if not p.active]
    if inactive:
        problems.append(f"{len(inactive)} vendor projects left archived, e.g. {inactive[:3]}")
    connected = {
        (o["data"]["project_id"], o["data"]["offering_id"]): o["data"]["timesheet_project_id"]
        for o in outcomes
        if o["type"] == "timesheet.connected"
    }
    for key, placeholder in scenario.connected.items():
        if connected.get(key) != refs[placeholder]:
            problems.append(f"{key} connected to {connected.get(key)}, not {refs[placeholder]}")
    return problems


def _none_twice(
    scenario: Scenario, vendor_projects: list[VendorProject], client_names: list[str]
) -> list[str]:
    problems = []
    made = Counter(tuple(p.code.split("/", 1)) for p in vendor_projects if p.code)
    for key in sorted(scenario.provisioned):
        if made[key] != 1:
            problems.append(f"{'/'.join(key)}: {made[key]} vendor projects, not 1")
    for key in sorted(set(made) - scenario.provisioned):
        why = "unticked or not sold" if key in scenario.not_provisioned else "connected"
        problems.append(f"{'/'.join(key)}: {made[key]} vendor projects, though {why}")
    twice = [name for name, n in Counter(client_names).items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} vendor clients made twice, e.g. {twice[:3]}")
    return problems


def out_of_order(scenario: Scenario, outcomes: list[dict]) -> list[str]:
    """One line per project whose outcomes (first arrival of each id) went back in its
    inbound order: the event that came late, after which."""
    position = {e: (pid, i) for pid, ids in scenario.order.items() for i, e in enumerate(ids)}
    first_seen: set[str] = set()
    latest: dict[str, int] = defaultdict(lambda: -1)
    problems: dict[str, str] = {}
    for o in outcomes:
        if o["id"] in first_seen or o.get("causationid") not in position:
            continue
        first_seen.add(o["id"])
        pid, i = position[o["causationid"]]
        if i < latest[pid] and pid not in problems:
            problems[pid] = (
                f"{pid}: an outcome of its event #{i + 1} ({o['type']}) came after "
                f"outcomes of its event #{latest[pid] + 1}"
            )
        latest[pid] = max(latest[pid], i)
    return list(problems.values())
