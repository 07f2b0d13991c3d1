"""``provisioner rules`` and ``provisioner clients``: checks and fixes a person runs.

``rules check`` validates a rules file and shows what it decides for a sample project, so a
change can be read before a worker starts on it. ``clients`` shows and corrects the CRM ↔
tool client map; it is how a person resolves ``client_ambiguous``.

Nothing here may print a database URL as given: it can hold a password.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import ValidationError

from handlers.ports import ClientMapping
from handlers.rules import Plan, Rules, RulesError, load_rules
from schemas.errors import Unreadable
from schemas.inbound import TOOLS, Offering, Project
from schemas.json_body import read_json
from worker.cli import FAILED, OK, USAGE, Fail, settings_or_fail

# Offerings chosen to exercise the globs of a typical file: names with common prefixes
# (Support*, Discovery*, *Audit*), several kinds, one without a kind, and two clients.
SAMPLE_PROJECTS = (
    {
        "id": "P-1001",
        "name": "Website Rebuild",
        "client": {"id": "C-77", "name": "Acme Corp"},
        "offerings": [
            {"id": "O-1", "name": "Discovery", "kind": "time_and_materials"},
            {"id": "O-2", "name": "Build", "kind": "fixed_bid"},
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

CLIENTS_EPILOG = """\
client_ambiguous (two CRM clients claim one tool client) is resolved by a person: map the
duplicate CRM client to another tool client (clients map), or remove its mapping (clients
unmap); then replay the dead letter (provisioner dlq replay ID)."""


def register(sub) -> None:
    rules = sub.add_parser("rules", help="check a rules file").add_subparsers(
        dest="rules_command", required=True
    )
    check = rules.add_parser("check", help="validate a rules file and say what it decides")
    check.add_argument("file", nargs="?", help="default: $PROVISIONER_RULES, else built-in")
    check.add_argument("--project", metavar="JSON_FILE", help="a project in the contract shape")
    check.add_argument("--json", action="store_true", help="one JSON object a line")
    check.set_defaults(func=cmd_rules_check)

    clients = sub.add_parser(
        "clients", help="the CRM ↔ tool client map", epilog=CLIENTS_EPILOG
    ).add_subparsers(dest="clients_command", required=True)
    listing = clients.add_parser("list", help="every mapping")
    listing.add_argument("--tool", choices=TOOLS)
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    listing.set_defaults(func=cmd_clients_list)
    mapping = clients.add_parser("map", help="map a CRM client to a tool client, replacing")
    mapping.add_argument("--tool", choices=TOOLS, required=True)
    mapping.add_argument("--crm", metavar="CRM_ID", required=True)
    mapping.add_argument("--tool-client", metavar="TOOL_CLIENT_ID", required=True)
    mapping.add_argument("--name", help="the CRM client's name (default: the one on record)")
    mapping.set_defaults(func=cmd_clients_map)
    unmap = clients.add_parser("unmap", help="remove a CRM client's mapping")
    unmap.add_argument("--tool", choices=TOOLS, required=True)
    unmap.add_argument("--crm", metavar="CRM_ID", required=True)
    unmap.set_defaults(func=cmd_clients_unmap)


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
        return _problems(exc.problems)
    rows = [_plan_row(p, o, rules.plan_for(p, o)) for p in projects for o in p.offerings]
    if args.json:
        _print_json(rows)
    else:
        _print_plans(rules, projects, rows)
    # Credentials are checked last, so that the plan can be read on a laptop without any.
    try:
        rules.check_tools(settings.enabled_tools())
    except RulesError as exc:
        return _problems(exc.problems)
    return OK


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
        "options": plan.options,
    }


def _print_plans(rules: Rules, projects: list[Project], rows: list[dict]) -> None:
    entries = len(rules.spec.rules)
    print(f"{rules.source}: valid, {entries} rule{'s' if entries != 1 else ''}")
    columns = ("offering", "kind", "tool", "provision_on", "name", "rule")
    columns += ("assign_team", "missing_member")
    for project in projects:
        print(f"\nproject {project.id} {project.name!r}, client {project.client.name!r}")
        mine = [row for row in rows if row["project_id"] == project.id]
        for line in _table(columns, [[_cell(row[c]) for c in columns] for row in mine]):
            print(f"  {line}")
    options = {row["tool"]: row["options"] for row in rows}
    if options:
        print("\ntool tables")
    for tool, values in sorted(options.items()):
        shown = " ".join(f"{k}={_cell(v)}" for k, v in values.items()) or "(none)"
        print(f"  [{tool}] {shown}")
    print("\ncrm stages (any other stage: nothing)")
    for line in rules.spec.crm.describe():
        print(line)
    for crm in ("hubspot", "pipedrive", "salesforce"):
        fields = rules.spec.crm.fields(crm).__dict__
        print(f"  [crm.{crm}.fields] " + " ".join(f"{k}={_cell(v)}" for k, v in fields.items()))


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(value) or "-"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Iterable[str]:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        yield "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()


def _print_json(rows: Iterable[dict]) -> None:
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))


def _problems(lines: Iterable[str]) -> int:
    for line in lines:
        print(f"provisioner: {line}", file=sys.stderr)
    return USAGE


# -- clients ------------------------------------------------------------------------------
@contextlib.contextmanager
def _store():
    """The state store of PROVISIONER_DATABASE_URL; a driver error becomes a one-line Fail."""
    from adapters.sql import DRIVER_ERRORS
    from adapters.store import SqlStore

    url = settings_or_fail().database_url
    store = None
    try:
        store = SqlStore.from_url(url)
        yield store
    except DRIVER_ERRORS as exc:
        raise Fail(f"state store: {_without_secrets(exc, url)}") from None
    finally:
        if store is not None:
            store.close()


def _without_secrets(exc: Exception, url: str) -> str:
    """The driver's first line and the URL without its password, which it may carry."""
    from urllib.parse import urlsplit

    from adapters.sql import without_password

    detail = (str(exc).splitlines() or [""])[0]
    for secret in (url, urlsplit(url).password):
        if secret:
            detail = detail.replace(str(secret), "***")
    return f"{type(exc).__name__} at {without_password(url)}: {detail}"


def _mapping_line(m: ClientMapping) -> str:
    name = f" ({m.crm_client_name})" if m.crm_client_name else ""
    return f"{m.tool} CRM client {m.crm_client_id}{name} -> {m.tool} client {m.tool_client_id}"


def cmd_clients_list(args: argparse.Namespace) -> int:
    with _store() as store:
        mappings = store.client_mappings(args.tool)
    if args.json:
        _print_json(m.__dict__ for m in mappings)
        return OK
    if not mappings:
        print("no client mappings")
        return OK
    columns = ("tool", "crm_client_id", "crm_client_name", "tool_client_id")
    cells = [[_cell(getattr(m, c)) for c in columns] for m in mappings]
    for line in _table(columns, cells):
        print(line)
    return OK


def cmd_clients_map(args: argparse.Namespace) -> int:
    with _store() as store:
        # Read before writing, to say what the decision replaced.
        replaced = [
            m
            for m in store.client_mappings(args.tool)
            if args.crm == m.crm_client_id or args.tool_client == m.tool_client_id
        ]
        name = args.name or next(
            (m.crm_client_name for m in replaced if m.crm_client_id == args.crm), None
        )
        mapping = ClientMapping(args.tool, args.crm, args.tool_client, name)
        store.remap_client(mapping)
    if mapping in replaced:
        print(f"unchanged: {_mapping_line(mapping)}")
        return OK
    print(f"mapped: {_mapping_line(mapping)}")
    for old in replaced:
        print(f"replaced: {_mapping_line(old)}")
    return OK


def cmd_clients_unmap(args: argparse.Namespace) -> int:
    with _store() as store:
        old = [m for m in store.client_mappings(args.tool) if m.crm_client_id == args.crm]
        removed = store.unmap_client(args.tool, args.crm)
    if not removed:
        raise Fail(f"no {args.tool} mapping for CRM client {args.crm}", FAILED)
    for m in old:
        print(f"unmapped: {_mapping_line(m)}")
    return OK
