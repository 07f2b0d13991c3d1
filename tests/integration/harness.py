"""What the conformance suite needs from each tool: its adapter pointed at its fake, and a
vendor-neutral view of the fake's state. One ``Harness`` per tool lives in
``tests/integration/harnesses/``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
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


@dataclass(frozen=True)
class FakeMoneyView:
    """A project's commercial fields as the fake holds them (issue 21); None where unset.
    Amounts are in the currency the tool keeps them in, ``currency``."""

    currency: str | None
    fixed_fee: Decimal | None
    hourly_rate: Decimal | None
    money_budget: Decimal | None
    code: str | None
    notes: str | None


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

    # -- the commercial shape (issue 21) ---------------------------------------------------
    # Spec fields the tool has no place for ("fixed_fee", "money_budget", "hourly_rate",
    # "code", "notes"): always left out, with a warning.
    lacks: frozenset[str]
    # Fields (and "tasks") the tool takes only on a paid plan: see ``drop_paid_features``.
    paid_only: frozenset[str]

    @property
    def currency(self) -> str:
        """The currency the tool takes money in for a new project of a new client."""

    def drop_paid_features(self) -> None:
        """The account's plan loses its paid features. Call before ``tool()``: an adapter
        may read the plan once."""

    def money(self, project_id: str) -> FakeMoneyView: ...

    def tasks(self, project_id: str) -> dict[str, float | None]:
        """The project's tasks as the fake holds them: name -> estimate in hours (None: none)."""

    def add_template(self, client_id: str, name: str, tasks: Mapping[str, float | None]) -> str:
        """Seeds a project with these tasks (name -> estimated hours) straight into the fake."""
