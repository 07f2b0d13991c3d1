"""``provisioner rules check``: validate a rules file and show what it decides.

It runs the file over a sample project (or ``--project``), so a change can be read before a
worker starts on it. A valid file is exit 0; tools it names without credentials here are
only noted: a plan reads the same on a laptop without any.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from handlers.rules import Plan, Rules, RulesError, load_rules
from schemas.errors import Unreadable
from schemas.inbound import Money, Offering, Project
from schemas.json_body import read_json
from worker.commands import output
from worker.commands.output import OK, settings_or_fail
from worker.commands.startup import disabled_tools

# Offerings chosen to exercise the globs of a typical file: names with common prefixes
# (Support*, Discovery*, *Audit*), several kinds, one without a kind, and two clients.
SAMPLE_PROJECTS = (
    {
        "id": "P-1001",
        "name": "Website Rebuild",
        "client": {"id": "C-77", "name": "Acme Corp"},
        "url": "https://app.hubspot.com/contacts/123/record/0-3/4711",
        "offerings": [
            {
                "id": "O-1",
                "name": "Discovery",
                "kind": "time_and_materials",
                "hourly_rate": {"amount": "150.00", "currency": "EUR"},
            },
            {
                "id": "O-2",
                "name": "Build",
                "kind": "fixed_bid",
                "price": {"amount": "12000.00", "currency": "EUR"},
            },
            {"id": "O-3", "name": "Support Retainer", "kind": "retainer"},
        ],
    },
    {
        "id": "P-1002",
        "name": "Data Platform",
        "client": {"id": "C-91", "name": "Globex Corporation"},
        "offerings": [
            {"id": "O-1", "name": "Migration", "kind": "fixed_bid"},
            {"id": "O-2", "name": "Security Audit"},
            {"id": "O-3", "name": "Onboarding Training", "kind": "training"},
        ],
    },
)


# What each tool has no project field for (issue 21), so a plan asking for it is shown with
# a note: the provisioning leaves it out with a warning. Harvest has every one.
NO_FIELD = {
    "toggl": ("code", "notes", "money_budget"),
    "clockify": ("code", "fixed_fee"),
}


def register(sub) -> None:
    rules = sub.add_parser("rules", help="check a rules file").add_subparsers(
        dest="rules_command", required=True
    )
    check = rules.add_parser("check", help="validate a rules file and say what it decides")
    check.add_argument("file", nargs="?", help="default: $PROVISIONER_RULES, else built-in")
    check.add_argument("--project", metavar="JSON_FILE", help="a project in the contract shape")
    check.add_argument("--json", action="store_true", help="one JSON object a line")
    check.set_defaults(func=cmd_rules_check)


# -- rules check --------------------------------------------------------------------------
class InvalidProject(ValueError):
    """The --project file is unreadable or not a project; one line a problem."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def cmd_rules_check(args: argparse.Namespace) -> int:
    settings = settings_or_fail()
    try:
        rules = load_rules(args.file or settings.rules)
        projects = [_read_project(args.project)] if args.project else _sample_projects()
    except (RulesError, InvalidProject) as exc:
        return output.problems(exc.problems)
    rows = [_plan_row(p, o, rules.plan_for(p, o)) for p in projects for o in p.offerings]
    if problems := _template_problems(rules, settings):
        return output.problems(problems)
    if args.json:
        output.json_lines(rows)
    else:
        _print_plans(rules, projects, rows)
    # Credentials are only reported: the file is valid whatever this shell holds, and a plan
    # reads the same on a laptop without any. The worker refuses it (exit 2) where they lack.
    for tool, unset in disabled_tools(rules, settings):
        print(
            f"note: {tool} is not enabled here ({unset} unset); "
            "a worker started with these settings would refuse this file",
            file=sys.stderr if args.json else sys.stdout,
        )
    return OK


def _template_problems(rules: Rules, settings) -> list[str]:
    """The rules' template projects, looked up in the tools that have credentials here."""
    if not rules.templates():
        return []
    from worker.bootstrap import build_tools, template_problems

    return template_problems(rules, build_tools(settings))


def _sample_projects() -> list[Project]:
    return [Project.model_validate(p) for p in SAMPLE_PROJECTS]


def _read_project(file: str) -> Project:
    try:
        raw = read_json(Path(file).read_bytes())
    except OSError as exc:
        raise InvalidProject([f"{file}: {exc.strerror}"]) from None
    except Unreadable as exc:
        raise InvalidProject([f"{file}: {exc.message}"]) from None
    if isinstance(raw, dict) and isinstance(raw.get("project"), dict):
        raw = raw["project"]  # the data of a deal.closed_won event reads as well
    try:
        return Project.model_validate(raw)
    except ValidationError as exc:
        raise InvalidProject(
            [f"{file}: {_dotted(e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)]
        ) from None


def _dotted(loc: Sequence) -> str:
    return ".".join(str(part) for part in loc) or "(root)"


def _plan_row(project: Project, offering: Offering, plan: Plan) -> dict:
    return {
        "project_id": project.id,
        "client": project.client.name,
        "offering_id": offering.id,
        "offering": offering.name,
        "kind": offering.kind,
        "tool": plan.tool,
        "provision_on": plan.provision_on,
        "name": plan.name,
        # Counted from 1, as in the error messages of load_rules.
        "rule": "defaults" if plan.rule is None else f"rules[{plan.rule + 1}]",
        "assign_team": plan.assign_team,
        "missing_member": plan.missing_member,
        "fixed_fee": _money(plan.fee) if plan.fee else plan.fixed_fee,
        "money_budget": _money(plan.money_budget),
        "hourly_rate": _money(plan.hourly_rate),
        "code": plan.code,
        "notes": plan.notes,
        "template": plan.template,
        "warnings": list(plan.warnings),
        "no_field": [f for f in NO_FIELD.get(plan.tool, ()) if _asks(plan, f)],
        "options": plan.options,
    }


def _money(money: Money | None) -> str | None:
    return f"{money.amount} {money.currency}" if money else None


def _asks(plan: Plan, name: str) -> bool:
    return {
        "code": plan.code,
        "notes": plan.notes,
        "money_budget": plan.money_budget,
        "fixed_fee": plan.fee,
        "hourly_rate": plan.hourly_rate,
    }[name] is not None


def _print_plans(rules: Rules, projects: list[Project], rows: list[dict]) -> None:
    entries = len(rules.spec.rules)
    print(f"{rules.source}: valid, {entries} rule{'s' if entries != 1 else ''}")
    columns = ("offering", "kind", "tool", "provision_on", "name", "rule")
    columns += ("assign_team", "missing_member", "fixed_fee", "money_budget", "hourly_rate")
    columns += ("code", "template")
    for project in projects:
        print(f"\nproject {project.id} {project.name!r}, client {project.client.name!r}")
        mine = [row for row in rows if row["project_id"] == project.id]
        output.table(columns, [[row[c] for c in columns] for row in mine], indent="  ")
        for row in mine:
            if row["notes"]:
                print(f"  {row['offering_id']} notes: {output.cell(row['notes'])}")
            for warning in row["warnings"]:
                print(f"  {row['offering_id']} warning: {warning}")
            if row["no_field"]:
                print(
                    f"  {row['offering_id']} note: {row['tool']} has no field for"
                    f" {', '.join(row['no_field'])}; left out there, with a warning"
                )
    options = {row["tool"]: row["options"] for row in rows}
    if options:
        print("\ntool tables")
    for tool, values in sorted(options.items()):
        shown = " ".join(f"{k}={output.cell(v)}" for k, v in values.items()) or "(none)"
        print(f"  [{tool}] {shown}")
    print("\ncrm stages (any other stage: nothing)")
    for line in rules.spec.crm.describe():
        print(line)
    for crm in ("hubspot", "pipedrive", "salesforce"):
        fields = rules.spec.crm.fields(crm).__dict__
        print(
            f"  [crm.{crm}.fields] " + " ".join(f"{k}={output.cell(v)}" for k, v in fields.items())
        )
