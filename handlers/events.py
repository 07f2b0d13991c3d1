"""One function per inbound event type of the contract; the routing table is in
``handlers.dispatch``.

Each handler loads, decides and hands every per-offering piece of work to ``Run.step``.
"""

from __future__ import annotations

from datetime import datetime

from handlers import offerings
from handlers.ports import ProjectState
from handlers.run import Deps, Run, StepResult
from schemas.errors import FailureCode, Permanent, Transient
from schemas.inbound import (
    ConnectRequested,
    DealClosedWon,
    Offering,
    Project,
    ProjectStatusChanged,
    ProvisionRequested,
)
from schemas.outbound import ProjectActivated


def active_project(deps: Deps, project_id: str) -> ProjectState:
    state = deps.store.project(project_id)
    if state is None or not state.active:
        # The Closed Won event may still be on its way: worth another try later.
        raise Transient(FailureCode.PROJECT_NOT_ACTIVE, f"no Closed Won seen for {project_id}")
    return state


def offering_of(project: Project, offering_id: str) -> Offering:
    found = project.offering(offering_id)
    if found is None:
        raise Permanent(
            FailureCode.UNKNOWN_OFFERING, f"project {project.id} has no offering {offering_id}"
        )
    return found


def on_closed_won(data: DealClosedWon, at: datetime, run: Run, deps: Deps) -> None:
    project = deps.store.save_snapshot(data.project, at, activate=True).project  # newest wins
    ids = [o.id for o in project.offerings]
    run.step(
        "activate",
        lambda: StepResult([ProjectActivated(project_id=project.id, offering_ids=ids)]),
        project_id=project.id,
    )
    for offering in project.offerings:
        plan = deps.rules.plan_for(project, offering)
        if plan.provision_on == "closed_won" and offering.sold:
            run.step(
                f"offering:{offering.id}",
                lambda o=offering, p=plan: offerings.provision(project, o, p, deps),
                project_id=project.id,
                offering_id=offering.id,
                tool=plan.tool,
            )


def on_status_changed(data: ProjectStatusChanged, at: datetime, run: Run, deps: Deps) -> None:
    active_project(deps, data.project_id)
    if data.project is not None:
        deps.store.save_snapshot(data.project, at)
    if not deps.store.set_status(data.project_id, data.status, at):
        return  # a newer status is already stored: this one must not undo it
    project = deps.store.project(data.project_id).project
    if data.status == "in_progress":
        for offering in project.offerings:
            run.step(
                f"offering:{offering.id}",
                lambda o=offering: _start(project, o, data.selection, deps),
                project_id=project.id,
                offering_id=offering.id,
            )
    elif data.status in ("on_hold", "completed"):
        for link in deps.store.links(project.id):
            if not link.archived:
                run.step(
                    f"archive:{link.offering_id}",
                    lambda lk=link: offerings.archive(lk, deps),
                    project_id=project.id,
                    offering_id=link.offering_id,
                    tool=link.tool,
                )


def _start(project: Project, offering: Offering, selection: dict, deps: Deps) -> StepResult:
    """In Progress, for one offering: restore, skip, or provision."""
    link = deps.store.link(project.id, offering.id)
    if link is not None:
        if link.archived:
            return offerings.restore(link, deps)
        return offerings.skipped(project, offering, "already_linked")
    if not offering.sold:
        return offerings.skipped(project, offering, "not_sold")
    if selection.get(offering.id) is False:
        return offerings.skipped(project, offering, "opted_out")
    plan = deps.rules.plan_for(project, offering)
    if plan.provision_on == "manual":
        return offerings.skipped(project, offering, "manual_only")
    return offerings.provision(project, offering, plan, deps)


def on_provision_requested(data: ProvisionRequested, at: datetime, run: Run, deps: Deps) -> None:
    project = active_project(deps, data.project_id).project

    def work() -> StepResult:
        offering = offering_of(project, data.offering_id)
        plan = deps.rules.plan_for(project, offering, tool=data.tool)
        return offerings.provision(project, offering, plan, deps)  # skips a linked one

    run.step(
        f"offering:{data.offering_id}",
        work,
        project_id=project.id,
        offering_id=data.offering_id,
        tool=data.tool,
    )


def on_connect_requested(data: ConnectRequested, at: datetime, run: Run, deps: Deps) -> None:
    project = active_project(deps, data.project_id).project

    def work() -> StepResult:
        offering = offering_of(project, data.offering_id)
        plan = deps.rules.plan_for(project, offering, tool=data.tool)
        return offerings.connect(project, offering, plan, data.timesheet_project, deps)

    run.step(
        f"connect:{data.offering_id}",
        work,
        project_id=project.id,
        offering_id=data.offering_id,
        tool=data.tool,
    )
