"""One attempt at one inbound event, as a sequence of named steps.

A step (activate the project, provision offering O-1, archive offering O-2 …) runs at most
once per event across every attempt: its effects and outcome events are committed together,
and a later attempt (a retry, a redelivery, a replay) reuses what it recorded. So a retry
after a partial failure redoes only what failed, and every attempt reports every outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from handlers.ports import DealReads, Journal, Link, ProjectStore, RecordedStep, TimesheetTool
from handlers.rules import Rules
from schemas.errors import FailureCode, Permanent, ProvisionerError
from schemas.inbound import Tool
from schemas.outbound import Outbound, TimesheetFailed


@dataclass(frozen=True)
class StepResult:
    outcomes: Sequence[Outbound]
    link: Link | None = None  # stored with the outcomes, in one transaction


@dataclass(frozen=True)
class StepFailure:
    """A failure the consumer must route: retry later, or dead-letter."""

    error: ProvisionerError
    project_id: str
    offering_id: str | None = None
    tool: Tool | None = None


@dataclass
class Deps:
    store: ProjectStore
    tools: Mapping[str, TimesheetTool]
    rules: Rules
    deals: DealReads | None = None  # the CRMs; None when no CRM is configured

    def tool(self, name: str) -> TimesheetTool:
        try:
            return self.tools[name]
        except KeyError:
            raise Permanent(
                FailureCode.VENDOR_AUTH, f"{name} is not enabled: its credentials are not set"
            ) from None


@dataclass
class Run:
    key: tuple[str, str]
    store: ProjectStore
    attempt: int
    journal: Journal = field(default_factory=Journal)
    outcomes: list[Outbound] = field(default_factory=list)
    failures: list[StepFailure] = field(default_factory=list)
    steps_seen: int = 0
    # Steps that changed nothing outside the journal (skips, the activation, a final "no"):
    # recorded with the end of the run in one transaction, not one transaction each.
    pending: list[RecordedStep] = field(default_factory=list)
    # When the event reached the worker (monotonic seconds), for reads shared by the events
    # of one deal (``handlers.ports.DealReads``).
    received_at: float | None = None
    # Names steps of one phase of an event that runs several handlers' steps (a CRM deal read
    # in progress is activated, then started), so their names never meet.
    prefix: str = ""
    # What the event came to when nothing was published (a CRM stage mapped to nothing …),
    # for the worker's log line and counts.
    note: str | None = None
    details: dict[str, str | None] = field(default_factory=dict)  # logged with the note

    def decided(self, name: str) -> bool:
        """Whether an earlier attempt recorded the decision ``name`` (see ``decide``)."""
        return name in self.journal.steps

    def decide(self, name: str) -> None:
        """Records at once, in its own transaction, a decision this attempt is about to act
        on: an attempt cut short after acting (the project activated, its status stored)
        lets the next one see what it was doing and finish it, where the stored state
        alone would say there is nothing left to do."""
        seq = self.steps_seen
        self.steps_seen += 1
        if name not in self.journal.steps:
            self.store.finish_step(self.key, name, [], None, seq)

    def step(
        self,
        name: str,
        work: Callable[[], StepResult],
        *,
        project_id: str,
        offering_id: str | None = None,
        tool: Tool | None = None,
    ) -> None:
        name = self.prefix + name
        seq = self.steps_seen
        self.steps_seen += 1
        recorded = self.journal.steps.get(name)
        if recorded is not None:
            self.outcomes.extend(recorded)
            return
        try:
            result = work()
        except ProvisionerError as exc:
            failure = StepFailure(exc, project_id, offering_id, getattr(exc, "tool", None) or tool)
            if exc.retryable or exc.dead_letter:
                self.failures.append(failure)
                return
            # A final "no" that needs no person: report it once and consider the step done.
            result = StepResult([failed_event(failure, self.attempt, dead_lettered=False)])
        if result.link is None:
            self.pending.append(RecordedStep(name, list(result.outcomes), seq))
        else:  # a link is an effect in the tool: journal it before anything else happens
            self.store.finish_step(self.key, name, result.outcomes, result.link, seq)
        self.outcomes.extend(result.outcomes)


def failed_event(failure: StepFailure, attempts: int, *, dead_lettered: bool) -> TimesheetFailed:
    return TimesheetFailed(
        project_id=failure.project_id,
        offering_id=failure.offering_id,
        tool=failure.tool,
        code=failure.error.code,
        message=failure.error.message,
        retryable=failure.error.retryable,
        attempts=attempts,
        dead_lettered=dead_lettered,
    )
