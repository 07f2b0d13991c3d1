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

The idempotency marker was the project's ``code`` until rules could set codes (issue 21); it
is now a line of the ``notes`` (``MARKER_LINE``), after the rules' notes. A project made by
an earlier release, with the marker in its ``code``, is still found and adopted.

The adapter is one class, ``HarvestTool``, in rooms by job: this module holds the clients,
the projects and the references people paste; the money fields and template copying are in
``adapters.harvest_commercial``, the task and user assignments in
``adapters.harvest_assignments``, and what every room reads ids and answers with in
``adapters.harvest_ids``. Status codes are translated by ``VendorHttp``.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import tenacity

from adapters.harvest_assignments import HarvestAssignments
from adapters.harvest_commercial import CENTS as CENTS
from adapters.harvest_commercial import HarvestCommercial, _money
from adapters.harvest_ids import _DIGITS, NOT_FOUND, _folded, _numeric
from adapters.harvest_ids import UNPROCESSABLE as UNPROCESSABLE
from adapters.http import DEFAULT_TIMEOUT, UNOBSERVED, HttpObserver, VendorHttp, default_error_text
from adapters.pacing import Pacer
from adapters.read_cache import ReadCache
from handlers.ports import ProjectSpec, ToolClient, ToolProject
from schemas.errors import (
    FailureCode,
    InvalidReference,
    Permanent,
    ProvisionerError,
    TimesheetNotFound,
    VendorAuth,
    VendorRejected,
)

# Used when GET /company cannot be read; Harvest's login sends a person on to their account.
FALLBACK_WEB_URL = "https://harvestapp.com"
NOTES = "Provisioned by timesheet-provisioner"
# The marker's own line in the notes: a person editing the notes above it keeps it findable.
MARKER_LINE = "timesheet-provisioner: {marker}"
# budget_by values whose hours go on the task or user assignments' `budget` (HV-DOCS).
ASSIGNMENT_BUDGETS = frozenset({"task", "person"})
_WEB_PROJECT_PATH = re.compile(r"/projects/([0-9]+)(?:/.*)?")


def _notes(spec: ProjectSpec) -> str:
    return f"{spec.notes or NOTES}\n\n{MARKER_LINE.format(marker=spec.marker)}"


def _carries(project: dict[str, Any], marker: str) -> bool:
    """Ours for this marker: its marker line in the notes, or (made by a release before
    issue 21) the marker as its whole ``code``."""
    line = MARKER_LINE.format(marker=marker)
    notes = project.get("notes") or ""
    return project.get("code") == marker or line in notes.splitlines()


class HarvestTool(HarvestAssignments, HarvestCommercial):
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
        money = self._create_money(spec)
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
