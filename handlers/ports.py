"""The ports the handlers need, typed by their interface, and the values that cross them.

``TimesheetTool`` is implemented once per vendor in ``adapters/``; ``ProjectStore`` by the
SQL store. Fakes of both live in the tests.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, Protocol

from schemas.inbound import Money, Project, Status, Tool
from schemas.outbound import Outbound


def client_name_key(name: str) -> str:
    """A client name as the tools compare them (``TimesheetTool.clients_named``): case and runs
    of white space do not count."""
    return " ".join(name.split()).casefold()


@dataclass(frozen=True)
class ToolClient:
    id: str
    name: str


@dataclass(frozen=True)
class ToolProject:
    id: str
    name: str
    client_id: str | None
    url: str
    archived: bool = False
    # The commercial shape the project holds, where the tool says (Connect Existing reports
    # it); left at these defaults by a tool that does not read it back.
    fixed_fee: bool = False
    fee: Money | None = None
    money_budget: Money | None = None
    hourly_rate: Money | None = None
    code: str | None = None


@dataclass(frozen=True)
class ProjectSpec:
    """What to create in the tool for one offering."""

    client_id: str
    name: str
    # Identifies the offering inside the tool (Harvest ``code``, Clockify ``note`` …) so that a
    # create interrupted before our commit is found and adopted instead of made twice.
    marker: str
    budget_hours: float | None
    billable: bool
    starts_on: date | None = None
    ends_on: date | None = None
    has_team: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)  # the rules' [tool] table
    # Tool user id -> the hours the offering plans for that member (Harvest budget_by person).
    team_hours: Mapping[str, float] = field(default_factory=dict)
    # The commercial shape (issue 21), each None when the rules or the offering give none:
    fixed_fee: Money | None = None  # a fixed-fee project for this fee
    money_budget: Money | None = None  # the budget in money, not hours
    hourly_rate: Money | None = None  # billed by project at this rate
    code: str | None = None  # the tool's project code, from the rules' template
    notes: str | None = None  # the project's notes, from the rules' template
    template: str | None = None  # a tool project whose tasks the new one starts with


@dataclass(frozen=True)
class SetupReport:
    """What ``complete_setup`` could not do because the tool's plan lacks a feature: the
    outcome event reports ``budget_hours: null`` and the warnings instead of failing."""

    budget_set: bool = True
    warnings: tuple[str, ...] = ()
    # Commercial fields of the spec that the tool project did not get (a currency other
    # than the tool's, a plan without the feature, a tool without the field): "fixed_fee",
    # "money_budget", "hourly_rate", "code". The outcome reports them null, with a warning.
    left_out: frozenset[str] = frozenset()


class TimesheetTool(Protocol):
    """One timesheet tool account. Raises only the ``schemas.errors`` tree.

    A tool whose clients carry a currency (Harvest: money is in the client's currency) has
    ``clients_carry_currency = True`` and takes ``create_client(name, currency=...)``; the
    others are called with the name only."""

    name: Tool

    def parse_reference(self, reference: str) -> str:
        """A project id or web URL -> the tool's project id (``InvalidReference``)."""

    def project_url(self, project_id: str) -> str: ...

    def clients_named(self, name: str) -> list[ToolClient]:
        """Every client whose name has the ``client_name_key`` of ``name``."""

    def create_client(self, name: str) -> ToolClient: ...

    def find_project(
        self, client_id: str, marker: str, name: str, since: datetime | None = None
    ) -> ToolProject | None:
        """The project an earlier, interrupted create made for this marker, if any.
        ``since``: when that create's intent was recorded; a tool that cannot carry the
        marker (Toggl) adopts only a project made after it, never one a person made."""

    def create_project(self, spec: ProjectSpec) -> ToolProject: ...

    def complete_setup(self, project_id: str, spec: ProjectSpec) -> SetupReport | None:
        """What a new project gets after its create and its team (Harvest: the rules' task
        assignments and per-person budgets; Clockify: the estimate). Idempotent, and called
        for an adopted project too, whose create may have been cut short before this. Says
        what the tool's plan did not allow (None: everything was set)."""

    def get_project(self, project_id: str) -> ToolProject:
        """Raises ``TimesheetNotFound`` when there is no such project."""

    def find_users(self, emails: Sequence[str]) -> dict[str, str]:
        """Lower-cased e-mail -> tool user id, for those of ``emails`` that exist."""

    def assign_team(self, project_id: str, user_ids: Sequence[str]) -> None:
        """Adds the users to the project; users already on it are left as they are."""

    def set_archived(self, project_id: str, archived: bool) -> None: ...


@dataclass(frozen=True)
class Link:
    """An offering's timesheet project."""

    project_id: str
    offering_id: str
    tool: Tool
    timesheet_project_id: str
    timesheet_url: str
    timesheet_client_id: str
    archived: bool = False
    # An archive or restore was begun and not recorded as done: the tool may be either way,
    # so the next status change does it again (both are idempotent in every tool).
    unsettled: bool = False


@dataclass(frozen=True)
class ProjectState:
    project: Project  # the newest snapshot by event time
    snapshot_at: datetime
    active: bool
    status: Status | None = None
    status_at: datetime | None = None


@dataclass(frozen=True)
class RecordedStep:
    name: str
    outcomes: list[Outbound]
    seq: int


@dataclass(frozen=True)
class Journal:
    """An event's recorded steps (name -> outcomes, in step order) and whether it is done."""

    steps: dict[str, list[Outbound]] = field(default_factory=dict)
    processed: bool = False

    @property
    def outcomes(self) -> list[Outbound]:
        return [o for recorded in self.steps.values() for o in recorded]


@dataclass(frozen=True)
class ClientMapping:
    tool: Tool
    crm_client_id: str
    tool_client_id: str
    crm_client_name: str | None = None


class ProjectStore(Protocol):
    """Durable state. Every write method is one transaction."""

    def project(self, project_id: str) -> ProjectState | None: ...

    def save_snapshot(
        self, project: Project, at: datetime, *, activate: bool = False
    ) -> ProjectState:
        """Stores the snapshot unless a newer one is stored; ``activate`` marks it active
        either way. Returns the project as stored now (the newest snapshot)."""

    def set_status(self, project_id: str, status: Status, at: datetime) -> bool:
        """False, and nothing changes, when a status at least as new is stored."""

    def link(self, project_id: str, offering_id: str) -> Link | None: ...

    def links(self, project_id: str) -> list[Link]: ...

    def tool_client(self, tool: Tool, crm_client_id: str) -> str | None: ...

    def crm_client(self, tool: Tool, tool_client_id: str) -> str | None: ...

    def map_client(self, mapping: ClientMapping) -> None:
        """Records a mapping; raises ``Permanent(client_ambiguous)`` if either side is taken."""

    def note_provision_started(self, project_id: str, offering_id: str, tool: Tool) -> bool:
        """Records that a create may be under way; True if an earlier attempt had begun one."""

    def provision_started_at(
        self, project_id: str, offering_id: str, tool: Tool
    ) -> datetime | None:
        """When the intent was first recorded (None: never): what it made is newer."""

    def note_archive_intent(self, project_id: str, offering_id: str, archived: bool) -> None:
        """Records that the link is being archived (or restored) in the tool: ``Link.unsettled``
        until ``finish_step`` records the link again."""

    def note_run(self, event_key: tuple[str, str], run_by: str, steps: int) -> int:
        """A run of the event begins on a redelivery, in the worker process ``run_by``, the event
        having recorded ``steps``; returns how many runs the worker began and never ended
        since the event last got further (the first redelivery counts the one before it)."""

    def end_run(self, event_key: tuple[str, str]) -> None:
        """The run begun by ``note_run`` ended with a decision."""

    def journal(self, event_key: tuple[str, str]) -> Journal:
        """What earlier attempts at this event recorded."""

    def finish_step(
        self,
        event_key: tuple[str, str],
        step: str,
        outcomes: Sequence[Outbound],
        link: Link | None = None,
        seq: int = 0,
    ) -> None:
        """Atomically: upsert ``link`` (if given) and record the step's outcomes, as the
        ``seq``-th step of the event (the order ``processed`` returns them in)."""

    def project_lock(self, project_id: str) -> AbstractContextManager[None]:
        """Keeps every other worker process off this project until released. Within one
        process the consumer's lanes already keep a project's events apart. Raises
        ``Transient`` when another worker holds it past the store's lock timeout, and from
        any store call inside it once the lock is lost (the database session holding it
        broke): the event is then retried, never run on unlocked."""

    def client_lock(self, tool: Tool, name: str) -> AbstractContextManager[None]:
        """Keeps every other lane and worker process from resolving a client of this name
        (``client_name_key``) in ``tool`` until released, so that one client is looked up,
        created and mapped once. ``Transient`` on timeout, as ``project_lock``."""

    def make_durable(self) -> None:
        """Returns once every commit made before the call is on disk (not only in the
        operating system's cache), so that an ack after it cannot outlive the state it
        reports. Callers at the same time share one flush."""

    def finish_run(
        self, event_key: tuple[str, str], steps: Sequence[RecordedStep], *, processed: bool
    ) -> None:
        """Atomically: record ``steps`` and, if ``processed``, that the event is done (a copy
        of it then only republishes the journal's outcomes)."""


# -- the CRM port -------------------------------------------------------------------------

Transition = Literal["closed_won", "in_progress", "on_hold", "completed"]


@dataclass(frozen=True)
class CrmFields:
    """Which CRM property holds each piece of an offering (see ``handlers.crm_rules``).
    Names are the CRM's own API names; ``None`` leaves the contract's default."""

    offering_name: str  # on the line item / deal product / OpportunityLineItem
    budget_hours: str  # on the same; a number of hours (the quantity by default)
    team_emails: str | None = None  # on the deal: e-mails, separated by commas, ; or spaces
    sold: str | None = None  # on the line item: false/no/0 means not sold; absent means sold
    kind: str | None = None  # on the line item: the offering's kind, for rules to match
    price: str | None = None  # on the line item: its total, the offering's price
    unit_price: str | None = None  # on the line item: a unit's (an hour's) price, its rate
    currency: str | None = None  # on the line item: its ISO 4217 code (else the deal's)


@dataclass(frozen=True)
class StageFacts:
    """Where the deal stands, in the CRM's own terms: ``stage`` is what the rules file maps
    (HubSpot stage id, Pipedrive ``stage_id``, Salesforce ``StageName``); ``won`` is the
    CRM's own verdict (HubSpot's won stage, Pipedrive ``status`` won, Salesforce ``IsWon``);
    ``lost`` a closed deal that was not won."""

    stage: str | None
    won: bool
    lost: bool = False
    label: str | None = None  # for logs: the stage's name where the CRM has one


@dataclass(frozen=True)
class DealSnapshot:
    """A deal as read: the contract's project (``None`` when the deal has no client yet,
    so it cannot become one), where it stands, and when we read it (UTC)."""

    crm: str
    deal_id: str
    project: Project | None
    stage: StageFacts
    read_at: datetime
    problem: str | None = None  # why ``project`` is None


class CrmReader(Protocol):
    """One CRM account. Raises only the ``schemas.errors`` tree; a deal that does not exist
    is ``CrmRecordNotFound``."""

    name: str

    def read_deal(self, deal_id: str) -> DealSnapshot: ...


class DealReads(Protocol):
    """The CRMs as handlers see them. ``received_at`` (monotonic seconds) is when the event
    that asks reached the worker: a read begun after it already shows the change it
    announces, so one read serves every event for the deal that arrived before it began."""

    def read(self, crm: str, deal_id: str, *, received_at: float | None) -> DealSnapshot: ...


@dataclass(frozen=True)
class DealChange:
    """One deal as a CRM's changed-since listing shows it: enough to tell whether it matters
    to the rules (its stage) and to name its change (the CRM's own last-modified time, UTC,
    to the millisecond the CRM gives)."""

    deal_id: str
    modified_at: datetime
    stage: StageFacts


class CrmSweep(Protocol):
    """A CRM account's changed-since listing, for ``provisioner crm reconcile``: what the
    webhooks should have told, read back. Raises only the ``schemas.errors`` tree."""

    name: str

    def account_id(self) -> str:
        """The account as its webhooks name it (HubSpot portalId, Pipedrive company_id,
        Salesforce's 18-character organization id), read from the CRM itself."""
        ...

    def changed_deals(self, since: datetime, until: datetime) -> Iterator[DealChange]:
        """Every deal whose last modification is in ``[since, until)``, each once, oldest
        first where the CRM can sort, across every page (and any cap of one query)."""
        ...
