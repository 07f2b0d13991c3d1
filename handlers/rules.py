"""The rules file: which tool, when, and how each offering is provisioned.

``[defaults]`` applies to every offering; the first ``[[rules]]`` entry whose ``match`` fits
overrides it key by key. Tool tables (``[harvest]``, ``[toggl]``, ``[clockify]``) carry the
tool-specific settings; ``[crm.<name>]`` the CRM stage map and field names
(``handlers.crm_rules``). Errors name the file, the entry and the key.
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from handlers.crm_rules import CrmRules
from schemas.inbound import TOOLS, Money, Offering, Project, Tool

Trigger = Literal["in_progress", "closed_won", "manual"]
PLACEHOLDERS = frozenset({"project", "offering", "client", "project_id", "offering_id"})
# The notes may link back to the deal; a name or code is too short a place for an address.
NOTES_PLACEHOLDERS = PLACEHOLDERS | {"deal_url"}
# hourly_rate: "offering", "none", or an amount with an optional ISO 4217 code ("150.00 EUR").
RATE = re.compile(r"(?P<amount>\d{1,13}(\.\d{1,6})?)(?: (?P<currency>[A-Z]{3}))?")


class RulesError(ValueError):
    """The rules file is unreadable or invalid; the message says where. ``problems`` holds
    one line a problem, each naming the file, for commands that print them one a line."""

    def __init__(self, message: str, problems: Sequence[str] = ()):
        super().__init__(message)
        self.problems = list(problems) or [message]


def _check_template(value: str, allowed: frozenset[str] = PLACEHOLDERS) -> str:
    for _, name, spec, conversion in string.Formatter().parse(value):
        if name is None:
            continue
        if name not in allowed:
            known = ", ".join(sorted(f"{{{p}}}" for p in allowed))
            raise ValueError(f"unknown placeholder {{{name}}}; use {known}")
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} takes no format spec or conversion")
    return value


def _check_optional_template(value: str | None) -> str | None:
    return value if value is None else _check_template(value)


def _check_notes(value: str | None) -> str | None:
    return value if value is None else _check_template(value, NOTES_PLACEHOLDERS)


def _check_rate(value: str | None) -> str | None:
    if value is None or value in ("offering", "none") or RATE.fullmatch(value):
        return value
    raise ValueError(
        'hourly_rate is "offering", "none" or an amount such as "150.00" or "150.00 EUR"'
    )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Commercial(_Strict):
    """The commercial shape (issue 21), the same keys in [defaults] and in a rule."""

    # None in [defaults]: fixed-fee exactly when the offering's kind is "fixed_bid".
    fixed_fee: bool | None = None
    money_budget: bool | None = None
    hourly_rate: str | None = None
    code: str | None = Field(default=None, min_length=1)
    notes: str | None = Field(default=None, min_length=1)
    template: str | None = Field(default=None, min_length=1)  # a tool project: id or URL

    _code = field_validator("code")(_check_optional_template)
    _notes = field_validator("notes")(_check_notes)
    _rate = field_validator("hourly_rate")(_check_rate)


class Overrides(_Commercial):
    tool: Tool | None = None
    provision_on: Trigger | None = None
    name: str | None = Field(default=None, min_length=1)
    assign_team: bool | None = None
    missing_member: Literal["warn", "fail"] | None = None

    _template = field_validator("name")(_check_optional_template)


class Defaults(_Commercial):
    tool: Tool = "harvest"
    provision_on: Trigger = "in_progress"
    name: str = Field(default="{project} - {offering}", min_length=1)
    assign_team: bool = True
    missing_member: Literal["warn", "fail"] = "warn"
    money_budget: bool = False
    hourly_rate: str = "offering"

    _template = field_validator("name")(_check_template)


class Match(_Strict):
    offering: str | None = None
    client: str | None = None
    kind: str | None = None

    def fits(self, project: Project, offering: Offering) -> bool:
        tests = (
            (self.offering, offering.name),
            (self.client, project.client.name),
            (self.kind, offering.kind or ""),
        )
        return all(
            glob is None or fnmatchcase(value.casefold(), glob.casefold()) for glob, value in tests
        )


class Rule(Overrides):
    match: Match


# Harvest budget_by modes an offering can fill (HV-DOCS projects): it plans hours in total
# (`project`), per member (`person`) and, with one task, per task (`task`); its price is the
# project's money budget (`project_cost`, issue 21). Nothing of it says fees per task.
MONEY_BUDGETS = frozenset({"task_fees"})


class HarvestOptions(_Strict):
    bill_by: Literal["Project", "Tasks", "People", "none"] = "Project"
    budget_by: Literal["project", "project_cost", "task", "task_fees", "person", "none"] = "project"
    tasks: list[str] = Field(default_factory=list)
    # Harvest makes a task assignment non-billable unless told (Project Task Assignments):
    # None sends the offering's own billability, true/false overrides it.
    task_billable: bool | None = None
    # Harvest makes managers and administrators project managers of every project they are
    # assigned to unless told otherwise (Project User Assignments); ours are not, unless this.
    project_managers: bool = False

    @model_validator(mode="after")
    def _budget_the_offering_can_fill(self) -> HarvestOptions:
        if self.budget_by in MONEY_BUDGETS:
            raise ValueError(
                f"budget_by = {self.budget_by!r} budgets fees per task, but an offering carries"
                ' one price; use "project", "project_cost", "person", "task" (with one task)'
                ' or "none"'
            )
        if self.budget_by == "task" and len(self.tasks) != 1:
            raise ValueError(
                'budget_by = "task" puts the offering\'s hours on its one task, so tasks must'
                f" name exactly one task (it names {len(self.tasks)})"
            )
        return self


class TogglOptions(_Strict):
    is_private: bool | None = None  # None: private exactly when a team is assigned


class ClockifyOptions(_Strict):
    is_public: bool | None = None  # None: public exactly when no team is assigned


class RulesFile(_Strict):
    defaults: Defaults = Field(default_factory=Defaults)
    rules: list[Rule] = Field(default_factory=list)
    harvest: HarvestOptions = Field(default_factory=HarvestOptions)
    toggl: TogglOptions = Field(default_factory=TogglOptions)
    clockify: ClockifyOptions = Field(default_factory=ClockifyOptions)
    crm: CrmRules = Field(default_factory=CrmRules)  # handlers.crm_rules


@dataclass(frozen=True)
class Plan:
    """What the rules decide for one offering."""

    tool: Tool
    provision_on: Trigger
    name: str
    assign_team: bool
    missing_member: Literal["warn", "fail"]
    rule: int | None  # index of the matching [[rules]] entry, None for the defaults
    options: dict[str, Any] = field(default_factory=dict)
    # The commercial shape (issue 21): the money is the offering's, as the rules apply it.
    fixed_fee: bool = False  # the rules want a fixed fee (``fee`` is None without a price)
    fee: Money | None = None
    money_budget: Money | None = None
    hourly_rate: Money | None = None
    code: str | None = None
    notes: str | None = None
    template: str | None = None  # a project in the tool, as the rules name it (id or URL)
    warnings: tuple[str, ...] = ()  # what the rules asked for and the offering cannot give


def _rate(choice: str, offering: Offering) -> tuple[Money | None, str | None]:
    """The rate a rule's ``hourly_rate`` gives, and a warning when it cannot give one. A bare
    amount is in the offering's currency (its price's, else its rate's): a rate in another
    currency than the price would be billed in a currency nobody sold."""
    if choice == "none":
        return None, None
    if choice == "offering":
        return offering.hourly_rate, None
    found = RATE.fullmatch(choice)
    assert found is not None  # validated with the rules file
    currency = found["currency"] or next(
        (m.currency for m in (offering.price, offering.hourly_rate) if m is not None), None
    )
    if currency is None:
        return None, (
            f"hourly_rate {choice}: the offering carries no currency; "
            f'write one in the rules ("{choice} EUR")'
        )
    return Money(amount=found["amount"], currency=currency), None


@dataclass(frozen=True)
class Rules:
    spec: RulesFile = field(default_factory=RulesFile)
    source: str = "(built-in defaults)"

    def __post_init__(self) -> None:
        # Every offering of every event asks for a plan: the rules are read into plain
        # values once, not dumped from their models on each call.
        values = [r.model_dump(exclude={"match"}, exclude_none=True) for r in self.spec.rules]
        object.__setattr__(self, "_defaults", self.spec.defaults.model_dump())
        object.__setattr__(self, "_rule_values", values)
        object.__setattr__(
            self,
            "_options",
            {t: getattr(self.spec, t).model_dump(exclude_none=True) for t in TOOLS},
        )

    def plan_for(self, project: Project, offering: Offering, tool: Tool | None = None) -> Plan:
        index = next(
            (i for i, r in enumerate(self.spec.rules) if r.match.fits(project, offering)), None
        )
        chosen = dict(self._defaults)
        if index is not None:
            chosen.update(self._rule_values[index])
        if tool is not None:  # the person asked for a tool explicitly
            chosen["tool"] = tool
        values = dict(
            project=project.name,
            offering=offering.name,
            client=project.client.name,
            project_id=project.id,
            offering_id=offering.id,
        )
        options = dict(self._options[chosen["tool"]])
        fixed_fee = chosen["fixed_fee"]
        if fixed_fee is None:
            fixed_fee = offering.kind == "fixed_bid"
        # Harvest's project_cost budgets money: the price is that budget, whatever the key.
        money_budget = chosen["money_budget"] or options.get("budget_by") == "project_cost"
        hourly_rate, rate_warning = _rate(chosen["hourly_rate"], offering)
        warnings = [rate_warning] if rate_warning else []
        if money_budget and offering.price is None:
            warnings.append("money_budget: the offering has no price, so no budget in money")
        code, notes = chosen["code"], chosen["notes"]
        return Plan(
            name=chosen["name"].format(**values)[:250],
            rule=index,
            options=options,
            fixed_fee=fixed_fee,
            fee=offering.price if fixed_fee else None,
            money_budget=offering.price if money_budget else None,
            hourly_rate=hourly_rate,
            code=code.format(**values)[:250] if code else None,
            notes=notes.format(**values, deal_url=project.url or "") if notes else None,
            template=chosen["template"],
            warnings=tuple(warnings),
            **{k: chosen[k] for k in ("tool", "provision_on", "assign_team", "missing_member")},
        )

    def templates(self) -> dict[Tool, set[str]]:
        """Tool -> the template projects the rules name for it (checked at start-up)."""
        defaults = self.spec.defaults
        found: dict[Tool, set[str]] = {}
        for tool, template in [(defaults.tool, defaults.template)] + [
            (r.tool or defaults.tool, r.template or defaults.template) for r in self.spec.rules
        ]:
            if template:
                found.setdefault(tool, set()).add(template)
        return found

    def tools_named(self) -> set[Tool]:
        return {self.spec.defaults.tool} | {r.tool for r in self.spec.rules if r.tool}

    def check_tools(self, enabled: Collection[str]) -> None:
        """A rule naming a tool without credentials is a start-up error."""
        missing = sorted(self.tools_named() - set(enabled))
        if missing:
            raise RulesError(
                f"{self.source}: names {', '.join(missing)} but no credentials are set for them"
                f" (enabled: {', '.join(sorted(enabled)) or 'none'})"
            )


def load_rules(path: str | Path | None) -> Rules:
    if path is None:
        return Rules()
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path}: not valid TOML ({exc})") from None
    try:
        return Rules(RulesFile.model_validate(raw), source=str(path))
    except ValidationError as exc:
        problems = [f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)]
        raise RulesError(
            f"{path}: {'; '.join(problems)}", [f"{path}: {p}" for p in problems]
        ) from None


def _where(loc: tuple[Any, ...]) -> str:
    """('rules', 1, 'provision_on') -> 'rules[1].provision_on' (entries counted from 1)."""
    out = ""
    for part in loc:
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
