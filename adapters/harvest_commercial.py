"""The commercial shape of a Harvest project: its money fields, in the client's currency,
and the task assignments copied from a template project.

Facts this relies on (Harvest's API v2 reference, help.getharvest.com/api-v2):
- the commercial shape (HV-DOCS projects, clients): ``is_fixed_fee`` + ``fee`` (fixed-fee
  projects only), ``bill_by: "Project"`` + ``hourly_rate``, ``budget_by: "project_cost"`` +
  ``cost_budget``, ``code``, ``notes``; amounts are JSON numbers in the client's
  ``currency``, which is set when the client is created. A price in another currency than
  the client's is left out with a warning, never converted.

A mixin of ``adapters.harvest.HarvestTool``, which owns ``http`` and the project paths;
the assignments it copies are posted as ``adapters.harvest_assignments`` posts them.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.harvest_ids import NOT_FOUND, _numeric
from handlers.ports import ProjectSpec, SetupReport
from schemas.errors import VendorRejected
from schemas.inbound import Money

CENTS = Decimal("0.01")


def _number(money: Money) -> float:
    # Harvest takes decimals as JSON numbers. A price of at most 13 digits and 2 decimals
    # survives a double exactly, and its shortest repr is the decimal text we were given.
    return float(money.value)


def _money(value: Any, currency: str | None) -> Money | None:
    if value is None or currency is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
        # Read back as money is written, with cents (12000.0 -> "12000.00"), finer kept.
        if amount.as_tuple().exponent > -2:
            amount = amount.quantize(CENTS)
        return Money(amount=format(amount, "f"), currency=currency)
    except (InvalidOperation, ValueError):
        return None  # not an amount our contract can carry: reported as not there


def _wanted_money(spec: ProjectSpec) -> dict[str, Money]:
    wanted = {
        "fixed_fee": spec.fixed_fee,
        "hourly_rate": spec.hourly_rate,
        "money_budget": spec.money_budget,
    }
    return {k: v for k, v in wanted.items() if v is not None}


class HarvestCommercial:
    def _money_fields(
        self, spec: ProjectSpec, currency: str | None
    ) -> tuple[dict[str, Any], set[str], list[str]]:
        """The project fields for the spec's money in the client's ``currency``, what is left
        out and why."""
        fields: dict[str, Any] = {}
        left_out: set[str] = set()
        warnings: list[str] = []
        for key, money in _wanted_money(spec).items():
            if money.currency != currency:
                left_out.add(key)
                warnings.append(
                    f"harvest: the client's currency is {currency}; {key} {money.amount}"
                    f" {money.currency} not set (never converted)"
                )
            elif key == "fixed_fee":
                fields |= {"is_fixed_fee": True, "fee": _number(money)}
            elif key == "money_budget":
                fields |= {"budget_by": "project_cost", "cost_budget": _number(money)}
            elif spec.options.get("bill_by", "Project") == "Project":
                fields["hourly_rate"] = _number(money)
            else:  # HV-DOCS: the project's hourly_rate is for projects billed by Project
                left_out.add(key)
                warnings.append(
                    f'harvest: [harvest] bill_by is {spec.options["bill_by"]!r}, not "Project";'
                    f" hourly_rate {money.amount} {money.currency} not set"
                )
        return fields, left_out, warnings

    def _create_money(self, spec: ProjectSpec) -> dict[str, Any]:
        """The money fields a new project is created with. Reads the client's currency (one
        GET) only when there is money to place."""
        if not _wanted_money(spec):
            return {}
        return self._money_fields(spec, self._client_currency(spec.client_id))[0]

    def _client_currency(self, client_id: str) -> str | None:
        path = f"/clients/{_numeric(client_id, 'client')}"
        response = self.http.request("GET", path, ok_statuses=NOT_FOUND)
        if response.status_code == 404:
            raise VendorRejected(f"harvest has no client {client_id}", 404)
        return response.json().get("currency")

    def _complete_money(self, project_id: str, spec: ProjectSpec) -> SetupReport | None:
        """What the spec's money came to; an adopted project that lacks what its create
        should have sent gets it now."""
        if not _wanted_money(spec):
            return None
        # The project names its client's currency (HV-DOCS projects: client{id,name,currency}):
        # one read serves both the currency and what the project already holds.
        held = self.http.request("GET", self._path(project_id)).json()
        currency = (held.get("client") or {}).get("currency")
        fields, left_out, warnings = self._money_fields(spec, currency)
        lacking = {k: v for k, v in fields.items() if held.get(k) != v}
        if lacking:
            self._patch(self._path(project_id), lacking)
        # A budget in money replaces the hours (one budget_by per project).
        budget_set = not ("cost_budget" in fields and spec.budget_hours is not None)
        if not budget_set:
            warnings.append(
                "harvest: the budget is the price in money (budget_by project_cost);"
                " the hours are not a budget"
            )
        if not warnings:
            return None
        return SetupReport(budget_set, tuple(warnings), frozenset(left_out))

    def _copy_template(self, template_id: str, path: str) -> str | None:
        """The template project's active task assignments, with their billability, rate
        and budget, onto the new project (one already there is brought to the template's).
        A template deleted since start-up leaves the project as it is: the warning says so
        (the tasks are a convenience; the project is what was sold)."""
        if (
            self.http.request("GET", self._path(template_id), ok_statuses=NOT_FOUND).status_code
            == 404
        ):
            return f"harvest: the template project {template_id} is gone; no tasks copied"
        source = self.http.pages(f"{self._path(template_id)}/task_assignments", "task_assignments")
        on = {a["task"]["id"]: a for a in self.http.pages(path, "task_assignments")}
        for a in source:
            if not a.get("is_active", True):
                continue
            copied = {k: a.get(k) for k in ("billable", "hourly_rate", "budget")}
            present = on.get(a["task"]["id"])
            if present is None:
                self._post_assignment(
                    path, {"task_id": a["task"]["id"], **copied}, "task", a["task"]["id"]
                )
                continue
            differing = {k: v for k, v in copied.items() if present.get(k) != v}
            if not present.get("is_active", True):
                differing["is_active"] = True
            if differing:
                self._patch(f"{path}/{present['id']}", differing)
        return None

    def check_template(self, reference: str) -> str:
        """The template's project id; ``TimesheetNotFound`` when it does not exist."""
        project_id = self.parse_reference(reference)
        self.get_project(project_id)
        return project_id
