"""The scenario of one trial: what is published to ``NS.inbound``, in which order, and what
the fake vendors hold before the worker starts.

Everything comes from one seeded ``random.Random``, so a trial's seed reproduces its
events (not the timing of its faults). Projects share CRM clients and start together, events
are duplicated and shuffled, deals are won again, projects go On Hold and back, offerings
are connected to projects made in the tool beforehand, and bad bodies are interleaved.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from tests.chaos.bad_bodies import sample_bad_bodies

SOURCE = "crm-chaos"
TEAM = ("ana@example.com", "ben@example.com", "carla@example.com")
MISSING_MEMBER = "zoe@example.com"  # in no tool: the rule default warns and provisions
TOOLS = ("harvest", "toggl", "clockify")

# Routes offerings to all three tools; the name carries the marker so that a Toggl project
# (no free-text field) can be traced back to its offering.
RULES = """
[defaults]
tool = "harvest"
name = "{project} - {offering} [{project_id}/{offering_id}]"

[[rules]]
match = { offering = "Support*" }
provision_on = "manual"

[[rules]]
match = { offering = "Discovery*" }
provision_on = "closed_won"

[[rules]]
match = { offering = "Training*" }
tool = "toggl"

[[rules]]
match = { kind = "fixed_bid" }
tool = "clockify"
"""


@dataclass(frozen=True)
class Publication:
    body: bytes
    routing_key: str
    key: tuple[str, str] | None  # (source, id) of a good event; None for a bad body
    label: str  # what a person reads in a failure: "P3 in_progress", "bad body #2"
    project: str | None = None  # the CRM project it is about; None for a bad body
    copy: bool = False  # a second or third delivery of an event published before


@dataclass(frozen=True)
class Premade:
    """A project made in the tool before the trial, for Connect Existing."""

    tool: str
    client_name: str
    name: str


@dataclass
class Scenario:
    publications: list[Publication]
    premade: dict[str, Premade]  # placeholder in a connect body -> the project to make
    clients: list[str] = field(default_factory=list)

    @property
    def good(self) -> int:
        return sum(1 for p in self.publications if p.key and not p.copy)

    @property
    def bad(self) -> int:
        return sum(1 for p in self.publications if p.key is None)

    @property
    def copies(self) -> int:
        return sum(1 for p in self.publications if p.copy)

    def with_refs(self, refs: dict[str, str]) -> list[Publication]:
        """The publications, each placeholder replaced by the id the fake gave its project."""
        out = []
        for p in self.publications:
            body = p.body
            for placeholder, ref in refs.items():
                body = body.replace(placeholder.encode(), ref.encode())
            out.append(Publication(body, p.routing_key, p.key, p.label, p.project, p.copy))
        return out


class _Events:
    """CloudEvents with seeded ids and times that rise with every event made.

    Times start at yesterday's midnight (UTC): in the past, as the worker demands of any
    event, and the same for one seed all day."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.clock = today - timedelta(days=1)

    def make(self, type_: str, data: dict, label: str) -> Publication:
        self.clock += timedelta(seconds=1)
        event_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        event = {
            "specversion": "1.0",
            "id": event_id,
            "source": SOURCE,
            "type": type_,
            "time": self.clock.isoformat().replace("+00:00", "Z"),
            "data": data,
        }
        project = data.get("project_id") or data["project"]["id"]
        return Publication(json.dumps(event).encode(), type_, (SOURCE, event_id), label, project)


def _offering(rng: random.Random, pid: str, n: int) -> dict:
    kind, name = rng.choice(
        [
            (None, "Build"),
            (None, "Advice"),
            (None, "Training day"),
            ("fixed_bid", "Migration"),
            (None, "Discovery"),
            (None, "Support"),
        ]
    )
    team = [{"email": e, "name": e.split("@")[0].title()} for e in rng.sample(TEAM, 2)]
    if rng.random() < 0.15:
        team.append({"email": MISSING_MEMBER, "name": "Zoe"})
    offering = {
        "id": f"{pid}-O{n}",
        "name": f"{name} {n}",
        "sold": rng.random() > 0.08,
        "budget_hours": rng.choice([8, 16, 37.5, 40, 120]),
        "team": team,
    }
    if kind:
        offering["kind"] = kind
    return offering


def _project_events(
    rng: random.Random, events: _Events, project: dict, premade: dict[str, Premade]
) -> list[Publication]:
    """One project's events in the order a CRM would send them."""
    pid = project["id"]
    offerings = project["offerings"]
    out = []
    first = json.loads(json.dumps(project))
    connect_target = None
    if rng.random() < 0.2:
        # Connect Existing; sometimes of a Discovery offering not sold at first, which a
        # deal won again sells, so provision_on = "closed_won" meets a connected offering.
        connect_target = rng.choice(offerings)
        if connect_target["name"].startswith("Discovery"):
            next(o for o in first["offerings"] if o["id"] == connect_target["id"])["sold"] = False
    out.append(events.make("deal.closed_won", {"project": first}, f"{pid} closed_won"))
    if connect_target is not None:
        tool = rng.choice(TOOLS)
        placeholder = f"PREMADE-{pid}-{connect_target['id']}"
        premade[placeholder] = Premade(
            tool, project["client"]["name"], f"Existing {pid} {connect_target['name']}"
        )
        data = {
            "project_id": pid,
            "offering_id": connect_target["id"],
            "tool": tool,
            "timesheet_project": placeholder,
        }
        out.append(events.make("timesheet.connect_requested", data, f"{pid} connect {tool}"))
    selection = {}
    if rng.random() < 0.2:
        selection[rng.choice(offerings)["id"]] = False
    started = {"project_id": pid, "status": "in_progress", "selection": selection}
    out.append(events.make("project.status_changed", started, f"{pid} in_progress"))
    for offering in offerings:
        if offering["name"].startswith("Support") and rng.random() < 0.7:
            data = {"project_id": pid, "offering_id": offering["id"]}
            label = f"{pid} provision {offering['id']}"
            out.append(events.make("timesheet.provision_requested", data, label))
    if rng.random() < 0.3:
        held = {"project_id": pid, "status": "on_hold"}
        out.append(events.make("project.status_changed", held, f"{pid} on_hold"))
        if rng.random() < 0.7:
            out.append(events.make("project.status_changed", started, f"{pid} in_progress again"))
    if rng.random() < 0.2:
        out.append(events.make("deal.closed_won", {"project": project}, f"{pid} won again"))
    return out


def _interleave(rng: random.Random, groups: list[list[list[Publication]]]) -> list[Publication]:
    """Projects of one client round-robin (they start together), clients merged at random,
    then neighbours swapped now and then: order is mostly, not always, the CRM's."""
    streams = []
    for projects in groups:
        merged: list[Publication] = []
        queues = [list(p) for p in projects]
        while any(queues):
            for q in queues:
                if q:
                    merged.append(q.pop(0))
        streams.append(merged)
    order: list[Publication] = []
    while streams:
        stream = rng.choice(streams)
        order.append(stream.pop(0))
        if not stream:
            streams.remove(stream)
    for i in range(len(order) - 1):
        if rng.random() < 0.08:
            order[i], order[i + 1] = order[i + 1], order[i]
    return order


def _with_copies(rng: random.Random, order: list[Publication]) -> list[Publication]:
    out = list(order)
    for p in order:
        if rng.random() < 0.25:
            for _ in range(rng.randint(1, 2)):
                at = min(len(out), out.index(p) + rng.randint(1, 40))
                out.insert(at, replace(p, copy=True))
    return out


def build(rng: random.Random, events_wanted: int, bad_share: float = 0.06) -> Scenario:
    events = _Events(rng)
    bad_count = round(events_wanted * bad_share)
    clients: list[dict] = []
    by_client: dict[str, list[list[Publication]]] = {}
    premade: dict[str, Premade] = {}
    made = 0
    n = 0
    while made * 1.35 < events_wanted - bad_count:  # about a third more come as copies
        n += 1
        if not clients or rng.random() < 0.35:
            clients.append({"id": f"C{len(clients) + 1}", "name": f"Client {len(clients) + 1}"})
        client = rng.choice(clients[-4:])  # recent clients: their projects start together
        pid = f"P{n}"
        project = {
            "id": pid,
            "name": f"Project {n}",
            "client": client,
            "offerings": [_offering(rng, pid, i) for i in range(1, rng.randint(2, 4) + 1)],
        }
        stream = _project_events(rng, events, project, premade)
        by_client.setdefault(client["id"], []).append(stream)
        made += len(stream)
    order = _with_copies(rng, _interleave(rng, list(by_client.values())))
    for i, (kind, body) in enumerate(sample_bad_bodies(bad_count, rng.randrange(2**32))):
        at = rng.randint(0, len(order))
        label = f"bad body #{i + 1} ({kind})"
        order.insert(at, Publication(body, "deal.closed_won", None, label))
    return Scenario(order, premade, [c["name"] for c in clients])
