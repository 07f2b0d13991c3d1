"""The routing table, inbound type -> handler, and ``handle``: the single entry the worker
calls."""

from __future__ import annotations

from collections.abc import Callable

from handlers.crm import on_deal_changed
from handlers.events import (
    on_closed_won,
    on_connect_requested,
    on_provision_requested,
    on_status_changed,
)
from handlers.ports import Journal
from handlers.run import Deps, Run, StepFailure
from schemas.crm import CrmDealChanged
from schemas.errors import ProvisionerError
from schemas.inbound import (
    ConnectRequested,
    DealClosedWon,
    Inbound,
    ProjectStatusChanged,
    ProvisionRequested,
)

Handler = Callable[..., None]

HANDLERS: dict[type, Handler] = {
    DealClosedWon: on_closed_won,
    ProjectStatusChanged: on_status_changed,
    ProvisionRequested: on_provision_requested,
    ConnectRequested: on_connect_requested,
    CrmDealChanged: on_deal_changed,
}


def handle(
    message: Inbound,
    deps: Deps,
    attempt: int,
    journal: Journal | None = None,
    *,
    received_at: float | None = None,
) -> Run:
    """Runs the event's handler; failures that need routing are in ``run.failures``."""
    run = Run(message.envelope.key, deps.store, attempt, journal or Journal())
    run.received_at = received_at
    try:
        HANDLERS[type(message.data)](message.data, message.envelope.time, run, deps)
    except ProvisionerError as exc:  # a failure of the whole event, such as project_not_active
        run.failures.append(
            StepFailure(
                exc,
                message.project_id,
                getattr(message.data, "offering_id", None),
                getattr(message.data, "tool", None),
            )
        )
    return run
