"""What happens to one offering: provision, connect, archive, restore.

Each function is the work of one step (see ``handlers.run``): it talks to the tool through
the port and returns the outcome events plus the link to store with them.
"""

from __future__ import annotations

from dataclasses import replace

from handlers.clients import resolve_client
from handlers.ports import (
    ClientMapping,
    Link,
    ProjectSpec,
    ProjectStore,
    SetupReport,
    TimesheetTool,
)
from handlers.rules import Plan
from handlers.run import Deps, StepResult
from schemas.errors import FailureCode, InvalidReference, Permanent
from schemas.inbound import Offering, Project, Tool
from schemas.outbound import (
    TimesheetArchived,
    TimesheetConnected,
    TimesheetProvisioned,
    TimesheetRestored,
    TimesheetSkipped,
)


def marker_for(project: Project, offering: Offering) -> str:
    """What identifies an offering inside the tool (Harvest ``code``, Clockify ``note``)."""
    return f"{project.id}/{offering.id}"


def team_of(offering: Offering, plan: Plan, tool: TimesheetTool) -> tuple[dict[str, str], list]:
    """(users found by e-mail, e-mails missing in the tool), honouring ``missing_member``."""
    if not plan.assign_team or not offering.team:
        return {}, []
    emails = list(dict.fromkeys(m.email.lower() for m in offering.team))
    users = tool.find_users(emails)
    missing = [e for e in emails if e not in users]
    if missing and plan.missing_member == "fail":
        raise Permanent(
            FailureCode.TEAM_MEMBER_MISSING,
            f'not in {tool.name}: {", ".join(missing)} (rule says missing_member = "fail")',
        )
    return users, missing


def provision(project: Project, offering: Offering, plan: Plan, deps: Deps) -> StepResult:
    """Makes the offering's project in the tool; every trigger (Closed Won, In Progress,
    Provision New) comes through here, so this is the one place that refuses an offering
    already linked (provisioned or connected, archived or not): its link stays as it is."""
    if deps.store.link(project.id, offering.id) is not None:
        return skipped(project, offering, "already_linked")
    tool = deps.tool(plan.tool)
    money = offering.price or offering.hourly_rate
    client_id = resolve_client(project.client, tool, deps.store, money and money.currency)
    users, missing = team_of(offering, plan, tool)
    marker = marker_for(project, offering)
    template, template_warnings = _template(plan, tool)
    # Committed before the create: if we die after the tool answers but before our commit,
    # the next attempt knows to look for what it may have made instead of making another.
    spec = ProjectSpec(
        client_id=client_id,
        name=plan.name,
        marker=marker,
        budget_hours=offering.budget_hours,
        billable=offering.billable,
        starts_on=offering.starts_on,
        ends_on=offering.ends_on,
        has_team=bool(users),
        options=plan.options,
        team_hours={
            users[m.email.lower()]: m.hours
            for m in offering.team
            if m.hours is not None and m.email.lower() in users
        },
        fixed_fee=plan.fee,
        money_budget=plan.money_budget,
        hourly_rate=plan.hourly_rate,
        code=plan.code,
        notes=plan.notes,
        template=template,
    )
    resumed = deps.store.note_provision_started(project.id, offering.id, tool.name)
    # On disk before the create, not only before the ack: after a power cut the next attempt
    # must still know to look for what this one may have made.
    deps.store.make_durable()
    adopted = None
    if resumed:
        since = deps.store.provision_started_at(project.id, offering.id, tool.name)
        adopted = tool.find_project(client_id, marker, plan.name, since)
    made = adopted or tool.create_project(spec)
    if users:
        tool.assign_team(made.id, list(users.values()))
    # After the team: Harvest's per-person budgets go on the team's user assignments.
    report = tool.complete_setup(made.id, spec) or SetupReport()
    link = Link(project.id, offering.id, tool.name, made.id, made.url, client_id)
    event = TimesheetProvisioned(
        **_linked(link, users, missing),
        # What the tool holds: null when its plan has no estimates (the warnings say why).
        budget_hours=offering.budget_hours if report.budget_set else None,
        created=adopted is None,
        warnings=[*plan.warnings, *template_warnings, *report.warnings],
        **commercial_outcome(spec, report),
    )
    return StepResult([event], link)


def _template(plan: Plan, tool: TimesheetTool) -> tuple[str | None, list[str]]:
    """The template project's id in the tool. The rules name it for the tool they choose;
    a person who asked for another tool gets the project without it, and a warning."""
    if plan.template is None:
        return None, []
    try:
        return tool.parse_reference(plan.template), []
    except InvalidReference:
        return None, [f"template {plan.template!r} is not a {tool.name} project; not copied"]


def commercial_outcome(spec: ProjectSpec, report: SetupReport) -> dict:
    """What the outcome says of the commercial shape: the spec's, less what the tool
    project did not get (null there, and the report's warnings say why)."""

    def kept(name: str, value):
        return None if name in report.left_out else value

    fee = kept("fixed_fee", spec.fixed_fee)
    return dict(
        fixed_fee=fee is not None,
        fee=fee,
        money_budget=kept("money_budget", spec.money_budget),
        hourly_rate=kept("hourly_rate", spec.hourly_rate),
        code=kept("code", spec.code),
    )


def connect(
    project: Project, offering: Offering, plan: Plan, reference: str, deps: Deps
) -> StepResult:
    tool = deps.tool(plan.tool)
    project_id = tool.parse_reference(reference)
    existing = deps.store.link(project.id, offering.id)
    if existing and (existing.tool, existing.timesheet_project_id) != (tool.name, project_id):
        raise Permanent(
            FailureCode.ALREADY_LINKED,
            f"offering {offering.id} is already linked to {existing.tool} project "
            f"{existing.timesheet_project_id}",
        )
    found = tool.get_project(project_id)
    client_id = found.client_id or ""
    if client_id:
        _check_client(project, tool.name, client_id, deps.store)
    users, missing = team_of(offering, plan, tool)
    if users:
        tool.assign_team(found.id, list(users.values()))
    link = Link(project.id, offering.id, tool.name, found.id, found.url, client_id, found.archived)
    # What the existing project holds, as the tool reads it back: nothing is changed there.
    shape = dict(
        fixed_fee=found.fixed_fee,
        fee=found.fee,
        money_budget=found.money_budget,
        hourly_rate=found.hourly_rate,
        code=found.code,
    )
    return StepResult([TimesheetConnected(**_linked(link, users, missing), **shape)], link)


def _check_client(project: Project, tool: Tool, tool_client_id: str, store: ProjectStore) -> None:
    # Under the lock that client resolution takes, so a project of this client being
    # provisioned meanwhile cannot map it to another tool client between our read and write.
    with store.client_lock(tool, project.client.name):
        _check_mapping(project, tool, tool_client_id, store)


def _check_mapping(project: Project, tool: Tool, tool_client_id: str, store: ProjectStore) -> None:
    holder = store.crm_client(tool, tool_client_id)
    mapped = store.tool_client(tool, project.client.id)
    if holder not in (None, project.client.id) or mapped not in (None, tool_client_id):
        raise Permanent(
            FailureCode.CLIENT_MISMATCH,
            f"{tool} project's client {tool_client_id} is mapped to CRM client "
            f"{holder or '(none)'}, but project {project.id} belongs to CRM client "
            f"{project.client.id} (mapped to {tool} client {mapped or '(none)'})",
        )
    if holder is None:  # first sight of this client: the link teaches us the mapping
        store.map_client(
            ClientMapping(tool, project.client.id, tool_client_id, project.client.name)
        )


def archive(link: Link, deps: Deps) -> StepResult:
    _set_archived(link, True, deps)
    return StepResult([TimesheetArchived(**_ids(link))], replace(link, archived=True))


def restore(link: Link, deps: Deps) -> StepResult:
    _set_archived(link, False, deps)
    return StepResult([TimesheetRestored(**_ids(link))], replace(link, archived=False))


def _set_archived(link: Link, archived: bool, deps: Deps) -> None:
    """The intent is stored (and on disk) before the tool is asked: a worker killed after
    the tool's answer and before the step is recorded leaves the link unsettled, and the
    next status change, whichever it is, does it again. Without it, a newer In Progress
    would see a link still marked active over a project the tool has archived."""
    deps.store.note_archive_intent(link.project_id, link.offering_id, archived)
    deps.store.make_durable()
    deps.tool(link.tool).set_archived(link.timesheet_project_id, archived)


def skipped(project: Project, offering: Offering, reason: str) -> StepResult:
    return StepResult(
        [TimesheetSkipped(project_id=project.id, offering_id=offering.id, reason=reason)]
    )


def _ids(link: Link) -> dict:
    return dict(
        project_id=link.project_id,
        offering_id=link.offering_id,
        tool=link.tool,
        timesheet_project_id=link.timesheet_project_id,
    )


def _linked(link: Link, users: dict[str, str], missing: list[str]) -> dict:
    return dict(
        _ids(link),
        timesheet_url=link.timesheet_url,
        timesheet_client_id=link.timesheet_client_id,
        team_assigned=sorted(users),
        team_missing=missing,
    )
