"""Small builders for test data, with random ids so shared infrastructure never collides."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any


def rid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def member(email: str, **extra: Any) -> dict:
    return {"email": email, "name": email.split("@")[0].title(), **extra}


def offering(name: str = "Discovery", **fields: Any) -> dict:
    return {"id": rid("O"), "name": name, "sold": True, "budget_hours": 40, **fields}


def project(*offerings: dict, client: dict | None = None, **fields: Any) -> dict:
    return {
        "id": rid("P"),
        "name": "Website Rebuild",
        "client": client or {"id": rid("C"), "name": rid("Acme")},
        "offerings": list(offerings) or [offering()],
        **fields,
    }


_clock = datetime(2026, 11, 1, tzinfo=UTC)


def event(
    type_: str,
    data: dict,
    *,
    id: str | None = None,
    source: str = "crm-test",
    time: datetime | None = None,
) -> dict:
    """A CloudEvent; times increase with every call so later events are newer."""
    global _clock
    _clock += timedelta(seconds=1)
    return {
        "specversion": "1.0",
        "id": id or str(uuid.uuid4()),
        "source": source,
        "type": type_,
        "time": (time or _clock).isoformat().replace("+00:00", "Z"),
        "data": data,
    }


def body(ev: dict) -> bytes:
    return json.dumps(ev).encode()


def closed_won(proj: dict, **kw: Any) -> dict:
    return event("deal.closed_won", {"project": proj}, **kw)


def status_changed(proj: dict, status: str, selection: dict | None = None, **kw: Any) -> dict:
    data = {"project_id": proj["id"], "status": status}
    if selection is not None:
        data["selection"] = selection
    return event("project.status_changed", data, **kw)


def provision_requested(proj: dict, offering_id: str, tool: str | None = None, **kw) -> dict:
    data = {"project_id": proj["id"], "offering_id": offering_id}
    if tool:
        data["tool"] = tool
    return event("timesheet.provision_requested", data, **kw)


def connect_requested(
    proj: dict, offering_id: str, reference: str, tool: str | None = None, **kw
) -> dict:
    data = {"project_id": proj["id"], "offering_id": offering_id, "timesheet_project": reference}
    if tool:
        data["tool"] = tool
    return event("timesheet.connect_requested", data, **kw)
