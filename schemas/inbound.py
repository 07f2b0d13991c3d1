"""Inbound events (``NS.inbound``) and the one entry that reads a message body into them."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from schemas.crm import CRM_DEAL_CHANGED, CrmDealChanged
from schemas.envelope import MAX_BODY_BYTES, CloudEvent
from schemas.errors import Unreadable, UnreadableCode
from schemas.json_body import read_json

Tool = Literal["harvest", "toggl", "clockify"]
TOOLS: tuple[Tool, ...] = ("harvest", "toggl", "clockify")
Status = Literal["awaiting_start", "in_progress", "on_hold", "completed"]
NonEmpty = Annotated[str, Field(min_length=1, max_length=500)]
# No vendor takes a million hours on one offering; infinity and NaN are never hours.
MAX_HOURS = 1_000_000
Hours = Annotated[float, Field(ge=0, le=MAX_HOURS, allow_inf_nan=False)]

# A producer's clock may run a little ahead of ours. Further ahead, an event would win every
# newer-wins comparison for good and freeze the project, so it is refused.
CLOCK_SKEW = timedelta(minutes=5)
# No CRM event predates the Unix epoch; older times are typos or attacks (year 1 overflows
# ``astimezone`` and the store's timestamps).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


class _Data(BaseModel):
    # Producers may add fields (the contract allows it); types of known fields are strict.
    model_config = ConfigDict(extra="ignore", frozen=True)


def _decimal_text(value: Any) -> str:
    """Money travels as a decimal string ("12000.00"): a JSON number would be a binary float
    somewhere on its way, and 0.1 + 0.2 is no price."""
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise ValueError('must be a decimal string such as "12000.00", never a number')
    return value


_DECIMAL = re.compile(r"\d{1,13}(\.\d{1,6})?")
Amount = Annotated[str, BeforeValidator(_decimal_text)]
# ISO 4217 alphabetic codes are three capital letters; the tools check they know the one given.
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class Money(_Data):
    """An amount in a currency: ``{"amount": "12000.00", "currency": "EUR"}``."""

    amount: Amount
    currency: Currency

    @property
    def value(self) -> Decimal:
        return Decimal(self.amount)


class TeamMember(_Data):
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)]
    name: str | None = None
    role: str | None = None
    hours: Hours | None = None


class Client(_Data):
    id: NonEmpty
    name: NonEmpty


class Offering(_Data):
    id: NonEmpty
    name: NonEmpty
    sold: bool = True
    budget_hours: Hours | None = None
    starts_on: date | None = None
    ends_on: date | None = None
    billable: bool = True
    kind: str | None = None
    team: list[TeamMember] = Field(default_factory=list)
    price: Money | None = None  # what the offering was sold for (the line item's total)
    hourly_rate: Money | None = None  # what an hour of it is billed at (its unit price)

    @model_validator(mode="after")
    def _dates_in_order(self) -> Offering:
        # A vendor refuses it (vendor_rejected, dead-lettered after a call); it is bad input.
        if self.starts_on and self.ends_on and self.starts_on > self.ends_on:
            raise ValueError("starts_on is after ends_on")
        return self


class Project(_Data):
    id: NonEmpty
    name: NonEmpty
    client: Client
    offerings: list[Offering] = Field(default_factory=list)
    # The deal in its CRM, for people to click back to (the tools' notes, the outcome).
    url: Annotated[str, Field(max_length=2000, pattern=r"^https?://\S+$")] | None = None

    @model_validator(mode="after")
    def _unique_offerings(self) -> Project:
        ids = [o.id for o in self.offerings]
        if len(ids) != len(set(ids)):
            raise ValueError("offering ids must be unique within a project")
        return self

    def offering(self, offering_id: str) -> Offering | None:
        return next((o for o in self.offerings if o.id == offering_id), None)


class DealClosedWon(_Data):
    """The deal was won: the project becomes active (with its snapshot)."""

    project: Project

    @property
    def project_id(self) -> str:
        return self.project.id


class ProjectStatusChanged(_Data):
    """The project moved to another status; In Progress provisions, On Hold and Completed
    archive, back to In Progress restores."""

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
    """Provision New on the Integrations tab, for one offering."""

    project_id: NonEmpty
    offering_id: NonEmpty
    tool: Tool | None = None


class ConnectRequested(_Data):
    """Connect Existing on the Integrations tab: link an offering to a tool project by its
    id or URL."""

    project_id: NonEmpty
    offering_id: NonEmpty
    tool: Tool | None = None
    timesheet_project: Annotated[str, Field(min_length=1, max_length=2048)]


InboundData = (
    DealClosedWon | ProjectStatusChanged | ProvisionRequested | ConnectRequested | CrmDealChanged
)

INBOUND_TYPES: dict[str, type[InboundData]] = {
    "deal.closed_won": DealClosedWon,
    "project.status_changed": ProjectStatusChanged,
    "timesheet.provision_requested": ProvisionRequested,
    "timesheet.connect_requested": ConnectRequested,
    CRM_DEAL_CHANGED: CrmDealChanged,
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


def _first_error(exc: ValidationError, within: tuple[str, ...] = ()) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in (*within, *err["loc"])) or "(root)"
    return f"{where}: {err['msg']} ({exc.error_count()} error(s))"


def parse_inbound(body: bytes, *, clock_skew: timedelta = CLOCK_SKEW) -> Inbound:
    """Read one AMQP body. Raises nothing but ``Unreadable`` (with a code and a one-line
    reason), whatever the bytes; ``clock_skew`` is how far ahead of our clock an event's
    ``time`` may be."""
    if len(body) > MAX_BODY_BYTES:
        raise Unreadable(UnreadableCode.TOO_LARGE, f"body is {len(body)} bytes, over 256 KiB")
    raw = read_json(body)
    if not isinstance(raw, dict):
        raise Unreadable(UnreadableCode.NOT_CLOUDEVENT, "body is not a JSON object")
    if _MAYBE_UNSTORABLE.search(body) and (where := _unstorable_text(raw)):
        raise Unreadable(UnreadableCode.INVALID_DATA, where)
    try:
        envelope = CloudEvent.model_validate(raw)
    except ValidationError as exc:
        raise Unreadable(UnreadableCode.NOT_CLOUDEVENT, _first_error(exc)) from None
    if problem := _time_problem(envelope.time, clock_skew):
        raise Unreadable(UnreadableCode.INVALID_DATA, problem)
    model = INBOUND_TYPES.get(envelope.type)
    if model is None:
        raise Unreadable(UnreadableCode.UNKNOWN_TYPE, f"unknown event type {envelope.type!r}")
    try:
        data = model.model_validate(envelope.data)
    except ValidationError as exc:
        # The path from the event's root (data.project.id), as the producer wrote it.
        raise Unreadable(UnreadableCode.INVALID_DATA, _first_error(exc, ("data",))) from None
    return Inbound.model_construct(envelope=envelope, data=data)  # both parts are validated


def _time_problem(time: datetime, clock_skew: timedelta) -> str | None:
    # Aware datetimes compare without ``astimezone``, which overflows at the ends of the range.
    if time > datetime.now(UTC) + clock_skew:
        return f"time: {time.isoformat()} is ahead of our clock by more than {clock_skew}"
    if time < EARLIEST:
        return f"time: {time.isoformat()} is before {EARLIEST.date()}"
    return None


# PostgreSQL cannot store NUL in text, and no UTF-8 encoder takes a lone surrogate. A strict
# UTF-8 body can only carry them as JSON escapes, so only a body with such an escape is walked.
_MAYBE_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _unstorable_text(value: Any, path: str = "") -> str | None:
    """Where in ``value`` a string (or key) holds NUL or a lone surrogate, as a reason."""
    if isinstance(value, str):
        found = _UNSTORABLE.search(value)
        if found is None:
            return None
        what = "a NUL character" if found.group() == "\x00" else "a lone surrogate"
        return f"{path or '(root)'}: contains {what}"
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        # The reason goes into headers: a key's own NUL or surrogate is shown escaped.
        shown = str(key).encode("ascii", "backslashreplace").decode()
        where = f"{path}.{shown}" if path else shown
        if problem := _unstorable_text(key, where) or _unstorable_text(item, where):
            return problem
    return None
