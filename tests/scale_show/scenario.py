"""What the show publishes, and what must come of it.

Every project lives through the same story, in the CRM's order: Closed Won (two or three
offerings, now and then one not sold), In Progress with one offering unticked now and then,
sometimes a Provision New or Connect Existing request, On Hold, In Progress again. Some events
are sent again later (a CRM retrying). The projects' streams are interleaved at random, each
project's own events staying in its order. Everything comes from one seeded
``random.Random``, so a seed reproduces the publications.

The scenario also says what must come of it: which offerings get a vendor project (sold and
ticked, or asked for by Provision New), which are connected to a project made beforehand, and
each project's distinct events in order, against which the outcomes' ``causationid`` are
checked (``tests.scale_show.verdict``).
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

SOURCE = "crm-scale-show"
TEAM = ("ana@example.com", "ben@example.com")


@dataclass(frozen=True)
class Publication:
    body: bytes
    routing_key: str
    event_id: str
    project: str
    copy: bool = False  # a re-sent event: same (source, id) as one published before


@dataclass(frozen=True)
class Premade:
    """A Harvest project a person made before, for Connect Existing; ``placeholder`` stands
    in the request's body until the fake has given the project its id."""

    placeholder: str
    client_name: str
    name: str


@dataclass
class Scenario:
    publications: list[Publication]
    order: dict[str, list[str]]  # project -> its distinct event ids, in the CRM's order
    provisioned: set[tuple[str, str]]  # (project, offering) that must get one vendor project
    not_provisioned: set[tuple[str, str]]  # unticked or not sold, never asked for
    connected: dict[tuple[str, str], str]  # (project, offering) -> premade placeholder
    premade: list[Premade] = field(default_factory=list)
    clients: set[str] = field(default_factory=set)

    @property
    def copies(self) -> int:
        return sum(1 for p in self.publications if p.copy)

    def with_refs(self, refs: dict[str, str]) -> list[Publication]:
        """The publications with each placeholder replaced by the premade project's id."""
        out = []
        for p in self.publications:
            body = p.body
            for placeholder, ref in refs.items():
                if placeholder.encode() in body:
                    body = body.replace(placeholder.encode(), ref.encode())
            out.append(Publication(body, p.routing_key, p.event_id, p.project, p.copy))
        return out


class _Clock:
    """Event times that rise with every event made, from yesterday's midnight (UTC)."""

    def __init__(self) -> None:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.now = today - timedelta(days=1)

    def tick(self) -> str:
        self.now += timedelta(seconds=1)
        return self.now.isoformat().replace("+00:00", "Z")


def _event(rng: random.Random, clock: _Clock, type_: str, data: dict, project: str):
    event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    body = {
        "specversion": "1.0",
        "id": event_id,
        "source": SOURCE,
        "type": type_,
        "time": clock.tick(),
        "subject": project,
        "data": data,
    }
    return Publication(json.dumps(body).encode(), type_, event_id, project)


def build(rng: random.Random, events: int = 1000, projects: int = 200) -> Scenario:
    """``events`` publications (copies included) about ``projects`` projects.

    Each project's four lifecycle events make 4 x ``projects``; what is left is split
    between requests (Provision New / Connect Existing) and re-sent copies."""
    if events < 4 * projects:
        raise ValueError(f"{events} events cannot tell {projects} projects' story (4 each)")
    clock = _Clock()
    scenario = Scenario([], {}, set(), set(), {})
    streams: dict[str, list[Publication]] = {}
    spare = events - 4 * projects
    requests_wanted = spare // 2
    # Which projects get a request: an unticked offering is what a request is about.
    with_request = set(rng.sample(range(projects), min(requests_wanted, projects)))
    clients = [
        {"id": f"C{i + 1}", "name": f"Scale Client {i + 1}"} for i in range(projects // 3 + 1)
    ]
    for n in range(projects):
        pid = f"SP{n + 1}"
        client = rng.choice(clients)
        scenario.clients.add(client["name"])
        offerings = [
            {
                "id": f"{pid}-O{i}",
                "name": f"Offering {i}",
                "sold": True,
                "budget_hours": rng.choice([8, 16, 40]),
                "team": [{"email": rng.choice(TEAM), "name": "Team"}],
            }
            for i in range(1, rng.randint(2, 3) + 1)
        ]
        # The first offering is always sold and ticked, so On Hold always has one to archive.
        if len(offerings) == 3 and rng.random() < 0.3:
            offerings[2]["sold"] = False
        unticked = offerings[1]["id"] if (n in with_request or rng.random() < 0.3) else None
        project = {"id": pid, "name": f"Scale {n + 1}", "client": client, "offerings": offerings}
        selection = {o["id"]: o["id"] != unticked for o in offerings}
        started = {"project_id": pid, "status": "in_progress", "selection": selection}
        stream = [
            _event(rng, clock, "deal.closed_won", {"project": project}, pid),
            _event(rng, clock, "project.status_changed", started, pid),
        ]
        asked = None
        if n in with_request:
            asked = unticked
            if rng.random() < 0.5:
                data = {"project_id": pid, "offering_id": asked, "tool": "harvest"}
                request = _event(rng, clock, "timesheet.provision_requested", data, pid)
                scenario.provisioned.add((pid, asked))
            else:
                placeholder = f"PREMADE-{pid}-{asked}"
                scenario.premade.append(Premade(placeholder, client["name"], f"Existing {pid}"))
                scenario.connected[(pid, asked)] = placeholder
                data = {
                    "project_id": pid,
                    "offering_id": asked,
                    "tool": "harvest",
                    "timesheet_project": placeholder,
                }
                request = _event(rng, clock, "timesheet.connect_requested", data, pid)
        held = {"project_id": pid, "status": "on_hold"}
        stream.append(_event(rng, clock, "project.status_changed", held, pid))
        again = {"project_id": pid, "status": "in_progress", "selection": selection}
        stream.append(_event(rng, clock, "project.status_changed", again, pid))
        if asked is not None:  # before On Hold or after In Progress again
            stream.insert(2 if rng.random() < 0.5 else 4, request)
        for o in offerings:
            key = (pid, o["id"])
            if o["sold"] and o["id"] != unticked:
                scenario.provisioned.add(key)
            elif o["id"] != asked:
                scenario.not_provisioned.add(key)
        scenario.order[pid] = [p.event_id for p in stream]
        streams[pid] = stream
    made = sum(len(s) for s in streams.values())
    for _ in range(events - made):  # copies: an event of a project sent again, later
        pid = rng.choice(list(streams))
        stream = streams[pid]
        original = rng.choice([p for p in stream if not p.copy])
        at = rng.randint(stream.index(original) + 1, len(stream))
        stream.insert(at, replace(original, copy=True))
    scenario.publications = _interleave(rng, list(streams.values()))
    return scenario


def _interleave(rng: random.Random, streams: list[list[Publication]]) -> list[Publication]:
    """A uniformly random merge: each next publication from a stream chosen with odds by
    what it has left, so no project's events come out of its own order."""
    queues = [list(reversed(s)) for s in streams]
    weights = [len(q) for q in queues]
    out = []
    while any(weights):
        (i,) = rng.choices(range(len(queues)), weights)
        out.append(queues[i].pop())
        weights[i] -= 1
    return out
