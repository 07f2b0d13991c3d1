"""``crm.deal_changed``: read the deal, decide from its stage, then do what the matching
inbound event does (``handlers.events``).

The webhook is only a signal: the deal's state when read decides, never what the webhook
said. So a late, repeated or shuffled notification reads the same current deal and finds
nothing new to do; a project is never moved back by one. The decisions, in order:

| deal read as              | project                 | does                                  |
|---------------------------|-------------------------|---------------------------------------|
| a stage mapped to nothing | any                     | nothing (noted ``stage_unmapped``)    |
| any mapped stage          | not active              | activates it first (``on_closed_won``) |
| ``closed_won``            | active                  | refreshes the snapshot only           |
| a status                  | active, in that status  | refreshes the snapshot only           |
| a status                  | active, in another one  | ``on_status_changed`` to it            |

Each decision is recorded before it is acted on (``Run.decide``), so an attempt cut short
after activating or storing the status is finished by the next attempt, unless the deal has
moved on meanwhile: a status decided earlier is continued only while the deal still reads
in it; the event of the newer stage does the rest.
"""

from __future__ import annotations

from datetime import datetime

from handlers.events import on_closed_won, on_status_changed
from handlers.ports import DealSnapshot
from handlers.run import Deps, Run
from schemas.crm import CrmDealChanged
from schemas.errors import FailureCode, Permanent, VendorAuth
from schemas.inbound import DealClosedWon, ProjectStatusChanged

ACTIVATE = "crm:activate"


def read_deal(data: CrmDealChanged, run: Run, deps: Deps) -> DealSnapshot:
    if deps.deals is None:
        raise VendorAuth(f"{data.crm} is not enabled: its API credentials are not set")
    return deps.deals.read(data.crm, data.deal_id, received_at=run.received_at)


def on_deal_changed(data: CrmDealChanged, at: datetime, run: Run, deps: Deps) -> None:
    deal = read_deal(data, run, deps)
    transition = deps.rules.spec.crm.transition(data.crm, deal.stage)
    if transition is None:
        run.note = "stage_unmapped"
        run.details = {"crm": data.crm, "deal_id": data.deal_id, "stage": deal.stage.stage}
        run.details.update(stage_label=deal.stage.label, lost=str(deal.stage.lost).lower())
        return
    project = deal.project
    if project is None:
        raise Permanent(
            FailureCode.VENDOR_REJECTED,
            f"{data.crm} deal {data.deal_id} cannot become a project: {deal.problem}",
        )
    state = deps.store.project(project.id)
    if run.decided(ACTIVATE) or state is None or not state.active:
        run.decide(ACTIVATE)
        run.prefix = "closed_won:"
        on_closed_won(DealClosedWon(project=project), deal.read_at, run, deps)
    else:
        deps.store.save_snapshot(project, deal.read_at)  # newer details; nothing moves
        run.note = "already_applied"
    run.prefix = ""
    if transition == "closed_won":
        return
    decision = f"crm:{transition}"
    state = deps.store.project(project.id)
    if not run.decided(decision) and state.status == transition:
        return
    run.note = None
    run.decide(decision)
    run.prefix = f"{transition}:"
    change = ProjectStatusChanged(project_id=project.id, status=transition, project=project)
    on_status_changed(change, deal.read_at, run, deps)
    run.prefix = ""
