"""Harvest API v2 as a ``TimesheetTool``: clients, projects (found again by the marker line
in their ``notes``), user and task assignments, archiving, and reading the ids and web URLs
people paste.

Facts this relies on (Harvest's API v2 reference, help.getharvest.com/api-v2):
- every call carries ``Authorization: Bearer``, ``Harvest-Account-Id`` and a ``User-Agent``;
- lists are cursor-paginated and must be walked by ``links.next`` (``VendorHttp.pages``);
- there is no name filter on ``/clients`` and no e-mail filter on ``/users``, so both are
  listed in full and matched here;
- ``POST /projects`` needs ``client_id``, ``name``, ``is_billable``, ``bill_by`` and
  ``budget_by``; archiving is ``PATCH {"is_active": false}`` (``DELETE`` would drop time).

- a task assignment is non-billable unless ``billable`` is sent, and a user assignment of a
  manager or administrator makes them project manager unless ``is_project_manager`` is
  sent; ``budget_by`` task / person budget the assignments, not the project;
- ``GET /tasks`` and assignment lists include archived ones (``is_active``);
- the commercial shape (HV-DOCS projects, clients): ``is_fixed_fee`` + ``fee`` (fixed-fee
  projects only), ``bill_by: "Project"`` + ``hourly_rate``, ``budget_by: "project_cost"`` +
  ``cost_budget``, ``code``, ``notes``; amounts are JSON numbers in the client's
  ``currency``, which is set when the client is created. A price in another currency than
  the client's is left out with a warning, never converted.

The idempotency marker was the project's ``code`` until rules could set codes (issue 21); it
is now a line of the ``notes`` (``MARKER_LINE``), after the rules' notes. A project made by
an earlier release, with the marker in its ``code``, is still found and adopted.

Users (by e-mail) and tasks (by name) are read once and kept for a few minutes in a
``ReadCache`` (see ``adapters.read_cache`` for what may be kept and why): a steady run of
provisionings then costs no ``GET /users`` or ``GET /tasks``. A kept task id Harvest refuses
(422 on the assignment, the task deleted or archived since) is dropped and the assignment made
once more from a fresh read; a kept user id refused so is dropped and the provisioning tried
again (``StaleRead``), since the team it reports must be read afresh. Clients are always
read fresh: that look-up guards "no second client".

Status codes are translated by ``VendorHttp``. A 422 is Harvest's general "could not process"
(HV-DOCS overview), so it never means "already assigned" by itself: assignments are decided
from the project's listed assignments, and a 422 is a refusal unless the listing shows the
assignment made meanwhile.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import tenacity

from adapters.http import DEFAULT_TIMEOUT, UNOBSERVED, HttpObserver, VendorHttp, default_error_text
from adapters.pacing import Pacer
from adapters.read_cache import ReadCache, StaleRead
from handlers.ports import ProjectSpec, SetupReport, ToolClient, ToolProject
from schemas.errors import (
    FailureCode,
    InvalidReference,
    Permanent,
    ProvisionerError,
    TimesheetNotFound,
    VendorAuth,
    VendorRejected,
)
from schemas.inbound import Money

NOT_FOUND = frozenset({404})
UNPROCESSABLE = frozenset({422})
# Used when GET /company cannot be read; Harvest's login sends a person on to their account.
FALLBACK_WEB_URL = "https://harvestapp.com"
NOTES = "Provisioned by timesheet-provisioner"
# The marker's own line in the notes: a person editing the notes above it keeps it findable.
MARKER_LINE = "timesheet-provisioner: {marker}"
# budget_by values whose hours go on the task or user assignments' `budget` (HV-DOCS).
ASSIGNMENT_BUDGETS = frozenset({"task", "person"})
CENTS = Decimal("0.01")
_DIGITS = re.compile(r"[0-9]+")
_WEB_PROJECT_PATH = re.compile(r"/projects/([0-9]+)(?:/.*)?")


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def _numeric(value: str, what: str) -> int:
    """Harvest ids are integers; our ports carry them as strings."""
    if not _DIGITS.fullmatch(value):
        raise VendorRejected(f"harvest {what} ids are numeric, got {value[:40]!r}")
    return int(value)


def _notes(spec: ProjectSpec) -> str:
    return f"{spec.notes or NOTES}\n\n{MARKER_LINE.format(marker=spec.marker)}"


def _carries(project: dict[str, Any], marker: str) -> bool:
    """Ours for this marker: its marker line in the notes, or (made by a release before
    issue 21) the marker as its whole ``code``."""
    line = MARKER_LINE.format(marker=marker)
    notes = project.get("notes") or ""
    return project.get("code") == marker or line in notes.splitlines()


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


class HarvestTool:
    name = "harvest"
    clients_carry_currency = True  # money is in the client's currency (HV-DOCS clients)

    def __init__(
        self,
        account_id: str,
        access_token: str,
        *,
        base_url: str = "https://api.harvestapp.com/v2",
        retrying: tenacity.Retrying,
        pacer: Pacer | None = None,
        observer: HttpObserver = UNOBSERVED,
        read_timeout: float = 30.0,
        web_url: str | None = None,
        reads: ReadCache | None = None,
    ):
        self.http = VendorHttp(
            "harvest",
            base_url,
            headers={
                "Authorization": f"Bearer {access_token}",
                "Harvest-Account-Id": str(account_id),
                "Content-Type": "application/json",
            },
            retrying=retrying,
            pacer=pacer,
            observer=observer,
            timeout=(DEFAULT_TIMEOUT[0], read_timeout),
        )
        self._web_url = web_url.rstrip("/") if web_url else None
        # ("task", folded name) -> id of an active task; ("user", e-mail) -> id of an active
        # user. Positive answers only, for minutes (adapters.read_cache).
        self.reads = reads if reads is not None else ReadCache()
        # Projects this process just made: their team is POSTed without listing assignments
        # first (a new project has no archived one to restore; one Harvest added by itself,
        # a user with access to all future projects, answers 422 and is then listed).
        self._fresh: set[str] = set()
        self._fresh_lock = threading.Lock()

    # -- references -----------------------------------------------------------------------
    def parse_reference(self, reference: str) -> str:
        text = reference.strip()
        if _DIGITS.fullmatch(text):
            return str(int(text))
        parts = urlsplit(text if "://" in text else f"https://{text}")
        host = (parts.hostname or "").lower()
        on_harvest = host == "harvestapp.com" or host.endswith(".harvestapp.com")
        found = _WEB_PROJECT_PATH.fullmatch(parts.path) if on_harvest else None
        if parts.scheme in ("http", "https") and found:
            return str(int(found.group(1)))
        raise InvalidReference(f"not a Harvest project id or URL: {text[:80]!r}")

    def project_url(self, project_id: str) -> str:
        return f"{self._web()}/projects/{project_id}"

    def _web(self) -> str:
        """The account's own address, e.g. https://acme.harvestapp.com (GET /company)."""
        if self._web_url:
            return self._web_url
        try:
            base_uri = self.http.request("GET", "/company").json().get("base_uri")
        except VendorAuth:
            raise
        except (ProvisionerError, ValueError, AttributeError):
            return FALLBACK_WEB_URL  # not cached: the next call may read it
        self._web_url = str(base_uri or FALLBACK_WEB_URL).rstrip("/")
        return self._web_url

    # -- clients --------------------------------------------------------------------------
    def clients_named(self, name: str) -> list[ToolClient]:
        wanted = _folded(name)
        return [
            ToolClient(str(c["id"]), c["name"])
            for c in self.http.pages("/clients", "clients")
            if _folded(c["name"]) == wanted
        ]

    def create_client(self, name: str, currency: str | None = None) -> ToolClient:
        # Without a currency Harvest gives the client the account's own.
        body = {"name": name} | ({"currency": currency} if currency else {})
        response = self.http.request("POST", "/clients", json=body, ok_statuses=UNPROCESSABLE)
        if response.status_code != 422:
            body = response.json()
            return ToolClient(str(body["id"]), body["name"])
        # Harvest refuses a second client of the same name; another worker may have just made
        # it (the singer tap-harvest test helper meets the same 422), so adopt that one.
        matches = self.clients_named(name)
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise Permanent(
                FailureCode.CLIENT_AMBIGUOUS, f"harvest has {len(matches)} clients named {name!r}"
            )
        raise VendorRejected(f"harvest POST /clients: 422 {default_error_text(response)}", 422)

    # -- projects -------------------------------------------------------------------------
    def create_project(self, spec: ProjectSpec) -> ToolProject:
        # Resolve task names first so that an unknown one leaves no half-made project behind.
        self._task_ids(spec.options.get("tasks") or [])
        money, _, _ = self._money_fields(spec)
        budget_by = money.get("budget_by", spec.options.get("budget_by", "project"))
        if budget_by == "project_cost" and "cost_budget" not in money:
            # No price in the client's currency to budget: the hours are a budget still.
            budget_by = "project"
        body: dict[str, Any] = {
            "client_id": _numeric(spec.client_id, "client"),
            "name": spec.name,
            "is_billable": spec.billable,
            "bill_by": spec.options.get("bill_by", "Project"),
            "notes": _notes(spec),
            **money,
            "budget_by": budget_by,
        }
        if spec.code:
            body["code"] = spec.code
        # HV-DOCS projects: the project's own ``budget`` holds hours only when budgeting by
        # project; the task and person modes budget the assignments (``complete_setup``).
        if spec.budget_hours is not None and budget_by == "project":
            body["budget"] = spec.budget_hours
        elif spec.budget_hours is not None and budget_by not in ASSIGNMENT_BUDGETS | {
            "none",
            "project_cost",
        }:
            # The rules refuse these modes at start-up; never drop the hours silently.
            raise VendorRejected(f"harvest budget_by {budget_by!r} cannot hold hours")
        if spec.starts_on:
            body["starts_on"] = spec.starts_on.isoformat()
        if spec.ends_on:
            body["ends_on"] = spec.ends_on.isoformat()
        made = self._project(self.http.request("POST", "/projects", json=body).json())
        with self._fresh_lock:
            self._fresh.add(made.id)
        return made

    def _money_fields(self, spec: ProjectSpec) -> tuple[dict[str, Any], set[str], list[str]]:
        """The project fields for the spec's money, what is left out and why. Reads the
        client's currency (one GET) only when there is money to place."""
        wanted = {
            "fixed_fee": spec.fixed_fee,
            "hourly_rate": spec.hourly_rate,
            "money_budget": spec.money_budget,
        }
        wanted = {k: v for k, v in wanted.items() if v is not None}
        if not wanted:
            return {}, set(), []
        currency = self._client_currency(spec.client_id)
        fields: dict[str, Any] = {}
        left_out: set[str] = set()
        warnings: list[str] = []
        for key, money in wanted.items():
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

    def _client_currency(self, client_id: str) -> str | None:
        path = f"/clients/{_numeric(client_id, 'client')}"
        response = self.http.request("GET", path, ok_statuses=NOT_FOUND)
        if response.status_code == 404:
            raise VendorRejected(f"harvest has no client {client_id}", 404)
        return response.json().get("currency")

    def complete_setup(self, project_id: str, spec: ProjectSpec) -> SetupReport | None:
        """Copies the template's task assignments, assigns the rules' tasks (billable as the
        offering, unless the rules say), puts the task or person budgets on the assignments,
        and sees that the project holds the money the client's currency allows. Decided from
        what the project lists, not from a 422 (Harvest's 422 is any processing error), so
        that this runs again safely: an assignment already there keeps its settings."""
        with self._fresh_lock:
            self._fresh.discard(project_id)  # its team is done: bounded, whatever came first
        report = self._complete_money(project_id, spec)
        options = spec.options
        budget_by = options.get("budget_by", "project")
        path = f"{self._path(project_id)}/task_assignments"
        if spec.template and (gone := self._copy_template(spec.template, path)):
            report = SetupReport(
                report.budget_set if report else True,
                (*(report.warnings if report else ()), gone),
                report.left_out if report else frozenset(),
            )
        names = _names(options.get("tasks") or [])
        wanted = self._task_ids(names)
        if wanted:
            task_billable = options.get("task_billable")
            billable = spec.billable if task_billable is None else bool(task_billable)
            on = {a["task"]["id"]: a for a in self.http.pages(path, "task_assignments")}
            for name, task_id in zip(names, wanted, strict=True):
                body: dict[str, Any] = {"task_id": task_id, "billable": billable}
                if budget_by == "task" and spec.budget_hours is not None:
                    body["budget"] = spec.budget_hours  # the rules allow one task only
                present = on.get(task_id)
                if present is None:
                    self._assign_task(path, body, name)
                    continue
                # Already there (a default task, or an earlier run): its billability is left
                # as it is; what is missing (active, the task budget) is added.
                missing = {"is_active": True} if not present.get("is_active", True) else {}
                if "budget" in body and present.get("budget") != body["budget"]:
                    missing["budget"] = body["budget"]
                if missing:
                    self._patch(f"{path}/{present['id']}", missing)
        if budget_by == "person" and spec.team_hours:
            path = f"{self._path(project_id)}/user_assignments"
            for a in self.http.pages(path, "user_assignments"):
                hours = spec.team_hours.get(str(a["user"]["id"]))
                if hours is not None and a.get("budget") != hours:
                    self._patch(f"{path}/{a['id']}", {"budget": hours})
        if options.get("project_managers"):
            path = f"{self._path(project_id)}/user_assignments"
            for a in self.http.pages(path, "user_assignments"):
                if not a.get("is_project_manager"):
                    self._patch(f"{path}/{a['id']}", {"is_project_manager": True})
        return report

    def _complete_money(self, project_id: str, spec: ProjectSpec) -> SetupReport | None:
        """What the spec's money came to; an adopted project that lacks what its create
        should have sent gets it now."""
        fields, left_out, warnings = self._money_fields(spec)
        if fields:
            held = self.http.request("GET", self._path(project_id)).json()
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

    def _assign_task(self, path: str, body: dict[str, Any], name: str) -> None:
        """A refused assignment of a kept task id is made once more with a fresh read of
        the tasks: the task may have been deleted, archived or made again since we read."""
        try:
            self._post_assignment(path, body, "task", body["task_id"])
        except VendorRejected as refused:
            if refused.status != 422 or self.reads.get(("task", _folded(name))) is None:
                raise
            self.reads.drop(("task", _folded(name)))
            fresh = self._task_ids([name])[0]  # a gone or archived task is refused here
            if fresh == body["task_id"]:
                raise
            self._post_assignment(path, {**body, "task_id": fresh}, "task", fresh)

    def _post_assignment(self, path: str, body: dict[str, Any], kind: str, who: int) -> None:
        """POSTs an assignment; a 422 counts as done only if the assignment is now listed
        (a concurrent worker made it), else it is the vendor's refusal, in its words."""
        response = self.http.request("POST", path, json=body, ok_statuses=UNPROCESSABLE)
        if response.status_code != 422:
            return
        listed = self.http.pages(path, f"{kind}_assignments")
        if not any(a[kind]["id"] == who and a.get("is_active", True) for a in listed):
            text = default_error_text(response)
            raise VendorRejected(f"harvest POST {path}: 422 {text}".strip(), 422)

    def _patch(self, path: str, body: dict[str, Any]) -> None:
        self.http.request("PATCH", path, json=body)

    def _task_ids(self, names: Sequence[str]) -> list[int]:
        names = _names(names)
        kept = [self.reads.get(("task", _folded(n))) for n in names]
        if all(task_id is not None for task_id in kept):
            return kept
        # GET /tasks lists archived tasks too (HV-DOCS tasks); an active one of the same
        # name wins over an archived one. Only active ones are kept: an archived task is as
        # good as missing, and is read again until a person restores it.
        listed = sorted(self.http.pages("/tasks", "tasks"), key=lambda t: t["is_active"])
        known = {_folded(t["name"]): (t["id"], t["is_active"]) for t in listed}
        for folded, (task_id, active) in known.items():
            if active:
                self.reads.put(("task", folded), task_id)
        missing = [n for n in names if _folded(n) not in known]
        if missing:
            raise VendorRejected(f"harvest has no task named {', '.join(map(repr, missing))}")
        archived = [n for n in names if not known[_folded(n)][1]]
        if archived:
            raise VendorRejected(
                f"harvest task {', '.join(map(repr, archived))} is archived; restore it in"
                " Harvest or remove it from [harvest] tasks"
            )
        return [known[_folded(n)][0] for n in names]

    def find_project(
        self, client_id: str, marker: str, name: str, since: datetime | None = None
    ) -> ToolProject | None:
        query = {"client_id": _numeric(client_id, "client")}
        for project in self.http.pages("/projects", "projects", query):
            if _carries(project, marker):
                return self._project(project)
        return None

    def get_project(self, project_id: str) -> ToolProject:
        response = self.http.request("GET", self._path(project_id), ok_statuses=NOT_FOUND)
        if response.status_code == 404:
            raise TimesheetNotFound(f"harvest has no project {project_id}")
        return self._project(response.json())

    def set_archived(self, project_id: str, archived: bool) -> None:
        response = self.http.request(
            "PATCH", self._path(project_id), json={"is_active": not archived}, ok_statuses=NOT_FOUND
        )
        if response.status_code == 404:
            raise TimesheetNotFound(f"harvest has no project {project_id}")

    def _path(self, project_id: str) -> str:
        if not _DIGITS.fullmatch(project_id):
            raise TimesheetNotFound(f"harvest project ids are numeric, got {project_id[:40]!r}")
        return f"/projects/{project_id}"

    def _project(self, body: dict[str, Any]) -> ToolProject:
        project_id = str(body["id"])
        client = body.get("client") or {}
        currency = client.get("currency")
        fixed_fee = bool(body.get("is_fixed_fee"))
        return ToolProject(
            id=project_id,
            name=body["name"],
            client_id=str(client["id"]) if client.get("id") is not None else None,
            url=self.project_url(project_id),
            archived=not body.get("is_active", True),
            fixed_fee=fixed_fee,
            fee=_money(body.get("fee"), currency) if fixed_fee else None,
            money_budget=_money(body.get("cost_budget"), currency)
            if body.get("budget_by") == "project_cost"
            else None,
            hourly_rate=_money(body.get("hourly_rate"), currency)
            if body.get("bill_by") == "Project"
            else None,
            code=body.get("code") or None,
        )

    # -- people ---------------------------------------------------------------------------
    def find_users(self, emails: Sequence[str]) -> dict[str, str]:
        wanted = {e.strip().lower() for e in emails}
        kept = {e: self.reads.get(("user", e)) for e in wanted}
        if all(kept.values()):
            return kept
        active = self._active_users()
        return {e: active[e] for e in wanted if e in active}

    def _active_users(self) -> dict[str, str]:
        """E-mail -> id of every active user, read now and kept."""
        active: dict[str, str] = {}
        for user in self.http.pages("/users", "users"):
            email = (user.get("email") or "").strip().lower()
            # An archived user cannot track time, so for a team they are as good as missing.
            if email and user.get("is_active", True):
                active[email] = str(user["id"])
                self.reads.put(("user", email), active[email])
        return active

    def _user_went_stale(self, user_id: str) -> bool:
        """Whether ``user_id`` came from a kept read and a fresh one no longer has it
        active; its entry is dropped either way."""
        if not self.reads.drop_where(lambda key, value: key[0] == "user" and value == user_id):
            return False
        return user_id not in self._active_users().values()

    def assign_team(self, project_id: str, user_ids: Sequence[str]) -> None:
        """Adds the users; an archived assignment (``is_active`` false, listed too) is
        restored, since its user could not log time. New assignments say
        ``is_project_manager: false``: Harvest's default makes managers and administrators
        project managers (``complete_setup`` promotes them when the rules say so)."""
        path = f"{self._path(project_id)}/user_assignments"
        with self._fresh_lock:
            fresh = project_id in self._fresh
            self._fresh.discard(project_id)
        if fresh:
            try:
                for user_id in dict.fromkeys(user_ids):
                    self._post_user(path, user_id)
                return
            except VendorRejected as refused:
                if refused.status != 422:
                    raise
                # Something was there after all (a person, or Harvest for a user with access
                # to all future projects): decided from the listing, as for any project.
        assigned = {str(a["user"]["id"]): a for a in self.http.pages(path, "user_assignments")}
        for user_id in dict.fromkeys(user_ids):
            present = assigned.get(user_id)
            if present is not None:
                if not present.get("is_active", True):
                    self._patch(f"{path}/{present['id']}", {"is_active": True})
                continue
            self._post_user(path, user_id)

    def _post_user(self, path: str, user_id: str) -> None:
        who = _numeric(user_id, "user")
        body = {"user_id": who, "is_project_manager": False}
        try:
            self._post_assignment(path, body, "user", who)
        except VendorRejected as refused:
            if refused.status == 422 and self._user_went_stale(user_id):
                raise StaleRead(
                    f"harvest user {user_id} is no longer active; the team is read"
                    " again on the next attempt"
                ) from None
            raise


def _names(names: Sequence[str] | str) -> list[str]:
    return [names] if isinstance(names, str) else list(names)  # `tasks = "Design"` in rules
