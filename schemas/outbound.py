"""Outbound events (``NS.events``): one model per type, named as the contract names them."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.inbound import Money, Tool

SkipReason = Literal["opted_out", "not_sold", "manual_only", "already_linked"]


class Outbound(BaseModel):
    model_config = ConfigDict(frozen=True)
    type: ClassVar[str]

    project_id: str


class ProjectActivated(Outbound):
    """The project is active (Closed Won seen); its offerings are listed."""

    type: ClassVar[str] = "project.activated"
    offering_ids: list[str]


class _Linked(Outbound):
    offering_id: str
    tool: Tool
    timesheet_project_id: str
    timesheet_url: str
    timesheet_client_id: str
    team_assigned: list[str]
    team_missing: list[str]
    # The commercial shape the tool project was given (added fields; null: not set there).
    fixed_fee: bool = False
    fee: Money | None = None
    money_budget: Money | None = None
    hourly_rate: Money | None = None
    code: str | None = None


class TimesheetProvisioned(_Linked):
    """A tool project was created for the offering (or adopted, ``created`` false)."""

    type: ClassVar[str] = "timesheet.provisioned"
    budget_hours: float | None
    created: bool
    # Added fields (the contract allows additions): what the tool's plan did not allow, e.g.
    # "toggl: the workspace's plan has no estimates; estimated_hours not set".
    warnings: list[str] = []


class TimesheetConnected(_Linked):
    """The offering was linked to an existing tool project."""

    type: ClassVar[str] = "timesheet.connected"


class TimesheetSkipped(Outbound):
    """The offering was not provisioned, and why."""

    type: ClassVar[str] = "timesheet.skipped"
    offering_id: str
    reason: SkipReason


class TimesheetArchived(Outbound):
    """The offering's tool project was archived (project On Hold or Completed)."""

    type: ClassVar[str] = "timesheet.archived"
    offering_id: str
    tool: Tool
    timesheet_project_id: str


class TimesheetRestored(TimesheetArchived):
    """The offering's tool project was restored (project back In Progress)."""

    type: ClassVar[str] = "timesheet.restored"


class TimesheetFailed(Outbound):
    """Work on the project or offering failed; ``code`` says why, ``dead_lettered`` whether
    a person must look."""

    type: ClassVar[str] = "timesheet.failed"
    offering_id: str | None
    tool: Tool | None
    code: str
    message: str
    retryable: bool
    attempts: int
    dead_lettered: bool


class AuditedLetter(BaseModel):
    """One dead letter an audit event accounts for."""

    model_config = ConfigDict(frozen=True)

    dead_letter_id: str  # the id ``dlq list`` shows (x-copy-id, or message id + body hash)
    event_id: str | None
    event_type: str | None
    error_code: str
    replays: int  # round trips through NS.inbound, this one included for a replay


class ReplayedLetter(AuditedLetter):
    routing_key: str  # the key its copy was published to NS.inbound with


class DiscardedLetter(AuditedLetter):
    pass


class DeadLetterAudit(BaseModel):
    """What a person did to dead letters with ``provisioner dlq``: one event for a batch of
    letters (up to a few hundred), published and confirmed before any of them is acked, so a
    record exists for every letter that left the queue. With one letter, the event's
    ``subject`` is its dead-letter id and its ``causationid`` its own event id; an event for
    several letters has neither (a CloudEvent names one subject and one cause): read them
    from ``letters``."""

    model_config = ConfigDict(frozen=True)
    type: ClassVar[str]

    by: str  # the OS user who ran the command
    at: datetime  # when the batch was published
    count: int  # len(letters), for a reader that only counts
    letters: list[AuditedLetter] = Field(min_length=1)

    @model_validator(mode="after")
    def _count_is_the_letters(self) -> DeadLetterAudit:
        if self.count != len(self.letters):
            raise ValueError(f"count {self.count} but {len(self.letters)} letters")
        return self


class DeadLetterReplayed(DeadLetterAudit):
    """Dead letters replayed: each one's copy is confirmed on NS.inbound."""

    type: ClassVar[str] = "dlq.replayed"
    letters: list[ReplayedLetter] = Field(min_length=1)


class DeadLetterDiscarded(DeadLetterAudit):
    """Dead letters dropped from NS.dead-letter."""

    type: ClassVar[str] = "dlq.discarded"
    letters: list[DiscardedLetter] = Field(min_length=1)


OUTBOUND_TYPES: dict[str, type[Outbound] | type[DeadLetterAudit]] = {
    m.type: m
    for m in (
        ProjectActivated,
        TimesheetProvisioned,
        TimesheetConnected,
        TimesheetSkipped,
        TimesheetArchived,
        TimesheetRestored,
        TimesheetFailed,
        DeadLetterReplayed,
        DeadLetterDiscarded,
    )
}
