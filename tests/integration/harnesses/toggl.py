"""The Toggl Track adapter pointed at a started ``FakeToggl``, for the conformance suite."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import tenacity

from adapters.pacing import Pacer
from adapters.toggl import TogglTool
from fakes.toggl import FakeToggl
from tests.integration.harness import FakeMoneyView, FakeProjectView, fast_retrying


class TogglHarness:
    tool_name = "toggl"
    # No project code, no money budget (estimates are hours), no project notes.
    lacks = frozenset({"code", "money_budget", "notes"})
    paid_only = frozenset({"fixed_fee", "hourly_rate", "tasks"})

    def __init__(self, fake: FakeToggl):
        self.fake = fake

    def tool(
        self,
        *,
        retrying: tenacity.Retrying | None = None,
        pacer: Pacer | None = None,
        read_timeout: float = 5.0,
        token: str | None = None,
    ) -> TogglTool:
        return TogglTool(
            self.fake.token if token is None else token,
            str(self.fake.workspace_id),
            base_url=f"{self.fake.origin}/api/v9",
            retrying=retrying or fast_retrying(),
            pacer=pacer,
            read_timeout=read_timeout,
        )

    def tool_with_bad_credentials(self) -> TogglTool:
        return self.tool(token="secret-but-wrong-token")

    def add_user(self, email: str) -> str:
        return str(self.fake.add_user(email))

    def add_client(self, name: str) -> str:
        return str(self.fake.add_client(name))

    def add_project(self, client_id: str, name: str) -> str:
        return str(self.fake.add_project(int(client_id), name))

    def projects(self) -> list[FakeProjectView]:
        with self.fake.lock:
            members = [
                (m["project_id"], str(m["user_id"])) for m in self.fake.project_users.values()
            ]
            return [
                FakeProjectView(
                    id=str(pid),
                    name=p["name"],
                    client_id=str(p["client_id"]) if p["client_id"] is not None else None,
                    budget_hours=p["estimated_hours"],
                    member_ids=frozenset(uid for on, uid in members if on == pid),
                    archived=not p["active"],
                )
                for pid, p in sorted(self.fake.projects.items())
            ]

    def web_url(self, project_id: str) -> str:
        return f"https://track.toggl.com/{self.fake.workspace_id}/projects/{project_id}/team"

    def foreign_reference(self) -> str:
        return "https://acme.harvestapp.com/projects/12345678"

    def missing_project_id(self) -> str:
        return "99999999"

    def missing_client_id(self) -> str:
        return "99999999"

    @property
    def currency(self) -> str:
        return self.fake.default_currency

    def drop_paid_features(self) -> None:
        self.fake.plan = "free"

    def money(self, project_id: str) -> FakeMoneyView:
        with self.fake.lock:
            project = self.fake.projects[int(project_id)]
            return FakeMoneyView(
                currency=project["currency"],
                fixed_fee=_decimal(project["fixed_fee"]),
                hourly_rate=_decimal(project["rate"]),
                money_budget=None,
                code=None,
                notes=None,
            )

    def tasks(self, project_id: str) -> dict[str, float | None]:
        with self.fake.lock:
            return {
                t["name"]: t["estimated_seconds"] / 3600 if t["estimated_seconds"] else None
                for t in self.fake.tasks.values()
                if t["project_id"] == int(project_id)
            }

    def add_template(self, client_id: str, name: str, tasks: Mapping[str, float | None]) -> str:
        pid = self.fake.add_project(int(client_id), name)
        for task, hours in tasks.items():
            self.fake.add_task(pid, task, round(hours * 3600) if hours else None)
        return str(pid)


def _decimal(number: float | None) -> Decimal | None:
    return None if number is None else Decimal(str(number))


def open_harness() -> TogglHarness:
    return TogglHarness(FakeToggl(rate_limit=(1000, 1.0)).start())
