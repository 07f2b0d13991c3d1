"""Harvest API v2 as a ``TimesheetTool``: clients, projects (found again by their ``code``),
user and task assignments, archiving, and reading the ids and web URLs people paste.

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
- ``GET /tasks`` and assignment lists include archived ones (``is_active``).

Status codes are translated by ``VendorHttp``. A 422 is Harvest's general "could not process"
(HV-DOCS overview), so it never means "already assigned" by itself: assignments are decided
from the project's listed assignments, and a 422 is a refusal unless the listing shows the
assignment made meanwhile.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import tenacity

from adapters.http import DEFAULT_TIMEOUT, UNOBSERVED, HttpObserver, VendorHttp, default_error_text
from adapters.pacing import Pacer
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

NOT_FOUND = frozenset({404})
UNPROCESSABLE = frozenset({422})
# Used when GET /company cannot be read; Harvest's login sends a person on to their account.
FALLBACK_WEB_URL = "https://harvestapp.com"
NOTES = "Provisioned by timesheet-provisioner"
# budget_by values whose hours go on the task or user assignments' `budget` (HV-DOCS).
ASSIGNMENT_BUDGETS = frozenset({"task", "person"})
_DIGITS = re.compile(r"[0-9]+")
_WEB_PROJECT_PATH = re.compile(r"/projects/([0-9]+)(?:/.*)?")


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def _numeric(value: str, what: str) -> int:
    """Harvest ids are integers; our ports carry them as strings."""
    if not _DIGITS.fullmatch(value):
        raise VendorRejected(f"harvest {what} ids are numeric, got {value[:40]!r}")
    return int(value)


class HarvestTool:
    name = "harvest"

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
        # folded task name -> (id, is_active), from GET /tasks
        self._tasks: dict[str, tuple[int, bool]] = {}

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

    def create_client(self, name: str) -> ToolClient:
        response = self.http.request(
            "POST", "/clients", json={"name": name}, ok_statuses=UNPROCESSABLE
        )
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
        budget_by = spec.options.get("budget_by", "project")
        body: dict[str, Any] = {
            "client_id": _numeric(spec.client_id, "client"),
            "name": spec.name,
            "code": spec.marker,
            "is_billable": spec.billable,
            "bill_by": spec.options.get("bill_by", "Project"),
            "budget_by": budget_by,
            "notes": NOTES,
        }
        # HV-DOCS projects: the project's own ``budget`` holds hours only when budgeting by
        # project; the task and person modes budget the assignments (``complete_setup``).
        if spec.budget_hours is not None and budget_by == "project":
            body["budget"] = spec.budget_hours
        elif spec.budget_hours is not None and budget_by not in ASSIGNMENT_BUDGETS | {"none"}:
            # The rules refuse these modes at start-up; never drop the hours silently.
            raise VendorRejected(f"harvest budget_by {budget_by!r} cannot hold hours")
        if spec.starts_on:
            body["starts_on"] = spec.starts_on.isoformat()
        if spec.ends_on:
            body["ends_on"] = spec.ends_on.isoformat()
        return self._project(self.http.request("POST", "/projects", json=body).json())

    def complete_setup(self, project_id: str, spec: ProjectSpec) -> SetupReport | None:
        """Assigns the rules' tasks (billable as the offering, unless the rules say) and puts
        the task or person budgets on the assignments. Decided from the project's listed
        assignments, not from a 422 (Harvest's 422 is any processing error), so that this
        runs again safely: an assignment already there keeps its settings."""
        options = spec.options
        budget_by = options.get("budget_by", "project")
        path = f"{self._path(project_id)}/task_assignments"
        wanted = self._task_ids(options.get("tasks") or [])
        if wanted:
            task_billable = options.get("task_billable")
            billable = spec.billable if task_billable is None else bool(task_billable)
            on = {a["task"]["id"]: a for a in self.http.pages(path, "task_assignments")}
            for task_id in wanted:
                body: dict[str, Any] = {"task_id": task_id, "billable": billable}
                if budget_by == "task" and spec.budget_hours is not None:
                    body["budget"] = spec.budget_hours  # the rules allow one task only
                present = on.get(task_id)
                if present is None:
                    self._post_assignment(path, body, "task", task_id)
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
        return None

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
        if not names:
            return []
        names = [names] if isinstance(names, str) else names  # `tasks = "Design"` in the rules
        if any(_folded(n) not in self._tasks for n in names):  # read once, again if renamed
            # GET /tasks lists archived tasks too (HV-DOCS tasks); an active one of the same
            # name wins over an archived one.
            listed = sorted(self.http.pages("/tasks", "tasks"), key=lambda t: t["is_active"])
            self._tasks = {_folded(t["name"]): (t["id"], t["is_active"]) for t in listed}
        known = self._tasks
        missing = [n for n in names if _folded(n) not in known]
        if missing:
            raise VendorRejected(f"harvest has no task named {', '.join(map(repr, missing))}")
        archived = [n for n in names if not known[_folded(n)][1]]
        if archived:
            # Cached: a person must restore the task, and the next read after that is fresh.
            self._tasks = {}
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
            if project.get("code") == marker:
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
        return ToolProject(
            id=project_id,
            name=body["name"],
            client_id=str(client["id"]) if client.get("id") is not None else None,
            url=self.project_url(project_id),
            archived=not body.get("is_active", True),
        )

    # -- people ---------------------------------------------------------------------------
    def find_users(self, emails: Sequence[str]) -> dict[str, str]:
        wanted = {e.strip().lower() for e in emails}
        found: dict[str, str] = {}
        for user in self.http.pages("/users", "users"):
            email = (user.get("email") or "").strip().lower()
            # An archived user cannot track time, so for a team they are as good as missing.
            if email in wanted and user.get("is_active", True):
                found[email] = str(user["id"])
        return found

    def assign_team(self, project_id: str, user_ids: Sequence[str]) -> None:
        """Adds the users; an archived assignment (``is_active`` false, listed too) is
        restored, since its user could not log time. New assignments say
        ``is_project_manager: false``: Harvest's default makes managers and administrators
        project managers (``complete_setup`` promotes them when the rules say so)."""
        path = f"{self._path(project_id)}/user_assignments"
        assigned = {str(a["user"]["id"]): a for a in self.http.pages(path, "user_assignments")}
        for user_id in dict.fromkeys(user_ids):
            present = assigned.get(user_id)
            if present is not None:
                if not present.get("is_active", True):
                    self._patch(f"{path}/{present['id']}", {"is_active": True})
                continue
            who = _numeric(user_id, "user")
            body = {"user_id": who, "is_project_manager": False}
            self._post_assignment(path, body, "user", who)
