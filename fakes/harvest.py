"""A fake Harvest API v2 account over real HTTP, written from Harvest's public docs.

It keeps Harvest's rules where the docs state them (User-Agent required, Bearer token and
Harvest-Account-Id, 201 on create, cursor pagination newest first, per_page 1..2000,
429 with Retry-After past 100 requests per 15 s) and, where they are silent, the reading
that cannot create a duplicate (422 ``{"message": ...}`` on a duplicate client name, project
name within a client, or assignment). State is plain dicts keyed by int id, shaped like
Harvest's JSON, so tests read it directly: ``fake.projects[pid]["code"]``.
"""

from __future__ import annotations

import base64
import itertools
import math
import random
import re
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

from fakes.base import FakeVendor, Request, Response, Route, serve_main

MAX_PER_PAGE = 2000
BILL_BY = {"Project", "Tasks", "People", "none"}
BUDGET_BY = {"project", "project_cost", "task", "task_fees", "person", "none"}
PROJECT_REQUIRED = ("client_id", "name", "is_billable", "bill_by", "budget_by")
PATCHABLE = ("name", "code", "is_active", "is_billable", "bill_by", "budget_by", "budget")
PATCHABLE += ("notes", "starts_on", "ends_on", "is_fixed_fee", "fee", "hourly_rate", "cost_budget")
# HV-DOCS projects: each money field and the setting it belongs to ("fee: the amount you plan
# to invoice for the project. Only used by fixed-fee projects"; "hourly_rate: rate for
# projects billed by Project Hourly Rate"; "cost_budget: the monetary budget for the project
# when budgeting by money"). The fake refuses one sent without its setting.
MONEY_NEEDS = {
    "fee": ("is_fixed_fee", True),
    "hourly_rate": ("bill_by", "Project"),
    "cost_budget": ("budget_by", "project_cost"),
}
CURRENCY = re.compile(r"[A-Z]{3}")
LIST_FILTERS = ("client_id", "user_id", "is_active")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _invalid(message: str) -> Response:
    return Response(422, {"message": message})


def _fields(request: Request) -> dict:
    return request.body if isinstance(request.body, dict) else {}


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def _is_date(value: Any) -> bool:
    try:
        date.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


def _filter_value(row: dict, name: str) -> str:
    """``client_id`` and ``user_id`` filter on the nested objects Harvest returns."""
    nested = {"client_id": "client", "user_id": "user"}.get(name)
    value = (row.get(nested) or {}).get("id") if nested else row.get(name)
    return str(value).lower()


def _cursor(after_id: int) -> str:
    return base64.urlsafe_b64encode(f"before:{after_id}".encode()).decode()


def _uncursor(cursor: str) -> int:
    return int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("before:"))


def _project_budget(body: dict) -> float | None:
    """HV-DOCS projects: ``budget`` is the project's hours "when budgeting by time" per
    project; in the task and person modes the hours live on the assignments, and the money
    modes use ``cost_budget``/fees, so a project ``budget`` sent with them is not kept."""
    return body.get("budget") if body.get("budget_by") == "project" else None


def _not_a_number(value: Any) -> bool:
    """HV-DOCS: decimals are JSON numbers; a string or a boolean is not one."""
    return value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or value < 0
    )


def _money_problem(body: dict) -> str | None:
    for key, (setting, value) in MONEY_NEEDS.items():
        if _not_a_number(body.get(key)):
            return f"{key.replace('_', ' ').capitalize()} is not a number"
        if body.get(key) is not None and body.get(setting) != value:
            return f"{key} is only used when {setting} is {value!r}"
    for key in ("code", "notes"):
        if body.get(key) is not None and not isinstance(body[key], str):
            return f"{key.capitalize()} must be text"
    return None


def _assignment_problem(body: dict) -> str | None:
    for key in ("is_active", "billable", "is_project_manager", "use_default_rates"):
        if key in body and not isinstance(body[key], bool):
            return f"{key} must be true or false"
    for key in ("budget", "hourly_rate"):
        if _not_a_number(body.get(key)):
            return f"{key.replace('_', ' ').capitalize()} is not a number"
    return None


class FakeHarvest(FakeVendor):
    name = "harvest"

    def __init__(
        self,
        account_id: str = "123456",
        token: str = "harvest-test-token",
        *,
        page_size: int = MAX_PER_PAGE,
        rate_limit: tuple[int, float] | None = (100, 15.0),
        latency: float = 0.0,
    ):
        super().__init__(rate_limit=rate_limit, latency=latency)
        self.account_id = account_id
        self.token = token
        self.page_size = page_size
        self.base_uri = "https://fake-acme.harvestapp.com"  # what GET /company reports
        self.clients: dict[int, dict] = {}
        self.projects: dict[int, dict] = {}
        self.users: dict[int, dict] = {}
        self.tasks: dict[int, dict] = {}
        self.user_assignments: dict[int, dict] = {}
        self.task_assignments: dict[int, dict] = {}
        self.received: list[Request] = []  # every request as it arrived, headers included
        # Assignable kind -> (what is assigned, the assignments), for user and task routes.
        self._kinds = {
            "user": (self.users, self.user_assignments),
            "task": (self.tasks, self.task_assignments),
        }
        # One rising sequence for every kind: 8-digit ids like Harvest's, newest highest.
        self._ids = itertools.count(random.randint(10_000_000, 20_000_000))

    # -- seeding, bypassing the API (and its uniqueness rules) -----------------------------
    def add_user(
        self,
        email: str,
        first_name: str = "Test",
        last_name: str = "User",
        *,
        access_role: str = "member",  # administrator | manager | member
        is_active: bool = True,
    ) -> int:
        with self.lock:
            user = self._new(
                self.users, first_name=first_name, last_name=last_name, email=email,
                telephone="", timezone="Eastern Time (US & Canada)", is_contractor=False,
                has_access_to_all_future_projects=False, weekly_capacity=126000,
                default_hourly_rate=None, cost_rate=None, roles=[], access_roles=[access_role],
            )  # fmt: skip
            user["is_active"] = is_active
            return user["id"]

    def add_user_assignment(self, project_id: int, user_id: int, *, is_active: bool) -> int:
        """An assignment made by hand earlier (archived, say), bypassing the API."""
        with self.lock:
            assignment = self._assign("user", self.projects[project_id], self.users[user_id], {})
            assignment["is_active"] = is_active
            return assignment["id"]

    def add_task_assignment(self, project_id: int, task_id: int, **fields: Any) -> int:
        """A task on a project (a template's, say), bypassing the API."""
        with self.lock:
            project, task = self.projects[project_id], self.tasks[task_id]
            return self._assign("task", project, task, fields)["id"]

    def add_client(self, name: str, currency: str = "USD") -> int:
        """USD unless told: the fake account's own currency, which Harvest gives a client
        created without one."""
        with self.lock:
            fields = dict(name=name, address=None, statement_key="", currency=currency)
            return self._new(self.clients, **fields)["id"]

    def add_project(self, client_id: int | str, name: str, code: str | None = None) -> int:
        body = dict(client_id=int(client_id), name=name, code=code, is_billable=True)
        with self.lock:
            return self._create_project(body | {"bill_by": "Project", "budget_by": "none"})["id"]

    def add_task(self, name: str, is_default: bool = False, *, is_active: bool = True) -> int:
        with self.lock:
            fields = dict(name=name, billable_by_default=True, default_hourly_rate=None)
            task = self._new(self.tasks, **fields, is_default=is_default)
            task["is_active"] = is_active  # GET /tasks lists archived tasks too (HV-DOCS tasks)
            return task["id"]

    def _new(self, table: dict[int, dict], **fields: Any) -> dict:
        now = _now()
        record = {"id": next(self._ids), "is_active": True, **fields}
        table[record["id"]] = record | {"created_at": now, "updated_at": now}
        return table[record["id"]]

    def _create_project(self, body: dict) -> dict:
        client = self.clients[body["client_id"]]
        project = self._new(
            self.projects,
            client={k: client[k] for k in ("id", "name", "currency")},
            name=body["name"], code=body.get("code"), is_billable=body["is_billable"],
            is_fixed_fee=body.get("is_fixed_fee", False), bill_by=body["bill_by"],
            hourly_rate=body.get("hourly_rate"),
            budget=_project_budget(body), budget_by=body["budget_by"], budget_is_monthly=False,
            notify_when_over_budget=False, over_budget_notification_percentage=80.0,
            over_budget_notification_date=None, show_budget_to_all=False,
            cost_budget=body.get("cost_budget"), cost_budget_include_expenses=False,
            fee=body.get("fee"), notes=body.get("notes") or "",
            starts_on=body.get("starts_on"), ends_on=body.get("ends_on"),
        )  # fmt: skip
        project["is_active"] = body.get("is_active", True)
        for task in self.tasks.values():
            if task["is_default"] and task["is_active"]:  # HV-DOCS tasks: on every new project
                self._assign("task", project, task, {"billable": task["billable_by_default"]})
        return project

    def _assign(self, kind: str, project: dict, who: dict, body: dict) -> dict:
        """An assignment with Harvest's documented defaults for what ``body`` leaves out."""
        name = who.get("name") or f"{who['first_name']} {who['last_name']}"
        if kind == "task":
            # HV-DOCS project_task_assignments: billable defaults to false, whatever the task.
            extra = {"billable": body.get("billable", False)}
        else:
            # HV-DOCS project_user_assignments: is_project_manager defaults to true for
            # managers and administrators, false for members.
            manages = bool({"administrator", "manager"} & set(who["access_roles"]))
            extra = {
                "is_project_manager": body.get("is_project_manager", manages),
                "use_default_rates": body.get("use_default_rates", True),
            }
        assignment = self._new(
            self._kinds[kind][1],
            project={k: project[k] for k in ("id", "name", "code")},
            **{kind: {"id": who["id"], "name": name}},
            **extra,
            hourly_rate=body.get("hourly_rate"),
            budget=body.get("budget"),
        )
        assignment["is_active"] = body.get("is_active", True)
        return assignment

    # -- what every request meets first ----------------------------------------------------
    def authenticate(self, request: Request) -> Response | None:
        with self.lock:
            self.received.append(request)
        if not request.headers.get("user-agent"):  # HV-OV: no User-Agent is a 400
            return Response(400, {"message": "Bad Request: a User-Agent header is required"})
        if request.headers.get("authorization") != f"Bearer {self.token}":
            description = "The access token provided is expired, revoked, malformed or invalid."
            return Response(401, {"error": "invalid_token", "error_description": description})
        if request.headers.get("harvest-account-id") != self.account_id:
            return Response(403, {"message": "You do not have access to this account"})
        return None

    def routes(self) -> list[Route]:
        one = r"/v2/projects/(\d+)"
        routes = [
            ("GET", r"/v2/company", self.company),
            ("GET", r"/v2/clients", lambda r: self.page(r, "clients", self.clients)),
            ("GET", r"/v2/clients/(\d+)", self.get_client),
            ("POST", r"/v2/clients", self.create_client),
            ("GET", r"/v2/users", lambda r: self.page(r, "users", self.users)),
            ("GET", r"/v2/tasks", lambda r: self.page(r, "tasks", self.tasks)),
            ("POST", r"/v2/tasks", lambda r: self.create_named(r, self.tasks, self.add_task)),
            ("GET", r"/v2/projects", lambda r: self.page(r, "projects", self.projects)),
            ("POST", r"/v2/projects", self.create_project),
            ("GET", one, self.get_project),
            ("PATCH", one, self.update_project),
            ("GET", one + "/(user|task)_assignments", self.list_assignments),
            ("POST", one + "/(user|task)_assignments", self.assign),
            ("PATCH", one + r"/(user|task)_assignments/(\d+)", self.update_assignment),
        ]
        return [(method, re.compile(path), handler) for method, path, handler in routes]

    # -- handlers: request -> response -----------------------------------------------------
    def company(self, request: Request) -> Response:
        domain = self.base_uri.removeprefix("https://")
        return Response(
            200,
            {"base_uri": self.base_uri, "full_domain": domain, "is_active": True,
             "name": "Fake Company", "plan_type": "simple-v4"},
        )  # fmt: skip

    def page(self, request: Request, key: str, table: dict[int, dict]) -> Response:
        """HV-DOCS 06_pagination: newest first; follow ``links.next`` (a cursor) to the end."""
        try:
            per_page = int(request.arg("per_page") or self.page_size)
            page = int(request.arg("page") or 1)  # deprecated, still answered
            cursor = request.arg("cursor")
            before = _uncursor(cursor) if cursor else None
        except ValueError:
            return _invalid("per_page, page and cursor must be what the API gave")
        if not 1 <= per_page <= MAX_PER_PAGE or page < 1:
            return _invalid(f"per_page must be between 1 and {MAX_PER_PAGE}")
        wanted = {k: request.arg(k, "").lower() for k in LIST_FILTERS if k in request.query}
        rows = [
            row
            for row in sorted(table.values(), key=lambda row: -row["id"])
            if all(_filter_value(row, k) == v for k, v in wanted.items())
        ]
        if before is None:
            chunk = rows[(page - 1) * per_page : page * per_page]
        else:
            chunk = [row for row in rows if row["id"] < before][:per_page]
        more = bool(chunk) and chunk[-1] is not rows[-1]
        total_pages = max(1, math.ceil(len(rows) / per_page))
        kept = {k: v[0] for k, v in request.query.items() if k not in ("cursor", "page")}
        link = f"{self.origin}{request.path}?{urlencode(kept | {'per_page': per_page})}"
        number = None if before is not None else page  # cursors leave page numbers null
        return Response(
            200,
            {
                key: chunk,
                "per_page": per_page,
                "total_pages": total_pages,
                "total_entries": len(rows),
                "next_page": number + 1 if number and more else None,
                "previous_page": number - 1 if number and number > 1 else None,
                "page": number,
                "links": {
                    "first": f"{link}&page=1",
                    "next": f"{link}&cursor={_cursor(chunk[-1]['id'])}" if more else None,
                    "previous": None,
                    "last": f"{link}&page={total_pages}",
                },
            },
        )

    def create_named(self, request: Request, table: dict[int, dict], add) -> Response:
        name = _fields(request).get("name")
        if not isinstance(name, str) or not name.strip():
            return _invalid("Name can't be blank")
        if any(_folded(row["name"]) == _folded(name) for row in table.values()):
            return _invalid("Name has already been taken")
        return Response(201, table[add(name)])

    def get_client(self, request: Request, client_id: str) -> Response:
        client = self.clients.get(int(client_id))
        return Response(200, client) if client else self.not_found()

    def create_client(self, request: Request) -> Response:
        currency = _fields(request).get("currency", "USD")
        # HV-DOCS clients: "the currency used by the client"; Harvest lists the codes it takes.
        if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
            return _invalid("Currency is not included in the list")
        return self.create_named(
            request, self.clients, lambda name: self.add_client(name, currency)
        )

    def create_project(self, request: Request) -> Response:
        body = _fields(request)
        missing = [name for name in PROJECT_REQUIRED if body.get(name) is None]
        if missing:
            return _invalid(f"{', '.join(missing)} can't be blank")
        if problem := self._project_problem(body):
            return _invalid(problem)
        return Response(201, self._create_project(body))

    def get_project(self, request: Request, project_id: str) -> Response:
        project = self.projects.get(int(project_id))
        return Response(200, project) if project else self.not_found()

    def update_project(self, request: Request, project_id: str) -> Response:
        project = self.projects.get(int(project_id))
        if project is None:
            return self.not_found()
        changes = {k: v for k, v in _fields(request).items() if k in PATCHABLE}
        merged = {k: project[k] for k in PATCHABLE} | changes
        merged |= {"id": project["id"], "client_id": project["client"]["id"]}
        if problem := self._project_problem(merged):
            return _invalid(problem)
        project.update(changes, updated_at=_now())
        project["budget"] = _project_budget(project)
        return Response(200, project)

    def _project_problem(self, body: dict) -> str | None:
        client_id = body["client_id"]
        if type(client_id) is not int or client_id not in self.clients:
            return "Client can't be blank"
        if not isinstance(body["name"], str) or not body["name"].strip():
            return "Name can't be blank"
        flags = ("is_billable", "is_active", "is_fixed_fee")
        if not all(isinstance(body.get(k, True), bool) for k in flags):
            return "is_billable, is_active and is_fixed_fee must be true or false"
        if problem := _money_problem(body):
            return problem
        if body["bill_by"] not in BILL_BY or body["budget_by"] not in BUDGET_BY:
            return "Bill by or budget by is not included in the list"
        budget = body.get("budget")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int | float)):
            return "Budget is not a number"
        if not all(body.get(k) is None or _is_date(body[k]) for k in ("starts_on", "ends_on")):
            return "Starts on and ends on must be dates like 2017-12-31"
        siblings = (p for p in self.projects.values() if p["client"]["id"] == client_id)
        if any(p["name"] == body["name"] and p["id"] != body.get("id") for p in siblings):
            return "Name has already been taken"
        return None

    def list_assignments(self, request: Request, project_id: str, kind: str) -> Response:
        if int(project_id) not in self.projects:
            return self.not_found()
        table = self._kinds[kind][1]
        mine = {i: a for i, a in table.items() if a["project"]["id"] == int(project_id)}
        return self.page(request, f"{kind}_assignments", mine)

    def assign(self, request: Request, project_id: str, kind: str) -> Response:
        project = self.projects.get(int(project_id))
        if project is None:
            return self.not_found()
        known, table = self._kinds[kind]
        body = _fields(request)
        who_id = body.get(f"{kind}_id")
        who = known.get(who_id) if type(who_id) is int else None
        if who is None:
            return _invalid(f"{kind.capitalize()} can't be blank")
        if problem := _assignment_problem(body):
            return _invalid(problem)
        # HV-DOCS documents 422 as "there was an error processing your request": an archived
        # task or user and a second assignment all answer it, in words we must not parse.
        if not who["is_active"]:
            return _invalid(f"{kind.capitalize()} is archived")
        pairs = {(a["project"]["id"], a[kind]["id"]) for a in table.values()}
        if (project["id"], who["id"]) in pairs:
            return _invalid(f"{kind.capitalize()} has already been assigned to this project")
        return Response(201, self._assign(kind, project, who, body))

    def update_assignment(
        self, request: Request, project_id: str, kind: str, assignment_id: str
    ) -> Response:
        assignment = self._kinds[kind][1].get(int(assignment_id))
        if assignment is None or assignment["project"]["id"] != int(project_id):
            return self.not_found()
        body = _fields(request)
        if problem := _assignment_problem(body):
            return _invalid(problem)
        fields = ("is_active", "billable", "budget", "hourly_rate", "is_project_manager")
        assignment.update({k: body[k] for k in fields if k in body}, updated_at=_now())
        return Response(200, assignment)


if __name__ == "__main__":
    serve_main(lambda args: FakeHarvest(latency=args.latency), "A fake Harvest API v2 account")
