"""From the pieces of a CRM deal to the contract's project snapshot, the same way for every
CRM: client = the company / organization / account, one offering per line item, the team
on every offering (the owner's e-mail plus those in the rules' ``team_emails`` property).
The adapters only fetch the pieces."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from handlers.ports import DealSnapshot, StageFacts
from schemas.crm import crm_client_id, crm_project_id
from schemas.inbound import MAX_HOURS, Project

_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+$")
_NOT_SOLD = frozenset({"false", "no", "0", "off", "n"})


@dataclass(frozen=True)
class LineItem:
    id: str
    name: Any
    hours: Any
    sold: Any = None
    kind: Any = None


def hours(value: Any) -> float | None:
    """A quantity or hours property as hours; what is no number of hours is no budget."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if 0 <= number <= MAX_HOURS else None


def sold(value: Any) -> bool:
    """Absent or empty means sold (the contract's default); false/no/0 means not."""
    if value is None or isinstance(value, bool):
        return value is not False
    return str(value).strip().casefold() not in _NOT_SOLD


def emails(value: Any) -> list[str]:
    """E-mails in a property: separated by commas, semicolons or white space."""
    if not isinstance(value, str):
        return []
    return [e.lower() for e in re.split(r"[,;\s]+", value) if _EMAIL.match(e)]


def snapshot(
    crm: str,
    deal_id: str,
    *,
    name: Any,
    client: tuple[str, Any] | None,
    items: list[LineItem],
    team: list[str],
    stage: StageFacts,
) -> DealSnapshot:
    read_at = datetime.now(UTC)
    if client is None:
        return DealSnapshot(crm, deal_id, None, stage, read_at, problem="it has no client")
    client_id, client_name = client
    members = [{"email": e} for e in dict.fromkeys(team)]
    raw = {
        "id": crm_project_id(crm, deal_id),
        "name": _text(name) or f"Deal {deal_id}",
        "client": {
            "id": crm_client_id(crm, client_id),
            "name": _text(client_name) or f"Client {client_id}",
        },
        "offerings": [
            {
                "id": item.id,
                "name": _text(item.name) or f"Line item {item.id}",
                "sold": sold(item.sold),
                "budget_hours": hours(item.hours),
                "kind": _text(item.kind) or None,
                "team": members,
            }
            for item in items
        ],
    }
    try:
        project = Project.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(map(str, err["loc"]))
        problem = f"{where}: {err['msg']}"
        return DealSnapshot(crm, deal_id, None, stage, read_at, problem=problem)
    return DealSnapshot(crm, deal_id, project, stage, read_at)


def _text(value: Any) -> str:
    return " ".join(str(value).split())[:500] if value is not None else ""
