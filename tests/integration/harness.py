"""What the conformance suite needs from each tool: its adapter pointed at its fake, and a
vendor-neutral view of the fake's state. One ``Harness`` per tool lives in
``tests/integration/harnesses/``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

import tenacity

from adapters.pacing import Pacer
from fakes.base import FakeVendor
from handlers.ports import ProjectSpec, TimesheetTool


@dataclass(frozen=True)
class FakeProjectView:
    id: str
    name: str
    client_id: str | None
    budget_hours: float | None
    member_ids: frozenset[str]
    archived: bool


def fast_retrying(attempts: int = 4) -> tenacity.Retrying:
    """The adapters' policy without the waiting: same retry decision, no sleeps."""
    from adapters.http import default_retrying

    policy = default_retrying(attempts)
    return policy.copy(wait=tenacity.wait_none())


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def spec_for(client_id: str, **overrides) -> ProjectSpec:
    """A project spec with random name and marker; ``overrides`` replace any field."""
    values = dict(
        client_id=client_id,
        name=unique("Website Rebuild - Discovery"),
        marker=f"P-{uuid.uuid4().hex[:6]}/O-1",
        budget_hours=40,
        billable=True,
        has_team=True,
    )
    return ProjectSpec(**(values | overrides))


class Harness(Protocol):
    tool_name: str
    fake: FakeVendor

    def tool(
        self,
        *,
        retrying: tenacity.Retrying | None = None,
        pacer: Pacer | None = None,
        read_timeout: float = 5.0,
    ) -> TimesheetTool:
        """The adapter, configured for the fake, with ``fast_retrying()`` by default."""

    def tool_with_bad_credentials(self) -> TimesheetTool: ...

    def add_user(self, email: str) -> str:
        """Seeds a user straight into the fake's state; returns the tool user id."""

    def add_client(self, name: str) -> str:
        """Seeds a client straight into the fake's state (no uniqueness check)."""

    def add_project(self, client_id: str, name: str) -> str:
        """Seeds a project straight into the fake's state."""

    def projects(self) -> list[FakeProjectView]: ...

    def web_url(self, project_id: str) -> str:
        """The address a person would copy from the tool's web app."""

    def foreign_reference(self) -> str:
        """A reference this tool cannot read (another tool's URL)."""

    def missing_project_id(self) -> str:
        """A well-formed id that names no project."""

    def missing_client_id(self) -> str:
        """A well-formed client id that names no client."""
