"""The Clockify adapter pointed at ``FakeClockify``, seen through the conformance ``Harness``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import tenacity

from adapters.clockify import ClockifyTool
from adapters.pacing import Pacer
from fakes.clockify import FakeClockify, duration_hours
from tests.integration.harness import FakeProjectView, fast_retrying

WEB_URL = "https://app.clockify.me"


@dataclass
class ClockifyHarness:
    fake: FakeClockify
    tool_name: str = "clockify"

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
    )
    return ClockifyHarness(fake.start())
