"""The Clockify adapter pointed at ``FakeClockify``, seen through the conformance ``Harness``."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import tenacity

from adapters.clockify import ClockifyTool, iso_hours
from adapters.pacing import Pacer
from fakes.clockify import FakeClockify, duration_hours
from tests.integration.harness import FakeMoneyView, FakeProjectView, fast_retrying

WEB_URL = "https://app.clockify.me"


@dataclass
class ClockifyHarness:
    fake: FakeClockify
    tool_name: str = "clockify"
    # No fixed fee, no project code.
    lacks: frozenset[str] = frozenset({"fixed_fee", "code"})
    paid_only: frozenset[str] = frozenset({"money_budget"})

    def tool(
        self,
        *,
        retrying: tenacity.Retrying | None = None,
        pacer: Pacer | None = None,
        read_timeout: float = 5.0,
        api_key: str | None = None,
    ) -> ClockifyTool:
        return ClockifyTool(
            self.fake.api_key if api_key is None else api_key,
            self.fake.workspace_id,
            base_url=self.fake.origin + "/api/v1",
            retrying=retrying or fast_retrying(),
            pacer=pacer,
            read_timeout=read_timeout,
            web_url=WEB_URL,
            plan=self.fake.plan,
        )

    def tool_with_bad_credentials(self) -> ClockifyTool:
        return self.tool(api_key="not-the-secret-key")

    def add_user(self, email: str) -> str:
        return self.fake.add_user(email)

    def add_client(self, name: str) -> str:
        return self.fake.add_client(name)

    def add_project(self, client_id: str, name: str) -> str:
        return self.fake.add_project(client_id, name)

    def projects(self) -> list[FakeProjectView]:
        with self.fake.lock:
            return [_view(p) for p in self.fake.projects.values()]

    def web_url(self, project_id: str) -> str:
        return f"{WEB_URL}/projects/{project_id}/edit"

    def foreign_reference(self) -> str:
        return "https://acme.harvestapp.com/projects/123456"

    def missing_project_id(self) -> str:
        return secrets.token_hex(12)

    def missing_client_id(self) -> str:
        return secrets.token_hex(12)

    @property
    def currency(self) -> str:
        return self.fake.currencies[0]

    def drop_paid_features(self) -> None:
        self.fake.plan = "free"

    def money(self, project_id: str) -> FakeMoneyView:
        with self.fake.lock:
            project = self.fake.projects[project_id]
            rate = project.get("hourlyRate") or {}
            budget = project.get("budgetEstimate") or {}
            manual = budget.get("type") == "MANUAL" and budget.get("active")
            return FakeMoneyView(
                # An estimate carries no currency: it is the workspace's.
                currency=rate.get("currency") or (self.currency if manual else None),
                fixed_fee=None,
                hourly_rate=Decimal(rate["amount"]) / 100 if rate else None,
                money_budget=Decimal(budget["estimate"]) / 100 if manual else None,
                code=None,
                notes=project["note"],
            )

    def tasks(self, project_id: str) -> dict[str, float | None]:
        with self.fake.lock:
            return {
                t["name"]: duration_hours(t["estimate"]) or None
                for t in self.fake.tasks.values()
                if t["projectId"] == project_id
            }

    def add_template(self, client_id: str, name: str, tasks: Mapping[str, float | None]) -> str:
        pid = self.fake.add_project(client_id, name)
        for task, hours in tasks.items():
            self.fake.add_task(pid, task, iso_hours(hours) if hours else "PT0S")
        return pid


def _view(project: dict) -> FakeProjectView:
    estimate = project.get("timeEstimate") or {}
    manual = estimate.get("type") == "MANUAL" and estimate.get("active")
    hours = duration_hours(estimate.get("estimate", "")) if manual else None
    return FakeProjectView(
        id=project["id"],
        name=project["name"],
        client_id=project["clientId"] or None,
        budget_hours=hours or None,
        member_ids=frozenset(m["userId"] for m in project["memberships"]),
        archived=project["archived"],
    )


def open_harness(*, page_size: int = 2) -> ClockifyHarness:
    """A started fake that serves at most ``page_size`` items a page, so listings page."""
    fake = FakeClockify(
        workspace_id=secrets.token_hex(12),
        api_key=f"clockify-{secrets.token_hex(8)}",
        rate_limit=(1000, 1.0),
        page_size=page_size,
        max_page_size=page_size,
        currency="EUR",
    )
    return ClockifyHarness(fake.start())
