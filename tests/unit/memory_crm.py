"""A CRM in memory for unit tests: deals as the contract's projects plus stage facts, a
count of reads, and a lever to make the next reads fail."""

from __future__ import annotations

from datetime import UTC, datetime

from handlers.ports import DealSnapshot, StageFacts
from schemas.crm import crm_project_id
from schemas.errors import CrmRecordNotFound, ProvisionerError
from schemas.inbound import Project


class MemoryCrm:
    def __init__(self, name: str = "hubspot"):
        self.name = name
        self.deals: dict[str, tuple[Project, StageFacts]] = {}
        self.reads = 0
        self.failures: list[ProvisionerError] = []  # raised by the next reads, in order

    def add_deal(self, deal_id: str, project: dict, stage: str, **facts) -> None:
        raw = {**project, "id": crm_project_id(self.name, deal_id)}
        self.deals[deal_id] = (Project.model_validate(raw), StageFacts(stage, **_won(stage, facts)))

    def move(self, deal_id: str, stage: str, **facts) -> None:
        project, _ = self.deals[deal_id]
        self.deals[deal_id] = (project, StageFacts(stage, **_won(stage, facts)))

    def read_deal(self, deal_id: str) -> DealSnapshot:
        self.reads += 1
        if self.failures:
            raise self.failures.pop(0)
        if deal_id not in self.deals:
            raise CrmRecordNotFound(f"{self.name} deal {deal_id} does not exist")
        project, stage = self.deals[deal_id]
        return DealSnapshot(self.name, deal_id, project, stage, datetime.now(UTC))


def _won(stage: str, facts: dict) -> dict:
    return {"won": stage == "closedwon", "lost": stage == "closedlost", **facts}
