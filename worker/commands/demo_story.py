"""The afternoon ``provisioner demo`` plays: the fake Harvest it starts from, and its steps.

Each step is a narration line, the contract events a CRM would publish (or the commands an
on-call engineer would run), and the outcomes that prove the step happened. The events are
the contract's own shapes (docs/contract.md, examples/*.json); nothing here is demo-only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fakes.harvest import FakeHarvest

SOURCE = "crm/demo"
TEAM = (
    ("ana@example.com", "Ana", "Lima", "Designer"),
    ("raj@example.com", "Raj", "Patel", "Developer"),
    ("mei@example.com", "Mei", "Chen", "Project Manager"),
)

# Outcome wanted: (event type, project id, offering id or None for a project event).
Outcome = tuple[str, str, str | None]


@dataclass
class Step:
    narration: str
    events: list[dict] = field(default_factory=list)
    # Commands run after the events, as ``provisioner ARGV`` (the real command code).
    commands: list[list[str]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)


@dataclass
class Afternoon:
    """What the fake Harvest holds before the story starts."""

    support_project: int  # an existing Harvest project, connected by its URL
    europe_client: int  # the Harvest client the duplicate CRM client really is
    harvest_web: str


def seed(harvest: FakeHarvest) -> Afternoon:
    for email, first, last, _ in TEAM:
        harvest.add_user(email, first, last)
    harvest.add_task("Design", is_default=True)
    harvest.add_task("Development", is_default=True)
    acme = harvest.add_client("Acme Corp")
    support = harvest.add_project(acme, "Acme Corp - Support desk")
    europe = harvest.add_client("Acme Corp (Europe)")
    return Afternoon(support, europe, harvest.base_uri)


def event(type_: str, subject: str, data: dict) -> dict:
    """A CloudEvent as the CRM would publish it, timed now: later steps are newer."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": SOURCE,
        "type": type_,
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    }


def _team(*emails: str, hours: float) -> list[dict]:
    return [
        {"email": e, "name": f"{f} {la}", "role": r, "hours": hours}
        for e, f, la, r in TEAM
        if e in emails
    ]


def _website_rebuild() -> dict:
    return {
        "id": "P-1001",
        "name": "Website Rebuild",
        "client": {"id": "C-77", "name": "Acme Corp"},
        "offerings": [
            {"id": "O-1", "name": "Discovery", "budget_hours": 40, "starts_on": "2026-12-01",
             "kind": "time_and_materials", "team": _team("ana@example.com", hours=20)},
            {"id": "O-2", "name": "Build", "budget_hours": 320, "starts_on": "2027-01-04",
             "kind": "fixed_bid", "team": _team("raj@example.com", "mei@example.com", hours=160)},
            {"id": "O-3", "name": "Support Retainer", "budget_hours": 10, "kind": "retainer",
             "team": _team("mei@example.com", hours=10)},
        ],
    }  # fmt: skip


def _mobile_app() -> dict:
    # The CRM holds Acme twice: Acme's European arm was entered as a new client with the same
    # name. In Harvest it is a client of its own, which the worker must not guess.
    return {
        "id": "P-1002",
        "name": "Mobile App",
        "client": {"id": "C-78", "name": "Acme Corp"},
        "offerings": [
            {"id": "O-1", "name": "App Build", "budget_hours": 200, "kind": "fixed_bid",
             "team": _team("raj@example.com", hours=200)},
        ],
    }  # fmt: skip


def steps(afternoon: Afternoon) -> list[Callable[[], Step]]:
    """The story, one builder a step: each event is made (and timed) when its step starts."""
    support_url = f"{afternoon.harvest_web}/projects/{afternoon.support_project}"

    def won() -> Step:
        return Step(
            "Acme Corp signs: the deal 'Website Rebuild' is Closed Won "
            "(Discovery, Build, Support Retainer).",
            [event("deal.closed_won", "P-1001", {"project": _website_rebuild()})],
            outcomes=[("project.activated", "P-1001", None)],
        )

    def started() -> Step:
        data = {"project_id": "P-1001", "status": "in_progress", "selection": {"O-3": False}}
        return Step(
            "The PM moves it to In Progress and unticks Support Retainer "
            "(support has a Harvest project already).",
            [event("project.status_changed", "P-1001", data)],
            outcomes=[
                ("timesheet.provisioned", "P-1001", "O-1"),
                ("timesheet.provisioned", "P-1001", "O-2"),
                ("timesheet.skipped", "P-1001", "O-3"),
            ],
        )

    def connected() -> Step:
        data = {"project_id": "P-1001", "offering_id": "O-3", "tool": "harvest",
                "timesheet_project": support_url}  # fmt: skip
        return Step(
            f"Connect Existing: Support Retainer goes to {support_url}.",
            [event("timesheet.connect_requested", "P-1001", data)],
            outcomes=[("timesheet.connected", "P-1001", "O-3")],
        )

    def duplicate() -> Step:
        data = {"project_id": "P-1002", "status": "in_progress"}
        return Step(
            "A second deal, 'Mobile App', is won by a second CRM record named "
            "'Acme Corp' (C-78) and started: which Harvest client is it?",
            [
                event("deal.closed_won", "P-1002", {"project": _mobile_app()}),
                event("project.status_changed", "P-1002", data),
            ],
            outcomes=[
                ("project.activated", "P-1002", None),
                ("timesheet.failed", "P-1002", "O-1"),
            ],
        )

    def fixed() -> Step:
        return Step(
            "On call: C-78 is Acme's European arm; map it to its Harvest client and "
            "replay the dead letter.",
            commands=[
                [
                    "clients",
                    "map",
                    "--tool",
                    "harvest",
                    "--crm",
                    "C-78",
                    "--tool-client",
                    str(afternoon.europe_client),
                    "--name",
                    "Acme Corp",
                ],
                ["dlq", "replay", "--all", "--code", "client_ambiguous"],
            ],  # fmt: skip
            # The replay's audit event names the letter; then the worker provisions it.
            outcomes=[("dlq.replayed", None, None), ("timesheet.provisioned", "P-1002", "O-1")],
        )

    def paused() -> Step:
        data = {"project_id": "P-1001", "status": "on_hold"}
        return Step(
            "The customer pauses 'Website Rebuild': On Hold archives its three timesheet projects.",
            [event("project.status_changed", "P-1001", data)],
            outcomes=[("timesheet.archived", "P-1001", o) for o in ("O-1", "O-2", "O-3")],
        )

    return [won, started, connected, duplicate, fixed, paused]
