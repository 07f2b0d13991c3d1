"""The Harvest adapter pointed at a ``FakeHarvest`` with two items a page, so that every
list the adapter reads spans several pages."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import tenacity

from adapters.harvest import HarvestTool
from adapters.pacing import Pacer
from fakes.harvest import FakeHarvest
from tests.integration.harness import FakeMoneyView, FakeProjectView, fast_retrying

ACCOUNT_ID = "424242"
TOKEN = "harvest-conformance-token"


class HarvestHarness:
    tool_name = "harvest"
    lacks: frozenset[str] = frozenset()  # Harvest has a field for each (issue 21)
    paid_only: frozenset[str] = frozenset()

    def __init__(self, fake: FakeHarvest):
        self.fake = fake

    def tool(
        self,
        *,
        retrying: tenacity.Retrying | None = None,
        pacer: Pacer | None = None,
        read_timeout: float = 5.0,
        token: str = TOKEN,
        web_url: str | None = None,
    ) -> HarvestTool:
        return HarvestTool(
            ACCOUNT_ID,
            token,
            base_url=f"{self.fake.origin}/v2",
            retrying=retrying or fast_retrying(),
            pacer=pacer,
            read_timeout=read_timeout,
            web_url=web_url,
        )

    def tool_with_bad_credentials(self) -> HarvestTool:
        return self.tool(token="not-the-secret-token")

    def add_user(self, email: str) -> str:
        return str(self.fake.add_user(email))

    def add_client(self, name: str) -> str:
        return str(self.fake.add_client(name))

    def add_project(self, client_id: str, name: str) -> str:
        return str(self.fake.add_project(int(client_id), name))

    def projects(self) -> list[FakeProjectView]:
        with self.fake.lock:
            return [self._view(p) for p in sorted(self.fake.projects.values(), key=_by_id)]

    def _view(self, project: dict) -> FakeProjectView:
        members = {
            str(a["user"]["id"])
            for a in self.fake.user_assignments.values()
            if a["project"]["id"] == project["id"]
        }
        budget = project["budget"]
        on = {"task": self.fake.task_assignments, "person": self.fake.user_assignments}
        if project["budget_by"] in on:  # HV-DOCS: these modes budget hours per assignment
            hours = [
                a["budget"]
                for a in on[project["budget_by"]].values()
                if a["project"]["id"] == project["id"] and a["budget"] is not None
            ]
            budget = sum(hours) if hours else None
        return FakeProjectView(
            id=str(project["id"]),
            name=project["name"],
            client_id=str(project["client"]["id"]),
            budget_hours=budget,
            member_ids=frozenset(members),
            archived=not project["is_active"],
        )

    def web_url(self, project_id: str) -> str:
        return f"{self.fake.base_uri}/projects/{project_id}"

    def foreign_reference(self) -> str:
        return "https://track.toggl.com/1234567/projects/7654321"

    def missing_project_id(self) -> str:
        return "99999999"

    def missing_client_id(self) -> str:
        return "99999998"

    # -- the commercial shape: views of the fake's state ------------------------------------
    @property
    def currency(self) -> str:
        """A client made without a currency has the account's: the fake account's is USD."""
        return "USD"

    def drop_paid_features(self) -> None:
        pass  # no Harvest plan refuses a money field: ``paid_only`` is empty

    def money(self, project_id: str) -> FakeMoneyView:
        with self.fake.lock:
            project = self.fake.projects[int(project_id)]
            by_cost = project.get("budget_by") == "project_cost"
            return FakeMoneyView(
                currency=(project.get("client") or {}).get("currency"),
                fixed_fee=_decimal(project.get("fee")) if project.get("is_fixed_fee") else None,
                hourly_rate=_decimal(project.get("hourly_rate")),
                money_budget=_decimal(project.get("cost_budget")) if by_cost else None,
                code=project.get("code"),
                notes=project.get("notes") or None,
            )

    def tasks(self, project_id: str) -> dict[str, float | None]:
        with self.fake.lock:
            return {
                a["task"]["name"]: a.get("budget")
                for a in self.fake.task_assignments.values()
                if a["project"]["id"] == int(project_id)
            }

    def add_template(self, client_id: str, name: str, tasks: Mapping[str, float | None]) -> str:
        project = self.fake.add_project(int(client_id), name)
        for task, hours in tasks.items():
            self.fake.add_task_assignment(project, self.fake.add_task(task), budget=hours)
        return str(project)


def _decimal(number: float | None) -> Decimal | None:
    return None if number is None else Decimal(str(number))


def _by_id(project: dict) -> int:
    return project["id"]


def open_harness() -> HarvestHarness:
    # Generous enough that no conformance test meets the limit unless it asks to.
    fake = FakeHarvest(ACCOUNT_ID, TOKEN, page_size=2, rate_limit=(1000, 15.0))
    return HarvestHarness(fake.start())
