"""Inbound events (``NS.inbound``) and the one entry that reads a message body into them."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.envelope import MAX_BODY_BYTES, CloudEvent
from schemas.errors import Unreadable, UnreadableCode

Tool = Literal["harvest", "toggl", "clockify"]
TOOLS: tuple[Tool, ...] = ("harvest", "toggl", "clockify")
Status = Literal["awaiting_start", "in_progress", "on_hold", "completed"]
NonEmpty = Annotated[str, Field(min_length=1, max_length=500)]


class _Data(BaseModel):
    # Producers may add fields (the contract allows it); types of known fields are strict.
    model_config = ConfigDict(extra="ignore", frozen=True)


class TeamMember(_Data):
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)]
    name: str | None = None
    role: str | None = None
    hours: float | None = Field(default=None, ge=0)


class Client(_Data):
    id: NonEmpty
    name: NonEmpty


class Offering(_Data):
    id: NonEmpty
    name: NonEmpty
    sold: bool = True
    budget_hours: float | None = Field(default=None, ge=0)
    starts_on: date | None = None
    ends_on: date | None = None
    billable: bool = True
    kind: str | None = None
    team: list[TeamMember] = Field(default_factory=list)


class Project(_Data):
    id: NonEmpty
    name: NonEmpty
    client: Client
    offerings: list[Offering] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_offerings(self) -> Project:
        ids = [o.id for o in self.offerings]
        if len(ids) != len(set(ids)):
            raise ValueError("offering ids must be unique within a project")
        return self

    def offering(self, offering_id: str) -> Offering | None:
        return next((o for o in self.offerings if o.id == offering_id), None)


class DealClosedWon(_Data):
    project: Project

    @property
    def project_id(self) -> str:
        return self.project.id


class ProjectStatusChanged(_Data):
    project_id: NonEmpty
    status: Status
    selection: dict[str, bool] = Field(default_factory=dict)
    project: Project | None = None

    @model_validator(mode="after")
    def _snapshot_matches(self) -> ProjectStatusChanged:
        if self.project is not None and self.project.id != self.project_id:
            raise ValueError("project.id differs from project_id")
        return self


class ProvisionRequested(_Data):
    project_id: NonEmpty
    offering_id: NonEmpty
    tool: Tool | None = None


class ConnectRequested(_Data):
    project_id: NonEmpty
    offering_id: NonEmpty
    tool: Tool | None = None
    timesheet_project: Annotated[str, Field(min_length=1, max_length=2048)]


InboundData = DealClosedWon | ProjectStatusChanged | ProvisionRequested | ConnectRequested

INBOUND_TYPES: dict[str, type[InboundData]] = {
    "deal.closed_won": DealClosedWon,
    "project.status_changed": ProjectStatusChanged,
    "timesheet.provision_requested": ProvisionRequested,
    "timesheet.connect_requested": ConnectRequested,
}


class Inbound(BaseModel):
    """A readable inbound message: the envelope plus its typed ``data``."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    envelope: CloudEvent
    data: InboundData

    @property
    def type(self) -> str:
        return self.envelope.type

    @property
    def project_id(self) -> str:
        return self.data.project_id


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(root)"
    return f"{where}: {err['msg']} ({exc.error_count()} error(s))"


def parse_inbound(body: bytes) -> Inbound:
    """Read one AMQP body; every way it can be unreadable raises ``Unreadable`` with a code."""
    if len(body) > MAX_BODY_BYTES:
        raise Unreadable(UnreadableCode.TOO_LARGE, f"body is {len(body)} bytes, over 256 KiB")
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Unreadable(UnreadableCode.NOT_JSON, f"body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise Unreadable(UnreadableCode.NOT_CLOUDEVENT, "body is not a JSON object")
    try:
        envelope = CloudEvent.model_validate(raw)
    except ValidationError as exc:
        raise Unreadable(UnreadableCode.NOT_CLOUDEVENT, _first_error(exc)) from None
    model = INBOUND_TYPES.get(envelope.type)
    if model is None:
        raise Unreadable(UnreadableCode.UNKNOWN_TYPE, f"unknown event type {envelope.type!r}")
    try:
        data = model.model_validate(envelope.data)
    except ValidationError as exc:
        raise Unreadable(UnreadableCode.INVALID_DATA, _first_error(exc)) from None
    return Inbound.model_construct(envelope=envelope, data=data)  # both parts are validated
