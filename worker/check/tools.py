"""Each timesheet tool: the token works, the account or workspace and its plan (what the plan
means for budgets, billable and money fields), its currency, and what the rules name there:
Harvest tasks (``[harvest] tasks``) and template projects. Team members come from each deal's
owner, not from the rules, so there is none to match here."""

from __future__ import annotations

from collections.abc import Callable

from handlers.ports import TimesheetTool
from handlers.rules import Rules
from schemas.errors import ProvisionerError
from worker.check.lines import Line, fail, ok, warn
from worker.check.probe import get, refused
from worker.settings import Settings

RULES = "PROVISIONER_RULES"


def check_tools(settings: Settings, rules: Rules) -> list[Line]:
    from worker.bootstrap import build_tools

    lines: list[Line] = []
    templates = rules.templates()
    for name, tool in build_tools(settings).items():
        try:
            account = ACCOUNT[name](settings, tool)
        except ProvisionerError as exc:
            lines.append(fail(name, f"cannot read the account: {exc.message}", "retry later"))
            continue
        lines += account
        if any(line.status == "FAIL" for line in account):
            continue  # nothing further can be read with these credentials
        if name == "harvest" and rules.spec.harvest.tasks:
            lines += _harvest_tasks(tool, rules.spec.harvest.tasks)
        for reference in sorted(templates.get(name, ())):
            lines.append(_template(name, tool, reference))
    return lines


def _harvest(settings: Settings, tool) -> list[Line]:
    answer = get(tool.http, "/company")
    if refused(answer):
        return [
            fail(
                "harvest",
                f"the token is refused ({answer.status_code})",
                "set HARVEST_ACCESS_TOKEN to a personal access token of id.getharvest.com/"
                "developers and HARVEST_ACCOUNT_ID to its account's id",
            )
        ]
    company = answer.json()
    plan = company.get("plan_type") or "unknown"
    return [
        ok("harvest", f"account {company.get('name') or '?'} ({company.get('base_uri')})"),
        ok(
            "harvest",
            f"plan {plan}: hour and money budgets, billable tasks, fees and rates are all set; "
            "money goes in each client's currency, never converted",
        ),
    ]


def _toggl(settings: Settings, tool) -> list[Line]:
    answer = get(tool.http, f"/workspaces/{settings.toggl_workspace_id}")
    if answer.status_code in (401, 403):
        return [
            fail(
                "toggl",
                f"the token is refused ({answer.status_code})",
                "set TOGGL_API_TOKEN to the API token of a member of the workspace (Profile "
                "settings)",
            )
        ]
    if answer.status_code == 404:
        return [fail("toggl", "no such workspace", "set TOGGL_WORKSPACE_ID to its id")]
    workspace = answer.json()
    currency = workspace.get("default_currency") or "unknown"
    lines = [ok("toggl", f"workspace {workspace.get('name') or '?'}, currency {currency}")]
    if workspace.get("premium"):
        lines.append(
            ok(
                "toggl",
                "paid plan: estimated hours, billable, fixed fee, rate and tasks are set "
                f"(money in {currency} only)",
            )
        )
    else:
        lines.append(
            warn(
                "toggl",
                "free plan: estimated hours (budgets), billable, fixed fee, rate and tasks "
                "are left out of every project, with a warning",
                "upgrade the workspace to set them",
            )
        )
    return lines


def _clockify(settings: Settings, tool) -> list[Line]:
    answer = get(tool.http, f"/workspaces/{settings.clockify_workspace_id}")
    if answer.status_code == 401:
        return [
            fail(
                "clockify",
                "the API key is refused (401)",
                "set CLOCKIFY_API_KEY to a key of Profile settings > API",
            )
        ]
    if answer.status_code in (403, 404):
        return [
            fail(
                "clockify",
                f"the workspace is not this key's ({answer.status_code})",
                "set CLOCKIFY_WORKSPACE_ID to a workspace the key's user belongs to",
            )
        ]
    workspace = answer.json()
    default = [c.get("code") for c in workspace.get("currencies") or [] if c.get("isDefault")]
    currency = default[0] if default else "unknown"
    lines = [ok("clockify", f"workspace {workspace.get('name') or '?'}, currency {currency}")]
    paid = str(workspace.get("featureSubscriptionType") or "FREE").upper() != "FREE"
    if paid != (settings.clockify_plan == "paid"):
        actual = "paid" if paid else "free"
        lines.append(
            fail(
                "clockify",
                f"the workspace is on a {actual} plan, CLOCKIFY_PLAN says {settings.clockify_plan}"
                " (it sets the pacing and what is sent)",
                f"set CLOCKIFY_PLAN={actual}",
            )
        )
    elif paid:
        lines.append(ok("clockify", "paid plan: estimates (budgets), billable and rates are set"))
    else:
        lines.append(
            warn(
                "clockify",
                "free plan: no estimates (budgets); 30 requests an hour",
                "upgrade the workspace for budgets and a faster pace",
            )
        )
    return lines


ACCOUNT: dict[str, Callable[[Settings, TimesheetTool], list[Line]]] = {
    "harvest": _harvest,
    "toggl": _toggl,
    "clockify": _clockify,
}


def _harvest_tasks(tool, names: list[str]) -> list[Line]:
    try:
        tasks = list(tool.http.pages("/tasks", "tasks"))
    except ProvisionerError as exc:
        return [fail("harvest", f"cannot list the tasks: {exc.message}", "retry later")]
    active = {t["name"].casefold() for t in tasks if t.get("is_active")}
    archived = {t["name"].casefold() for t in tasks if not t.get("is_active")}
    lines = []
    for name in names:
        folded = name.casefold()
        if folded in active:
            lines.append(ok("harvest", f"task {name!r} ([harvest] tasks) exists"))
        elif folded in archived:
            lines.append(
                fail(
                    "harvest",
                    f"task {name!r} ([harvest] tasks in {RULES}) is archived",
                    "restore it in Harvest or remove it from [harvest] tasks",
                )
            )
        else:
            lines.append(
                fail(
                    "harvest",
                    f"task {name!r} ([harvest] tasks in {RULES}) does not exist",
                    "create it in Harvest (Manage > Tasks) or remove it from [harvest] tasks",
                )
            )
    return lines


def _template(name: str, tool, reference: str) -> Line:
    try:
        project = tool.get_project(tool.parse_reference(reference))
    except ProvisionerError as exc:
        return fail(
            name,
            f"template {reference!r} ({RULES} template): {exc.message}",
            "name an existing project of this tool, by id or URL, in the rules' template",
        )
    return ok(name, f"template {reference!r} exists ({getattr(project, 'name', '') or 'project'})")
