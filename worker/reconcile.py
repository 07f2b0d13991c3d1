"""The sweep behind ``provisioner crm reconcile``: what a CRM's webhooks should have told,
read back from the CRM and put on ``NS.inbound`` as the ingress would have.

One sweep is one CRM account over one window ``[since, until)``: the deals it lists as
changed, those whose stage means something to the rules (won, or in the stage map), one
``crm.deal_changed`` each, built by the very function the ingress uses
(``worker.ingress.deal_events.deal_changed``). The worker then reads each deal as for a
webhook, so a deal's project is the same whichever path brought it.

An event's id is ``sweep-{deal id}-{modification time in epoch ms}``: the same deal and
change give the same id on every run, so sweeps over overlapping windows cost nothing but
the reads, and the worker gives a repeated one no second effect. A webhook's id differs
(the CRM's own), so a change both heard and swept is read twice; its effects still happen
once, the handlers being idempotent per deal.

Without ``--since``, a sweep starts where the account's last successful sweep ended, less
``OVERLAP``, and the end is stored only once every event of the sweep was confirmed by the
broker: a sweep cut short is done again, never skipped. ``sweep_crm`` sweeps one CRM and
returns its counts, so that a scheduler (``worker.reconcile_schedule``) can call it as the
command does, and cut it short between two deals (``abandon``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pika

from adapters.store import SqlStore
from handlers.ports import CrmSweep, DealChange
from handlers.rules import Rules
from schemas.crm import rfc3339
from worker.ingress.deal_events import Outgoing, deal_changed
from worker.ingress.refusals import Malformed
from worker.topology import Topology, connection_parameters

# The CRM stamps a change when it commits it, and its search index shows it seconds later:
# a change stamped just before the last sweep's end may have been invisible to it. The
# deterministic ids make the overlap free.
OVERLAP = timedelta(minutes=2)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Publish = Callable[[Outgoing], None]


class SweepAbandoned(Exception):
    """The sweep was told to stop before its end: nothing more published, no cursor stored."""


def sweep_event_id(deal_id: str, modified_at: datetime) -> str:
    """The same for the same deal and modification time, whichever sweep finds it."""
    return f"sweep-{deal_id}-{(modified_at.astimezone(UTC) - EPOCH) // timedelta(milliseconds=1)}"


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime


def window_for(
    *, now: datetime, cursor: datetime | None, lookback: timedelta, since: datetime | None
) -> Window:
    """``--since`` if given; else from the stored cursor, less the overlap; else the
    lookback of a first sweep. It always ends now."""
    if since is not None:
        return Window(since, now)
    if cursor is not None:
        return Window(min(cursor - OVERLAP, now), now)
    return Window(now - lookback, now)


@dataclass(frozen=True)
class Planned:
    """One event a sweep publishes (or, in a dry run, would)."""

    deal_id: str
    event_id: str
    modified_at: datetime
    stage: str | None


@dataclass
class Sweep:
    """What one sweep of one CRM account found and did."""

    crm: str
    account: str
    window: Window
    dry_run: bool
    examined: int = 0
    published: int = 0
    skipped: int = 0
    planned: list[Planned] = field(default_factory=list)  # dry run only
    problems: list[str] = field(default_factory=list)  # deals the worker could not take


def matters(rules: Rules, crm: str, change: DealChange) -> bool:
    """The stage means something to the rules: won, or mapped in the rules file."""
    return rules.spec.crm.transition(crm, change.stage) is not None


def sweep_crm(
    crm: str,
    reader: CrmSweep,
    *,
    rules: Rules,
    store: SqlStore,
    publish: Publish | None,
    now: datetime,
    lookback: timedelta,
    since: datetime | None = None,
    abandon: Callable[[], bool] | None = None,
) -> Sweep:
    """Sweeps one CRM account; ``publish`` None is a dry run (nothing published, no cursor
    stored). Raises the reader's ``schemas.errors``, the publisher's pika errors, and
    ``SweepAbandoned`` once ``abandon()`` says so (asked before each deal); the cursor then
    stays where it was."""
    account = reader.account_id()
    cursor = None if since is not None else store.sweep_cursor(crm, account)
    window = window_for(now=now, cursor=cursor, lookback=lookback, since=since)
    result = Sweep(crm, account, window, dry_run=publish is None)
    for change in reader.changed_deals(window.since, window.until):
        if abandon is not None and abandon():
            raise SweepAbandoned(f"{crm}: stopped after {result.examined} deals")
        result.examined += 1
        if not matters(rules, crm, change):
            result.skipped += 1
            continue
        event_id = sweep_event_id(change.deal_id, change.modified_at)
        try:
            event = deal_changed(
                crm=crm,
                account=account,
                event_id=event_id,
                deal_id=change.deal_id,
                occurred_at=change.modified_at,
                change={"sweep": True, "modified_at": rfc3339(change.modified_at)},
            )
        except Malformed as exc:
            result.skipped += 1
            result.problems.append(str(exc))
            continue
        if publish is None:
            planned = Planned(change.deal_id, event_id, change.modified_at, change.stage.stage)
            result.planned.append(planned)
            continue
        publish(event)
        result.published += 1
    if publish is not None:
        store.save_sweep_cursor(crm, account, window.until)
    return result


class ConfirmedPublisher:
    """Publishes to ``NS.inbound`` on one channel in confirm mode: each publish returns once
    the broker has the message (pika raises on a nack or an unroutable one)."""

    def __init__(self, amqp_url: str, topology: Topology):
        self.topology = topology
        self.connection = pika.BlockingConnection(connection_parameters(amqp_url))
        self.channel = self.connection.channel()
        topology.declare(self.channel)
        self.channel.confirm_delivery()

    def __call__(self, event: Outgoing) -> None:
        self.channel.basic_publish(
            self.topology.inbound,
            event.routing_key,
            event.body,
            event.properties,
            mandatory=True,
        )

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()
