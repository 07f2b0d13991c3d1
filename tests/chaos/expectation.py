"""What a trial should have left behind once it settled, as a pure function of what it
asked for: the offerings that must each have one live project in their tool, the offerings
that must have none, and the projects that must be active. Invariant (e) of
``tests.chaos.invariants`` compares it with what was gathered.

Read the way the worker reads events (``handlers.events``), by event time, not arrival: the
newest Closed Won's snapshot wins, the newest status wins. An offering must be live when
its project ends In Progress and one of these linked it: a Connect Existing or a Provision
New for it; Closed Won, if sold and its rule provisions on closed_won; In Progress, if sold,
not opted out in the selection, and its rule is not manual. An offering must have no link
when nothing could ever have linked it (never sold, manual and never requested, opted out),
whatever the project's status.

``concerns`` says, per event, which offerings it could have linked and whether it activates
its project: a dead letter of that event with a code the faults make legitimate excuses
exactly those, and nothing else.
"""

from __future__ import annotations

import json
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field

from handlers.rules import Rules, RulesFile
from schemas.inbound import Offering, Project
from tests.chaos.scenario import RULES, Publication

Offered = tuple[str, str]  # (project id, offering id)
EventKey = tuple[str, str]  # (source, event id)


@dataclass(frozen=True)
class Concern:
    """What one event could have done: link these offerings, activate this project."""

    offerings: frozenset[Offered] = frozenset()
    activates: str | None = None


@dataclass(frozen=True)
class Expectation:
    live: frozenset[Offered]  # one link, not archived, its project in the tool not archived
    unlinked: frozenset[Offered]  # no link at all
    active: frozenset[str]  # projects whose store row must say active
    concerns: dict[EventKey, Concern] = field(default_factory=dict)


def rules_of(text: str = RULES) -> Rules:
    """The rules a trial's worker reads, as the worker reads them."""
    return Rules(RulesFile.model_validate(tomllib.loads(text)), source="tests.chaos")


@dataclass
class _Project:
    """One project's events, newest last within each kind: (time, payload, event key)."""

    won: list[tuple[str, dict, EventKey]] = field(default_factory=list)
    statuses: list[tuple[str, dict, EventKey]] = field(default_factory=list)
    requested: dict[str, list[EventKey]] = field(default_factory=lambda: defaultdict(list))
    connected: dict[str, list[EventKey]] = field(default_factory=lambda: defaultdict(list))


def from_publications(publications: list[Publication], rules: Rules) -> Expectation:
    """The expectation of a chaos scenario (``tests.chaos.scenario.build``): each good event
    once, whatever its copies; bad bodies ask for nothing."""
    projects: dict[str, _Project] = defaultdict(_Project)
    seen: set[EventKey] = set()
    for p in publications:
        if p.key is None or p.key in seen:
            continue
        seen.add(p.key)
        event = json.loads(p.body)
        data, at = event["data"], event["time"]
        if event["type"] == "deal.closed_won":
            projects[data["project"]["id"]].won.append((at, data["project"], p.key))
        elif event["type"] == "project.status_changed":
            projects[data["project_id"]].statuses.append((at, data, p.key))
        elif event["type"] == "timesheet.provision_requested":
            projects[data["project_id"]].requested[data["offering_id"]].append(p.key)
        elif event["type"] == "timesheet.connect_requested":
            projects[data["project_id"]].connected[data["offering_id"]].append(p.key)
    live: set[Offered] = set()
    unlinked: set[Offered] = set()
    active: set[str] = set()
    concerns: dict[EventKey, Concern] = {}
    for pid, events in projects.items():
        if not events.won:
            continue  # nothing can activate it: every other event of it is project_not_active
        active.add(pid)
        events.won.sort(key=lambda w: w[0])
        events.statuses.sort(key=lambda s: s[0])
        versions = [Project.model_validate(snapshot) for _, snapshot, _ in events.won]
        final = versions[-1]
        sold_ever = {o.id for v in versions for o in v.offerings if o.sold}
        progress = [d for _, d, _ in events.statuses if d["status"] == "in_progress"]
        opted_out = {o for d in progress for o, on in d.get("selection", {}).items() if not on}
        ends_in_progress = bool(progress) and events.statuses[-1][1]["status"] == "in_progress"
        on_won: set[Offered] = set()
        on_progress: set[Offered] = set()
        for offering in final.offerings:
            key = (pid, offering.id)
            trigger = _trigger(rules, final, offering)
            if trigger == "closed_won" and offering.id in sold_ever:
                on_won.add(key)
            sold = offering.id in sold_ever
            if trigger == "in_progress" and sold and offering.id not in opted_out:
                on_progress.add(key)
            asked = offering.id in events.requested or offering.id in events.connected
            may_link = asked or key in on_won or (key in on_progress and progress)
            if not may_link:
                unlinked.add(key)
            elif ends_in_progress:
                live.add(key)
        for _, _, key in events.won:
            concerns[key] = Concern(frozenset(on_won), activates=pid)
        everything = frozenset((pid, o.id) for o in final.offerings)
        for _, data, key in events.statuses:
            # In Progress links or restores any linked offering; On Hold links nothing.
            concerns[key] = Concern(everything if data["status"] == "in_progress" else frozenset())
        for asked in (events.requested, events.connected):
            for oid, keys in asked.items():
                for key in keys:
                    concerns[key] = Concern(frozenset({(pid, oid)}))
    return Expectation(frozenset(live), frozenset(unlinked), frozenset(active), concerns)


def _trigger(rules: Rules, project: Project, offering: Offering) -> str:
    return rules.plan_for(project, offering).provision_on


def for_deals(projects: list[Project], rules: Rules) -> Expectation:
    """The expectation of deals a CRM holds in a stage the rules map to in_progress (the
    lost-webhooks trial): every project active, every sold offering whose rule is not manual
    live, every other offering unlinked. No event of theirs is known beforehand (the ingress
    and the sweep make them), so nothing is excused."""
    live: set[Offered] = set()
    unlinked: set[Offered] = set()
    for project in projects:
        for offering in project.offerings:
            key = (project.id, offering.id)
            if offering.sold and _trigger(rules, project, offering) != "manual":
                live.add(key)
            else:
                unlinked.add(key)
    return Expectation(frozenset(live), frozenset(unlinked), frozenset(p.id for p in projects))
