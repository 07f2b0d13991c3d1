"""A fake Toggl Track API v9: the workspace endpoints the adapter uses, with Toggl's rules.

Written from Toggl's public docs (API v9, engineering.toggl.com/docs), not from our
adapter: Basic auth as ``<token>:api_token`` (else 403), errors as JSON-encoded strings,
integer ids, client names unique per workspace, project names unique per client (archived
ones included), 429 without Retry-After, the hourly quota by plan (free 30, starter 240,
premium 600 a sliding hour) with its headers and 402, the plan's own 402 for premium fields
on a free workspace (the money fields ``fixed_fee``, ``rate``, ``currency`` among them), the
workspace's ``default_currency``, tasks per project (names unique in the project, estimates
in whole seconds; a paid feature), and users lists that keep inactive and deleted users.
Where the docs are silent the choice is marked *(assumption)*, and leans strict.

    python -m fakes.toggl --port 8002    # token "toggl-test-token", workspace 1234567
"""

from __future__ import annotations

import base64
import itertools
import math
import re
import time
from datetime import UTC, date, datetime
from typing import Any

from fakes.base import FakeVendor, Request, Response, Route, serve_main

TAKEN = "Name has already been taken"
QUOTA_WINDOW = 3600.0  # seconds; Toggl's quota is a sliding hour
# Workspace requests a user may make per hour, by plan (support.toggl.com, api-webhook-limits).
# Enterprise is "custom": here, none, for suites that are not about the quota.
QUOTAS = {"free": 30, "starter": 240, "premium": 600, "enterprise": None}
# Project fields a free workspace refuses (engineering.toggl.com/docs/projects marks them
# premium). The 402 is documented as the plan's answer; its wording is *(assumption)*.
PREMIUM_FIELDS = ("billable", "estimated_hours", "fixed_fee", "rate", "currency")
NONE = type(None)
NUMBER = (int, float)  # a JSON number; ``type(x) in`` keeps bool out
_CURRENCY = re.compile(r"[A-Z]{3}")
# What a project body may hold, and the JSON types each field accepts (bool is not a number).
PROJECT_FIELDS = {
    **dict.fromkeys(("name",), (str,)),
    **dict.fromkeys(("active", "is_private", "billable"), (bool,)),
    **dict.fromkeys(("client_id", "cid", "estimated_hours"), (int, NONE)),
    **dict.fromkeys(("start_date", "end_date", "currency"), (str, NONE)),
    # engineering.toggl.com/docs/projects: ``fixed_fee`` and ``rate`` are numbers (float).
    **dict.fromkeys(("fixed_fee", "rate"), (*NUMBER, NONE)),
}
PROJECT_DEFAULTS = {"active": True, "is_private": True, "billable": False}
PROJECT_DEFAULTS |= dict.fromkeys(
    ("estimated_hours", "start_date", "end_date", "fixed_fee", "rate", "currency")
)
# What a task body may hold (engineering.toggl.com/docs/tracking: tasks), and its types.
TASK_FIELDS = {
    "name": (str,),
    "active": (bool,),
    "estimated_seconds": (int, NONE),
    "user_id": (int, NONE),
}


def _bad(message: str) -> Response:
    return Response(400, message)  # Toggl's error bodies are JSON strings


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _same_name(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()  # (assumption) case-insensitive


def _ints(text: str | None) -> set[int] | None:
    return {int(part) for part in text.split(",") if part} if text else None


def _date(text: str | None) -> date | None:
    if text and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        raise ValueError(text)
    return date.fromisoformat(text) if text else None


class FakeToggl(FakeVendor):
    name = "toggl"

    def __init__(
        self,
        workspace_id: int = 1234567,
        token: str = "toggl-test-token",
        *,
        rate_limit: tuple[int, float] | None = (1, 1.0),
        latency: float = 0.0,
        plan: str = "premium",
        quota_window: float = QUOTA_WINDOW,
        currency: str = "EUR",
    ):
        super().__init__(rate_limit=rate_limit, latency=latency)
        self.workspace_id = workspace_id
        self.token = token
        self.plan = plan  # free | starter | premium: the quota and the premium fields
        self.default_currency = currency  # the workspace's, as ``GET /workspaces/{id}`` says
        self.quota_window = quota_window  # shorter in benchmarks, to see hours in seconds
        self.quota_refused = 0  # 402s for a spent quota
        self.clients: dict[int, dict[str, Any]] = {}
        self.projects: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.project_users: dict[int, dict[str, Any]] = {}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.authorizations: list[str | None] = []  # the Authorization header of each request
        self.clock = time.monotonic  # tests may swap in a manual clock for the quota
        self._quota_spent: list[float] = []  # when each request of the sliding hour arrived
        self._ids = itertools.count(100001)  # one sequence, so a client id is never a project id
        ws = r"/api/v9/workspaces/([^/]+)"
        table = [
            ("GET", "", self._workspace),
            ("GET", "/clients", self._list_clients),
            ("POST", "/clients", self._create_client),
            ("GET", "/projects", self._list_projects),
            ("POST", "/projects", self._create_project),
            ("GET", r"/projects/([0-9]+)", self._get_project),
            ("PUT", r"/projects/([0-9]+)", self._update_project),
            ("GET", r"/projects/([0-9]+)/tasks", self._list_tasks),
            ("POST", r"/projects/([0-9]+)/tasks", self._create_task),
            ("GET", "/users", self._list_users),
            ("GET", "/project_users", self._list_project_users),
            ("POST", "/project_users", self._add_project_user),
        ]
        self._routes: list[Route] = [
            (method, re.compile(ws + path), self._in_workspace(handler))
            for method, path, handler in table
        ]

    # -- seeding, bypassing the API ---------------------------------------------------------
    def add_user(
        self, email: str, fullname: str | None = None, *, inactive: bool = False, deleted=False
    ) -> int:
        """A workspace user; the list keeps deactivated (``inactive``) and deleted
        (``is_active: false``) ones too."""
        with self.lock:
            uid = next(self._ids)
            self.users[uid] = {
                "id": uid,
                "email": email,
                "fullname": fullname or email,
                "inactive": inactive,
                "is_active": not deleted,
            }
            return uid

    def add_client(self, name: str) -> int:
        with self.lock:
            cid = next(self._ids)
            self.clients[cid] = dict(id=cid, wid=self.workspace_id, name=name, archived=False)
            self.clients[cid]["at"] = _now()
            return cid

    def add_project(self, client_id: int | str | None, name: str, **fields: Any) -> int:
        with self.lock:
            pid = next(self._ids)
            cid = int(client_id) if client_id is not None else None
            project = {**PROJECT_DEFAULTS, "created_at": _now(), **fields}
            self.projects[pid] = self._refresh(
                project | {"id": pid, "name": name, "client_id": cid}
            )
            return pid

    def add_task(
        self, project_id: int | str, name: str, estimated_seconds: int | None = None
    ) -> int:
        with self.lock:
            tid = next(self._ids)
            self.tasks[tid] = {
                "id": tid,
                "name": name,
                "project_id": int(project_id),
                "workspace_id": self.workspace_id,
                "wid": self.workspace_id,
                "active": True,
                "estimated_seconds": estimated_seconds,
                "tracked_seconds": 0,
                "user_id": None,
                "at": _now(),
            }
            return tid

    @property
    def quota(self) -> int | None:
        return QUOTAS[self.plan]

    def exhaust_quota(self, resets_in: float = 1) -> None:
        """The hourly quota is spent now, and its first slot frees ``resets_in`` s later."""
        with self.lock:
            self._quota_spent = [self.clock() + resets_in - self.quota_window] * self.quota

    # -- the vendor's gatekeeping -----------------------------------------------------------
    def routes(self) -> list[Route]:
        return self._routes

    def authenticate(self, request: Request) -> Response | None:
        auth = request.headers.get("authorization")
        with self.lock:
            self.authorizations.append(auth)
        basic = base64.b64encode(f"{self.token}:api_token".encode()).decode()
        if auth != f"Basic {basic}":
            return Response(403, "Incorrect username and/or password")
        return self._spend_quota()  # the quota counts per user, so once the user is known

    def handle(self, request: Request) -> Response:
        response = super().handle(request)
        if response.status != 403 and self.quota:  # every answer says what is left
            with self.lock:
                response.headers.update(self._quota_headers())
        return response

    def _spend_quota(self) -> Response | None:
        with self.lock:
            now = self.clock()
            self._quota_spent = [t for t in self._quota_spent if now - t < self.quota_window]
            if self.quota is None:
                return None
            if len(self._quota_spent) >= self.quota:
                self.quota_refused += 1
                return Response(402, "API quota exceeded for this hour")
            self._quota_spent.append(now)
            return None

    def _quota_headers(self) -> dict[str, str]:
        now = self.clock()
        left = max(self.quota - len(self._quota_spent), 0)
        oldest = min(self._quota_spent, default=now)
        resets_in = max(0, math.ceil(oldest + self.quota_window - now))
        return {"X-Toggl-Quota-Remaining": str(left), "X-Toggl-Quota-Resets-In": str(resets_in)}

    def throttle_response(self, retry_after: int) -> Response:
        return Response(429, "Too Many Requests")  # Toggl documents no Retry-After

    def not_found(self) -> Response:
        return Response(404, "Not Found")

    def _in_workspace(self, handler):
        def scoped(request: Request, workspace: str, *args: str) -> Response:
            if workspace != str(self.workspace_id):
                return Response(403, "User does not have access to this resource.")
            return handler(request, *args)

        return scoped

    def _workspace(self, request: Request) -> Response:
        paid = self.plan != "free"
        return Response(
            200,
            {"id": self.workspace_id, "name": "Fake workspace", "premium": paid}
            | {"business_ws": self.plan == "premium", "at": _now()}
            | {"default_currency": self.default_currency, "default_hourly_rate": None},
        )

    # -- clients ----------------------------------------------------------------------------
    def _list_clients(self, request: Request) -> Response:
        status = request.arg("status", "active")
        if status not in ("active", "archived", "both"):
            return _bad(f"Invalid status {status!r}")
        rows = [
            c
            for c in self.clients.values()
            if status == "both" or c["archived"] == (status == "archived")
        ]
        return Response(200, rows)

    def _create_client(self, request: Request) -> Response:
        body = request.body
        if not isinstance(body, dict):
            return _bad("Invalid JSON input")
        name, wid = body.get("name"), body.get("wid", self.workspace_id)
        if type(name) is not str or not name.strip():
            return _bad("Client name must not be empty")
        if type(wid) is not int:
            return _bad(f'Unexpected "wid" type {type(wid).__name__}')
        if wid != self.workspace_id:
            return _bad("Workspace ID in the body does not match the one in the URL")
        if any(_same_name(c["name"], name) for c in self.clients.values()):
            return _bad(TAKEN)
        return Response(200, self.clients[self.add_client(name.strip())])

    # -- projects ---------------------------------------------------------------------------
    def _list_projects(self, request: Request) -> Response:
        active = request.arg("active", "true")
        try:
            client_ids = _ints(request.arg("client_ids"))
            page = int(request.arg("page", "1"))
            per_page = min(int(request.arg("per_page", "151")), 200)
        except ValueError:
            return _bad("Invalid query parameter")
        if active not in ("true", "false", "both") or page < 1 or per_page < 1:
            return _bad("Invalid query parameter")
        name = (request.arg("name") or "").casefold()
        rows = [
            p
            for _, p in sorted(self.projects.items())
            if (active == "both" or p["active"] == (active == "true"))
            and (client_ids is None or p["client_id"] in client_ids)
            and name in p["name"].casefold()  # (assumption) a contains-match, like a search box
        ]
        return Response(200, rows[(page - 1) * per_page : page * per_page])

    def _create_project(self, request: Request) -> Response:
        fields = self._project_fields(request.body, {})
        if isinstance(fields, Response):
            return fields
        pid = self.add_project(fields.pop("client_id"), fields.pop("name"), **fields)
        return Response(200, self.projects[pid])

    def _get_project(self, request: Request, pid: str) -> Response:
        project = self.projects.get(int(pid))
        return Response(200, project) if project else self.not_found()

    def _update_project(self, request: Request, pid: str) -> Response:
        current = self.projects.get(int(pid))
        if current is None:
            return self.not_found()
        fields = self._project_fields(request.body, current)
        if isinstance(fields, Response):
            return fields
        current.update(fields)
        return Response(200, self._refresh(current))

    def _project_fields(self, body: Any, current: dict[str, Any]) -> dict[str, Any] | Response:
        """The project ``body`` would make of ``current``, or Toggl's 400 (402: the plan)."""
        if not isinstance(body, dict):
            return _bad("Invalid JSON input")
        premium = [f for f in PREMIUM_FIELDS if body.get(f) not in (None, False)]
        if premium and self.plan == "free":
            return Response(402, f"{premium[0]} is a premium feature; upgrade the workspace")
        for key, kinds in PROJECT_FIELDS.items():
            if key in body and type(body[key]) not in kinds:
                return _bad(f'Unexpected "{key}" type {type(body[key]).__name__}')
        if body.get("currency") is not None and not _CURRENCY.fullmatch(body["currency"]):
            return _bad(f"Invalid currency {body['currency'][:10]!r}")  # (assumption) wording
        if any(type(body.get(k)) in NUMBER and body[k] < 0 for k in ("fixed_fee", "rate")):
            return _bad("fixed_fee and rate must not be negative")  # (assumption) wording
        merged = {**current, **{k: body[k] for k in PROJECT_FIELDS if k in body}}
        merged["client_id"] = merged.pop("cid", None) if "cid" in body else merged.get("client_id")
        name, client_id = (merged.get("name") or "").strip(), merged["client_id"]
        if not name:
            return _bad("Project name must not be empty")
        if client_id is not None and client_id not in self.clients:
            return _bad(f"Client with ID {client_id} isn't present in workspace")
        try:
            start, end = _date(merged.get("start_date")), _date(merged.get("end_date"))
        except ValueError:
            return _bad("Invalid date, expected YYYY-MM-DD")
        if start and end and end < start:
            return _bad("End date must be after start date")
        if any(
            p["id"] != current.get("id")
            and p["client_id"] == client_id
            and _same_name(p["name"], name)
            for p in self.projects.values()
        ):
            return _bad(TAKEN)  # archived projects keep their names taken
        return {**merged, "name": name}

    def _refresh(self, project: dict[str, Any]) -> dict[str, Any]:
        """Fills in the fields Toggl derives, so every stored project has the full shape."""
        hours = project["estimated_hours"]
        project.update(
            workspace_id=self.workspace_id,
            wid=self.workspace_id,
            cid=project["client_id"],
            estimated_seconds=hours * 3600 if hours is not None else None,
            at=_now(),
        )
        return project

    # -- tasks ------------------------------------------------------------------------------
    def _list_tasks(self, request: Request, pid: str) -> Response:
        if int(pid) not in self.projects:
            return self.not_found()
        rows = [t for _, t in sorted(self.tasks.items()) if t["project_id"] == int(pid)]
        return Response(200, rows)

    def _create_task(self, request: Request, pid: str) -> Response:
        body = request.body
        if int(pid) not in self.projects:
            return self.not_found()
        if self.plan == "free":  # tasks are a paid feature; the wording is *(assumption)*
            return Response(402, "Tasks are a paid feature; upgrade the workspace")
        if not isinstance(body, dict):
            return _bad("Invalid JSON input")
        for key, kinds in TASK_FIELDS.items():
            if key in body and type(body[key]) not in kinds:
                return _bad(f'Unexpected "{key}" type {type(body[key]).__name__}')
        name = (body.get("name") or "").strip()
        if not name:
            return _bad("Task name must not be empty")
        if (body.get("estimated_seconds") or 0) < 0:
            return _bad("estimated_seconds must not be negative")
        if any(
            t["project_id"] == int(pid) and _same_name(t["name"], name) for t in self.tasks.values()
        ):
            return _bad(TAKEN)  # v8 docs: a task's name is unique in its project
        tid = self.add_task(pid, name, body.get("estimated_seconds"))
        self.tasks[tid]["active"] = body.get("active", True)
        return Response(200, self.tasks[tid])

    # -- people -----------------------------------------------------------------------------
    def _list_users(self, request: Request) -> Response:
        return Response(200, list(self.users.values()))

    def _list_project_users(self, request: Request) -> Response:
        try:
            project_ids = _ints(request.arg("project_ids"))
        except ValueError:
            return _bad("Invalid project_ids")
        rows = [
            m
            for m in self.project_users.values()
            if project_ids is None or m["project_id"] in project_ids
        ]
        return Response(200, rows)

    def _add_project_user(self, request: Request) -> Response:
        body = request.body
        if not isinstance(body, dict):
            return _bad("Invalid JSON input")
        pid, uid = body.get("project_id"), body.get("user_id")
        if type(pid) is not int or type(uid) is not int:
            return _bad("project_id and user_id must be integers")
        if pid not in self.projects or uid not in self.users:
            return _bad("Project or user not found in workspace")
        if any(m["project_id"] == pid and m["user_id"] == uid for m in self.project_users.values()):
            # Toggl documents no wording for this; the adapter must not need one.
            return _bad("user_id: duplicate project user")  # (assumption) the wording
        mid = next(self._ids)
        self.project_users[mid] = dict(
            id=mid, project_id=pid, user_id=uid, workspace_id=self.workspace_id, at=_now()
        ) | {"manager": body.get("manager") is True, "rate": None, "labor_cost": None}
        return Response(200, self.project_users[mid])


if __name__ == "__main__":
    serve_main(lambda args: FakeToggl(latency=args.latency), "A fake Toggl Track API v9")
