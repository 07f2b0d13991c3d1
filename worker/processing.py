"""From one delivery to one ``Decision``: what to publish before the ack.

This is where the failure tree meets the broker. The consumer only ever publishes a decision
with confirms and then acks; every policy choice is made here, in one place:

| what happened                          | publishes (all confirmed before the ack)          |
|----------------------------------------|---------------------------------------------------|
| processed (or already processed)       | outcome events -> NS.events                       |
| unreadable                             | the message -> NS.dead-letter with x-error-*      |
| retryable failure, retries left        | outcomes so far -> NS.events; message -> retry    |
|                                        | queue of the next delay, x-attempts + 1           |
| ... and the vendor named its reset,    | as above, to the shortest retry queue that lasts  |
| later than the next delay              | the wait (rungs skipped); if none does, the       |
|                                        | longest, with x-vendor-reset-at                   |
| arrived before its x-vendor-reset-at,  | message -> the shortest retry queue lasting what  |
| at most MAX_VENDOR_WAIT ahead (the     | is left (else the longest), headers untouched:    |
| vendor is not called, no lock taken)   | no attempt spent, nothing added to its history    |
| failure needing a person, or retryable | outcomes + timesheet.failed -> NS.events;         |
| with no retry left                     | message -> NS.dead-letter with x-error-*          |
| a bug (any other exception)            | as a retryable failure with code internal_error   |
| redelivered after RUN_LIMIT runs that  | timesheet.failed worker_crashed -> NS.events;     |
| never finished (it kills the worker)   | message -> NS.dead-letter                         |

A vendor's reset hint (``VendorUnavailable.retry_after``: Pipedrive's daily budget, Salesforce's
daily total) sizes the wait, so the vendor is asked again only once it said it would answer,
and a spent budget is neither hammered nor dead-lettered. A reset past the longest queue is
waited for in trips of that queue, at most ceil(hint / longest delay) of them, and the hint
is capped at ``MAX_VENDOR_WAIT``, so a message is never parked for ever. Only the failures
of this message count: other messages are not held (each learns the vendor's state by its
own call). When one run fails on several offerings, a hint counts only if every retryable
failure has one, and then the shortest: a failure that may work sooner (another vendor's
5xx) is never held back by one vendor's reset, at the price of asking the throttled vendor
once more before its reset, which then names the reset again.

The text of an unexpected exception never goes on the bus: it can carry anything, a
credential in a header value included (``requests`` puts them in ``InvalidHeader``). The bus
gets ``internal_error`` and the exception's type; the worker log gets the traceback, with the
secrets redacted (``worker.logs``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from handlers.dispatch import handle
from handlers.ports import Journal
from handlers.run import Deps, Run, StepFailure, failed_event
from schemas.errors import FailureCode, Permanent, ProvisionerError, Transient, Unreadable
from schemas.inbound import Inbound
from schemas.outbound import Outbound
from worker import metrics
from worker.messages import (
    Decision,
    Delivery,
    Publish,
    failure_copy,
    outcome_message,
    parked_copy,
)
from worker.topology import Topology

log = structlog.get_logger()

# Runs of one event begun on redeliveries before it is dead-lettered as worker_crashed. The
# broker's delivery limit cannot tell a message that kills the worker from one that only
# waited in a worker that was killed; this count only sees runs that began.
RUN_LIMIT = 20
# The longest vendor reset we wait for: Pipedrive's daily budget comes back at the start of
# the next day, Salesforce's daily total over a rolling 24 hours. A longer hint is capped, and
# a reset header further ahead is not ours (a producer's), so it is ignored.
MAX_VENDOR_WAIT = 25 * 3600.0


class Processor:
    def __init__(
        self,
        deps: Deps,
        topology: Topology,
        *,
        source: str,
        clock: Callable[[], float] = time.time,  # wall clock: a reset time crosses processes
    ):
        self.deps = deps
        self.topology = topology
        self.source = source
        self.clock = clock
        self.notes: Counter[str] = Counter()  # runs that published nothing, by why

    def process(self, delivery: Delivery, parsed: Inbound | Unreadable) -> Decision:
        """Never raises: anything unexpected (a bug, the store down) is a retryable failure,
        so the message is retried later and finally dead-lettered, never left unacked. If
        even the copy that says so cannot be made (a producer's header we cannot read
        back), the broker dead-letters the message itself (``reject``), with x-death."""
        context = {}
        if isinstance(parsed, Inbound):  # on every line logged while it is handled
            context = {"event_id": parsed.envelope.id, "project_id": parsed.project_id}
        try:
            with structlog.contextvars.bound_contextvars(**context):
                decision = self._decide(delivery, parsed)
        except Exception:
            log.exception("decision_failed", event_id=_event_id(delivery, parsed))
            decision = Decision([], "rejected_to_dead_letter", reject=True)
        event_type = parsed.type if isinstance(parsed, Inbound) else None
        metrics.event_finished(event_type, decision.log, decision.fields)
        return decision

    def _decide(self, delivery: Delivery, parsed: Inbound | Unreadable) -> Decision:
        # The consumer acks only once the commits behind the decision are on disk
        # (``worker.durability``): this lane goes on to its next message meanwhile.
        try:
            return self._process(delivery, parsed)
        except ProvisionerError as exc:  # the store's own: a lock timed out or was lost
            log.warning("processing_deferred", code=exc.code, error=exc.message)
            return self._route_failure(delivery, exc, delivery.attempts_before + 1, [])
        except Exception as exc:
            event_id = _event_id(delivery, parsed)
            log.exception("processing_failed", event_id=event_id)
            return self._route_failure(
                delivery, _internal(exc, event_id), delivery.attempts_before + 1, []
            )

    def _process(self, delivery: Delivery, parsed: Inbound | Unreadable) -> Decision:
        attempt = delivery.attempts_before + 1
        if isinstance(parsed, Unreadable):
            return self._dead_letter(delivery, parsed.code, parsed.message, attempt, [])
        if (left := self._vendor_wait_left(delivery)) is not None:
            return self._park(delivery, left)
        # Several worker processes may share one database: one of them at a time per project.
        # The runs are counted under the lock too, so that only a run that died holding it
        # (its session gone) can have left its mark.
        with self.deps.store.project_lock(parsed.project_id):
            journal = self.deps.store.journal(parsed.envelope.key)
            if not delivery.redelivered:
                return self._handle(delivery, parsed, attempt, journal)
            if self._crash_looping(delivery, parsed, journal):
                return self._crashed(delivery, parsed, attempt)
            try:
                return self._handle(delivery, parsed, attempt, journal)
            finally:
                self.deps.store.end_run(parsed.envelope.key)

    def _handle(
        self, delivery: Delivery, parsed: Inbound, attempt: int, journal: Journal
    ) -> Decision:
        key = parsed.envelope.key
        if journal.processed:
            return Decision(self._events(parsed, journal.outcomes), "duplicate_republished")
        try:
            run = handle(parsed, self.deps, attempt, journal, received_at=delivery.received_at)
        except Exception as exc:  # a bug: never lose the message, never loop hot
            log.exception("handler_crashed", event_id=parsed.envelope.id)
            run = Run(key, self.deps.store, attempt)  # nothing of the crashed run is kept
            run.failures.append(StepFailure(_internal(exc, parsed.envelope.id), parsed.project_id))
        failures, outcomes = run.failures, run.outcomes
        if not failures or run.pending:
            self.deps.store.finish_run(key, run.pending, processed=not failures)
        if not failures:
            fields: dict = {"outcomes": [o.type for o in outcomes]}
            if run.note:  # nothing published, and why: a CRM stage mapped to nothing …
                self.notes[run.note] += 1
                fields.update(note=run.note, count=self.notes[run.note], **run.details)
            return Decision(self._events(parsed, outcomes), "processed", fields)
        failed = [failed_event(f, attempt, dead_lettered=True) for f in failures]
        return self._route_failure(
            delivery,
            failures[0].error,
            attempt,
            self._events(parsed, outcomes),
            failures=failures,
            failed_events=self._events(parsed, failed),
        )

    def _crash_looping(self, delivery: Delivery, parsed: Inbound, journal: Journal) -> bool:
        """The worker began the event more than RUN_LIMIT times and died each time before the
        run ended, the event getting no further: a run is counted when the next process
        finds it unended, so copies handed to one process, and a message that waited behind
        others and never began, count no crash, and a step recorded meanwhile starts the
        count again (a long event in a restart storm is making headway, not killing the
        worker). A copy of an event that did finish is a duplicate, whatever its runs."""
        key = parsed.envelope.key
        runs = self.deps.store.note_run(key, delivery.run_by, len(journal.steps))
        return runs > RUN_LIMIT and not journal.processed

    def _crashed(self, delivery: Delivery, parsed: Inbound, attempt: int) -> Decision:
        """The worker died this often while running the event: a person must look."""
        error = Permanent(
            FailureCode.WORKER_CRASHED,
            f"the worker stopped {RUN_LIMIT} times while working on this event; "
            "see the worker log for its id",
        )
        failure = StepFailure(
            error, parsed.project_id, getattr(parsed.data, "offering_id", None), None
        )
        failed = [failed_event(failure, attempt, dead_lettered=True)]
        return self._route_failure(
            delivery,
            error,
            attempt,
            [],
            failures=[failure],
            failed_events=self._events(parsed, failed),
        )

    def _route_failure(
        self, delivery, error, attempt, events, *, failures=None, failed_events=()
    ) -> Decision:
        """Retry later while a retryable failure has retries left; else dead-letter, with
        ``timesheet.failed`` for each failure."""
        errors = [f.error for f in failures] if failures else [error]
        retryable = [e for e in errors if e.retryable]
        hint = _vendor_hint(retryable)
        delay = self.topology.retry_delay_for(attempt, hint)
        if delay is not None and retryable:
            queue = self.topology.retry_queue(delay)
            fields = {"code": error.code, "attempt": attempt, "queue": queue}
            reset_at = None
            if hint is not None:
                fields["retry_after"] = hint
                if hint > delay:  # outlasts every queue: parked on arrival until the reset
                    reset_at = self.clock() + hint
                    fields["vendor_reset_at"] = _iso(reset_at)
            copy = failure_copy(
                delivery,
                queue=queue,
                code=error.code,
                message=error.message,
                attempts=attempt,
                vendor_reset_at=reset_at,
            )
            return Decision(events + [copy], "retry_scheduled", fields)
        return self._dead_letter(
            delivery, error.code, error.message, attempt, events + list(failed_events)
        )

    def _vendor_wait_left(self, delivery: Delivery) -> float | None:
        """Seconds until the vendor reset this copy waits for, if it is still ahead."""
        reset_at = delivery.vendor_reset_at
        if reset_at is None or self.topology.longest_delay is None:
            return None
        left = reset_at - self.clock()
        return left if 0 < left <= MAX_VENDOR_WAIT else None

    def _park(self, delivery: Delivery, left: float) -> Decision:
        """Back to wait for the vendor's reset: no call, no attempt, no lock, no outcome."""
        queue = self.topology.retry_queue(self.topology.delay_lasting(left))
        fields = {
            "queue": queue,
            "waits": round(left, 3),
            "vendor_reset_at": _iso(delivery.vendor_reset_at),
            "attempts": delivery.attempts_before,
        }
        return Decision([parked_copy(delivery, queue=queue)], "retry_parked", fields)

    def _events(self, inbound: Inbound, outcomes: list[Outbound]) -> list[Publish]:
        source, event_id = inbound.envelope.key
        return [
            outcome_message(
                o,
                exchange=self.topology.events,
                cause_source=source,
                cause_id=event_id,
                source=self.source,
            )
            for o in outcomes
        ]

    def _dead_letter(self, delivery, code, message, attempts, events) -> Decision:
        copy = failure_copy(
            delivery,
            queue=self.topology.dead_letter,  # the routing key: the fanout ignores it
            exchange=self.topology.dead_letter_exchange,
            code=code,
            message=message,
            attempts=attempts,
        )
        return Decision(events + [copy], "dead_lettered", {"code": code, "attempts": attempts})


def _internal(exc: Exception, event_id: str | None) -> Transient:
    """The bus's view of a bug: the exception's type and where to look, never its text."""
    where = f"event {event_id}" if event_id else "this message"
    return Transient(
        FailureCode.INTERNAL_ERROR,
        f"{type(exc).__name__}: see the worker log for {where}"[:500],
    )


def _vendor_hint(errors: list[ProvisionerError]) -> float | None:
    """The wait the vendors asked for, capped: only when every retryable failure names one,
    and then the shortest (see the module docstring)."""
    hints = [getattr(e, "retry_after", None) for e in errors]
    if not hints or None in hints:
        return None
    return min(min(hints), MAX_VENDOR_WAIT)


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def _event_id(delivery: Delivery, parsed: Inbound | Unreadable) -> str | None:
    if isinstance(parsed, Inbound):
        return parsed.envelope.id
    return delivery.properties.message_id
