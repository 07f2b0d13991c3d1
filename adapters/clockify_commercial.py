"""The commercial shape of a Clockify project (issue 21): ``hourlyRate`` ``{amount in cents,
currency}`` on the create, the money estimate (``budgetEstimate``, a paid feature, and only
one of it and the time estimate may be active) after it, and the template's tasks with their
estimates. Money goes only in the workspace's default currency: another currency is left out
with a warning, never converted. Clockify has no fixed fee and no project code: those are
always left out.

A mixin of ``adapters.clockify.ClockifyTool``, which owns ``http``, ``workspace``, the kept
workspace currency and the projects it just made.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from adapters.clockify_ids import _checked, folded
from adapters.http import default_error_text
from handlers.ports import ProjectSpec, SetupReport
from schemas.errors import TimesheetNotFound, VendorRejected
from schemas.inbound import Money


def iso_hours(hours: float) -> str:
    """40 -> ``PT40H``, 37.5 -> ``PT37H30M``: Clockify estimates are ISO-8601 durations."""
    whole, minutes = divmod(round(hours * 60), 60)
    return "PT" + (f"{whole}H" if whole or not minutes else "") + (f"{minutes}M" if minutes else "")


def cents(amount: Decimal) -> int:
    """Clockify amounts are whole cents: 150.005 -> 15001 (half up, not to even)."""
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


class ClockifyCommercial:
    def _workspace_currency(self) -> str:
        """The workspace's default currency (``currencies`` on ``GET /workspaces/{id}``, the
        one ``isDefault``; else its ``hourlyRate``'s), read once per process."""
        if self._currency is None:
            workspace = self.http.request("GET", self.workspace).json() or {}
            listed = workspace.get("currencies") or []
            default = [c.get("code") for c in listed if c.get("isDefault")]
            rate = workspace.get("hourlyRate") or {}
            self._currency = str((default or [rate.get("currency")])[0] or "").upper()
        return self._currency

    def _in_currency(self, field: str, money: Money | None, why: list[str]) -> bool:
        """Whether ``money`` is there and in the workspace's currency; says why not."""
        if money is None:
            return False
        currency = self._workspace_currency()
        if money.currency == currency:
            return True
        why.append(
            f"clockify: the {field.replace('_', ' ')} is in {money.currency}, the workspace's"
            f" currency is {currency or 'unknown'}; {money.amount} {money.currency} not set"
            " (never converted)"
        )
        return False

    def _commercial(self, spec: ProjectSpec) -> tuple[dict[str, Any], set[str], list[str]]:
        """The create's money fields, the spec's fields Clockify does not get, and why.
        Decided from the spec and the workspace alone, so the create and ``complete_setup``
        (perhaps in another process, for an adopted project) come to the same answer. The
        money estimate is set (or refused by the plan) in ``complete_setup``."""
        body: dict[str, Any] = {}
        left_out: set[str] = set()
        why: list[str] = []
        if self._in_currency("hourly_rate", spec.hourly_rate, why):
            rate = spec.hourly_rate
            body["hourlyRate"] = {"amount": cents(rate.value), "currency": rate.currency}
        elif spec.hourly_rate is not None:
            left_out.add("hourly_rate")
        if spec.money_budget is not None and not self._in_currency(
            "money_budget", spec.money_budget, why
        ):
            left_out.add("money_budget")
        if spec.fixed_fee is not None:
            left_out.add("fixed_fee")
            why.append(
                "clockify: projects have no fixed fee;"
                f" {spec.fixed_fee.amount} {spec.fixed_fee.currency} not set"
            )
        if spec.code:
            left_out.add("code")
            why.append(f"clockify: projects have no code; {spec.code!r} not set")
        return body, left_out, why

    def complete_setup(self, project_id: str, spec: ProjectSpec) -> SetupReport | None:
        """Sets the estimate the documented way (``PATCH .../estimate``: a ``budgetEstimate``
        for a money budget, else a ``timeEstimate`` for hours), a paid feature, and copies
        the template's tasks; says what the plan, the currency or Clockify left out."""
        fresh = self._fresh.pop(project_id, None) is not None  # made just now: no tasks yet
        _, left_out, warnings = self._commercial(spec)
        budget_set = True
        money = spec.money_budget if "money_budget" not in left_out else None
        if money is not None and spec.budget_hours is not None:
            budget_set = False
            warnings.append(
                "clockify: only one estimate may be active and the money budget is set;"
                f" {iso_hours(spec.budget_hours)} not set"
            )
        if money is not None:
            refused = self._set_estimate(project_id, "budgetEstimate", cents(money.value))
            if refused:
                left_out.add("money_budget")
                warnings.append(
                    f"clockify: the workspace refused the money estimate ({refused});"
                    f" {money.amount} {money.currency} not set"
                )
        elif spec.budget_hours is not None:
            hours = iso_hours(spec.budget_hours)
            refused = self._set_estimate(project_id, "timeEstimate", hours)
            if refused:
                budget_set = False
                warnings.append(
                    f"clockify: the workspace refused the estimate ({refused}); {hours} not set"
                )
        if spec.template:
            warnings += self._copy_tasks(spec.template, project_id, fresh=fresh)
        if budget_set and not warnings and not left_out:
            return None
        return SetupReport(
            budget_set=budget_set, warnings=tuple(warnings), left_out=frozenset(left_out)
        )

    def _set_estimate(self, project_id: str, kind: str, estimate: str | int) -> str | None:
        """Sets the project's active manual estimate of ``kind``; the plan's refusal, if any."""
        body = {kind: {"estimate": estimate, "type": "MANUAL", "active": True}}
        body[kind] |= {"includeNonBillable": True} if kind == "timeEstimate" else {}
        response = self.http.request(
            "PATCH",
            f"{self.workspace}/projects/{_checked(project_id)}/estimate",
            json=body,
            # The refusal of a plan without estimates is not documented: any 4xx but a
            # missing project is reported as "not set", never a lost project or a retry loop.
            ok_statuses=frozenset({400, 402, 403}),
        )
        if response.status_code < 400:
            return None
        return f"{response.status_code} {default_error_text(response)}"

    def _copy_tasks(self, template: str, project_id: str, *, fresh: bool) -> list[str]:
        """Gives the project each active task of the template it lacks (by name), with its
        estimate. Returns why tasks were not copied, if they were not."""
        try:
            self._read_project(template)
        except TimesheetNotFound:
            return [f"clockify: the template project {template} is gone; no tasks copied"]
        path = f"{self.workspace}/projects/{_checked(project_id)}/tasks"
        present = set() if fresh else {folded(t["name"]) for t in self._listed(path)}
        for task in self._listed(f"{self.workspace}/projects/{template}/tasks"):
            if task.get("status", "ACTIVE") != "ACTIVE" or folded(task["name"]) in present:
                continue
            body = {"name": task["name"], "status": "ACTIVE"}
            if task.get("estimate"):
                body["estimate"] = task["estimate"]
            try:
                self.http.request("POST", path, json=body)
            except VendorRejected as refused:
                # A name taken: an earlier attempt made it. Look, do not parse the words.
                names = {folded(t["name"]) for t in self._listed(path)}
                if refused.status != 400 or folded(task["name"]) not in names:
                    raise
        return []
