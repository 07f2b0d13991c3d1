"""The commercial shape of a Toggl project (issue 21): a project takes ``fixed_fee``,
``rate`` and ``currency`` (premium fields, as ``estimated_hours`` is), and a template's tasks
are copied with their ``estimated_seconds``. Money goes only in the workspace's
``default_currency``: another currency is left out with a warning, never converted. Toggl has
no project code, no money budget (its estimate is in hours) and no project notes, so those
are always left out.

A mixin of ``adapters.toggl.TogglTool``, which owns ``http``, the workspace's path, the kept
workspace facts and the projects it just made.
"""

from __future__ import annotations

from typing import Any

from adapters.toggl_ids import _number, fold
from handlers.ports import ProjectSpec, SetupReport
from schemas.errors import TimesheetNotFound, VendorRejected

# Project fields only paid plans take (engineering.toggl.com/docs/projects: "premium feature").
PREMIUM_FIELDS = ("billable", "estimated_hours", "fixed_fee", "rate", "currency")
# Spec money field -> the Toggl project field that carries it.
MONEY_FIELDS = {"fixed_fee": "fixed_fee", "hourly_rate": "rate"}


class TogglCommercial:
    def _workspace_facts(self) -> dict[str, Any]:
        """``GET /workspaces/{id}``, read once per process: its plan and its currency."""
        if self._workspace is None:
            self._workspace = self.http.request("GET", self._ws).json() or {}
        return self._workspace

    def _has_premium(self) -> bool:
        """Whether the workspace's plan takes the premium project fields (``premium``)."""
        return bool(self._workspace_facts().get("premium"))

    def _commercial(self, spec: ProjectSpec) -> tuple[dict[str, Any], set[str], list[str]]:
        """The money fields the project gets, the spec's fields it does not, and why.
        Decided from the spec and the workspace alone, so the create and ``complete_setup``
        (perhaps in another process, for an adopted project) come to the same answer."""
        body: dict[str, Any] = {}
        left_out: set[str] = set()
        why: list[str] = []
        currency = str(self._workspace_facts().get("default_currency") or "").upper()
        for field, key in MONEY_FIELDS.items():
            money = getattr(spec, field)
            if money is None:
                continue
            shown = f"{money.amount} {money.currency}"
            if not self._has_premium():
                left_out.add(field)
                why.append(f"toggl: the workspace's plan has no project {key}; {shown} not set")
            elif money.currency != currency:
                left_out.add(field)
                why.append(
                    f"toggl: the {field.replace('_', ' ')} is in {money.currency}, the"
                    f" workspace's currency is {currency or 'unknown'}; {shown} not set"
                    " (never converted)"
                )
            else:
                body[key] = float(money.value)  # Toggl's field is a JSON number
        if body:
            body["currency"] = currency
        if spec.money_budget is not None:
            left_out.add("money_budget")
            why.append(
                "toggl: a project's estimate is in hours, there is no money budget;"
                f" {spec.money_budget.amount} {spec.money_budget.currency} not set"
            )
        if spec.code:
            left_out.add("code")
            why.append(f"toggl: projects have no code; {spec.code!r} not set")
        if spec.notes:
            why.append("toggl: projects have no notes; the notes are not set")
        return body, left_out, why

    def complete_setup(self, project_id: str, spec: ProjectSpec) -> SetupReport | None:
        """Copies the template's tasks; says what the plan, the currency or Toggl left out."""
        pid = _number(project_id, "project", TimesheetNotFound)
        fresh = pid in self._fresh  # made by this process just now: it has no tasks yet
        self._fresh.discard(pid)  # its team is done: bounded, whatever came first
        warnings: list[str] = []
        premium = self._has_premium()
        if not premium and spec.budget_hours is not None:
            warnings.append(
                "toggl: the workspace's plan has no project estimates;"
                f" estimated_hours ({spec.budget_hours:g}) not set"
            )
        if not premium and spec.billable:
            warnings.append("toggl: the workspace's plan has no billable projects; not set")
        _, left_out, why = self._commercial(spec)
        warnings += why
        if spec.template:
            warnings += self._copy_tasks(spec.template, pid, fresh=fresh)
        if not warnings:
            return None
        return SetupReport(
            budget_set=premium or spec.budget_hours is None,
            warnings=tuple(warnings),
            left_out=frozenset(left_out),
        )

    def _copy_tasks(self, template: str, pid: int, *, fresh: bool) -> list[str]:
        """Gives the project each active task of the template it lacks (by name, unique in a
        project), with its estimate. Returns why tasks were not copied, if they were not."""
        if not self._has_premium():
            return ["toggl: the workspace's plan has no tasks; the template's tasks not copied"]
        tpl = _number(template, "template project", TimesheetNotFound)
        wanted = self._tasks(tpl)
        if wanted is None:
            return [f"toggl: the template project {tpl} is gone; no tasks copied"]
        present = set() if fresh else {fold(t["name"]) for t in self._tasks(pid) or []}
        for task in wanted:
            if not task.get("active", True) or fold(task["name"]) in present:
                continue
            body = {"name": task["name"], "active": True}
            if task.get("estimated_seconds") is not None:
                body["estimated_seconds"] = task["estimated_seconds"]
            try:
                self.http.request("POST", f"{self._ws}/projects/{pid}/tasks", json=body)
            except VendorRejected as refused:
                if refused.status == 402:  # the plan changed since we read it
                    self._workspace = None
                    return [f"toggl: the workspace's plan refuses tasks ({refused.message})"]
                # A 400 for a name taken: an earlier attempt made it. Look, do not parse.
                if refused.status != 400 or fold(task["name"]) not in {
                    fold(t["name"]) for t in self._tasks(pid) or []
                }:
                    raise
        return []

    def _tasks(self, pid: int) -> list[dict[str, Any]] | None:
        """A project's tasks (``GET .../projects/{id}/tasks``); None when there is no project."""
        response = self.http.request(
            "GET", f"{self._ws}/projects/{pid}/tasks", ok_statuses=frozenset({404})
        )
        return None if response.status_code == 404 else response.json() or []
