"""An in-memory timesheet tool for handler tests: records state, asserts nothing itself."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from handlers.ports import ProjectSpec, SetupReport, ToolClient, ToolProject, client_name_key
from schemas.errors import InvalidReference, TimesheetNotFound, VendorUnavailable


@dataclass
class MemoryProject:
    project: ToolProject
    spec: ProjectSpec | None
    members: set[str] = field(default_factory=set)


class MemoryTool:
    def __init__(self, name: str = "harvest"):
        self.name = name
        self.clients: dict[str, ToolClient] = {}
        self.projects: dict[str, MemoryProject] = {}
        self.users: dict[str, str] = {}  # email -> user id
        self.fail_creates = 0  # the next N creates raise VendorUnavailable
        self.completed: list[str] = []  # projects complete_setup was called for
        self.setup_report: SetupReport | None = None  # what complete_setup says it left out
        self.found_since: list[datetime | None] = []  # the ``since`` of each find_project
        self._ids = itertools.count(1000)
        # Off: like Toggl and Clockify, whose clients carry no currency (tests turn it on).
        self.clients_carry_currency = False
        self.client_currency: dict[str, str] = {}  # the currency a client was made with

    # seeding
    def add_user(self, email: str) -> str:
        self.users[email.lower()] = user_id = f"u{next(self._ids)}"
        return user_id

    def add_client(self, name: str) -> str:
        client = ToolClient(f"c{next(self._ids)}", name)
        self.clients[client.id] = client
        return client.id

    def add_project(self, client_id: str | None, name: str = "Existing") -> str:
        project_id = str(next(self._ids))
        project = ToolProject(project_id, name, client_id, self.project_url(project_id))
        self.projects[project_id] = MemoryProject(project, None)
        return project_id

    # the port
    def parse_reference(self, reference: str) -> str:
        found = re.fullmatch(r"\s*(?:https://mem\.example/projects/)?(\d+)\s*", reference)
        if not found:
            raise InvalidReference(f"cannot read {reference!r}")
        return found.group(1)

    def project_url(self, project_id: str) -> str:
        return f"https://mem.example/projects/{project_id}"

    def clients_named(self, name: str) -> list[ToolClient]:
        key = client_name_key(name)
        return [c for c in self.clients.values() if client_name_key(c.name) == key]

    def create_client(self, name: str, currency: str | None = None) -> ToolClient:
        client_id = self.add_client(name)
        if currency is not None:
            self.client_currency[client_id] = currency
        return self.clients[client_id]

    def find_project(
        self, client_id: str, marker: str, name: str, since: datetime | None = None
    ) -> ToolProject | None:
        self.found_since.append(since)
        return next(
            (
                p.project
                for p in self.projects.values()
                if p.spec and p.spec.marker == marker and p.project.client_id == client_id
            ),
            None,
        )

    def create_project(self, spec: ProjectSpec) -> ToolProject:
        project_id = str(next(self._ids))
        project = ToolProject(project_id, spec.name, spec.client_id, self.project_url(project_id))
        self.projects[project_id] = MemoryProject(project, spec)
        if self.fail_creates:  # made, but the answer is lost: like a crash after the create
            self.fail_creates -= 1
            raise VendorUnavailable("answer lost")
        return project

    def complete_setup(self, project_id: str, spec: ProjectSpec) -> SetupReport | None:
        self.completed.append(project_id)
        return self.setup_report

    def get_project(self, project_id: str) -> ToolProject:
        if project_id not in self.projects:
            raise TimesheetNotFound(f"no project {project_id}")
        return self.projects[project_id].project

    def find_users(self, emails: Sequence[str]) -> dict[str, str]:
        return {e.lower(): self.users[e.lower()] for e in emails if e.lower() in self.users}

    def assign_team(self, project_id: str, user_ids: Sequence[str]) -> None:
        self.projects[project_id].members.update(user_ids)

    def set_archived(self, project_id: str, archived: bool) -> None:
        entry = self.projects[project_id]
        entry.project = replace(entry.project, archived=archived)
