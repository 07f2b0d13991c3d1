"""A fake Clockify API v1 workspace over real HTTP, for integration tests and demos.

It keeps the rules the adapter depends on (Clockify's API reference, docs.clockify.me):
``X-Api-Key`` auth (401 code 1000), one workspace (403 elsewhere), 24-hex ids, errors as
``{"message", "code"}``, 201 on create, 400 on bad input and malformed ids, 409 on a
duplicate client name, 400 code 501 on a duplicate project name under one client,
``page``/``page-size`` paging with ``total-count`` and ``Last-Page`` headers, and 429
without Retry-After (Clockify documents none).

Money (issue 21): the workspace names its currencies (``currencies``, one ``isDefault``); a
project's ``hourlyRate`` is ``{amount, currency}`` with the amount an integer in cents; the
estimates (``PATCH .../estimate``) are a paid feature, ``budgetEstimate.estimate`` an integer
in cents *(assumption: cents, as every Clockify amount)*, and only one of the time and budget
estimates may be active. Tasks belong to a project, names unique in it *(assumption)*, each
with an ISO-8601 ``estimate``.

    python -m fakes.clockify --port 8003
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from fakes.base import FakeVendor, Request, Response, Route, is_invalid_json, serve_main

_ID = re.compile(r"[0-9a-f]{24}")
_DURATION = re.compile(r"PT(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?")
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
_WS = r"/api/v1/workspaces/([^/]+)"


def duration_hours(text: str) -> float | None:
    """``PT37H30M`` -> 37.5; None when ``text`` is not an ISO-8601 duration we accept."""
    found = _DURATION.fullmatch(text or "")
    if not found:
        return None
    h, m, s = (int(part or 0) for part in found.groups())
    return h + m / 60 + s / 3600


# Requests a workspace may make, by plan (clockify.me/help/getting-started/
# webhook-and-api-limitations): new free workspaces 30 an hour, paid ones 50 a second.
PLAN_RATES = {"free": (30, 3600.0), "paid": (50, 1.0)}
BY_PLAN = (0, 0.0)  # rate_limit default: the plan's
UNSET_ESTIMATE = {"estimate": "PT0S", "type": "AUTO", "active": False, "resetOption": None}
UNSET_BUDGET = {"estimate": 0, "type": "AUTO", "active": False, "resetOption": None}
ESTIMATE_TYPES = ("AUTO", "MANUAL")


def _cents(value: Any) -> bool:
    """Clockify amounts are integers (cents); a float or a bool is not one."""
    return type(value) is int and value >= 0


def _error(status: int, message: str, code: int = 501) -> Response:
    return Response(status, {"message": message, "code": code})


class FakeClockify(FakeVendor):
    name = "clockify"

    def __init__(
        self,
        workspace_id: str = "5b641568b07987035750505e",
        api_key: str = "clockify-test-key",
        *,
        rate_limit: tuple[int, float] | None = BY_PLAN,
        latency: float = 0.0,
        page_size: int = 50,
        max_page_size: int = 500,
        plan: str = "paid",
        hour: float = 3600.0,  # shorter in benchmarks: a free workspace's hour in seconds
        currency: str = "USD",
    ):
        if rate_limit == BY_PLAN:
            calls, period = PLAN_RATES[plan]
            rate_limit = (calls, period * hour / 3600.0 if plan == "free" else period)
        super().__init__(rate_limit=rate_limit, latency=latency)
        self.plan = plan  # free | paid: the rate and the estimates (a paid feature)
        self.currencies = [currency]  # the workspace's; the first is its default
        self.workspace_id = workspace_id
        self.api_key = api_key
        self.page_size = page_size  # when a request names none
        self.max_page_size = max_page_size  # more is never served, whatever is asked
        self.clients: dict[str, dict[str, Any]] = {}
        self.projects: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.received: list[Request] = []  # every request, with its query and headers

    # -- seeding, bypassing the API -----------------------------------------------------
    def add_user(self, email: str, name: str | None = None) -> str:
        uid = secrets.token_hex(12)
        with self.lock:
            self.users[uid] = {
                "id": uid,
                "email": email,
                "name": name or email.split("@")[0],
                "status": "ACTIVE",
                "activeWorkspace": self.workspace_id,
            }
        return uid

    def add_client(self, name: str) -> str:
        cid = secrets.token_hex(12)
        with self.lock:
            self.clients[cid] = {
                "id": cid,
                "name": name,
                "workspaceId": self.workspace_id,
                "archived": False,
                "note": "",
            }
        return cid

    def add_project(self, client_id: str | None, name: str, note: str = "", **fields: Any) -> str:
        pid = secrets.token_hex(12)
        with self.lock:
            client = self.clients.get(client_id or "")
            self.projects[pid] = {
                "id": pid,
                "name": name,
                "clientId": client_id or "",
                "clientName": client["name"] if client else "",
                "workspaceId": self.workspace_id,
                "billable": True,
                "public": True,
                "color": "#03A9F4",
                "archived": False,
                "note": note,
                "estimate": {"estimate": "PT0S", "type": "AUTO"},
                "timeEstimate": dict(UNSET_ESTIMATE),
                "budgetEstimate": None,
                "hourlyRate": None,
                "duration": "PT0S",
                "memberships": [],
                **fields,
            }
        return pid

    def add_task(self, project_id: str, name: str, estimate: str = "PT0S") -> str:
        tid = secrets.token_hex(12)
        with self.lock:
            self.tasks[tid] = {
                "id": tid,
                "name": name,
                "projectId": project_id,
                "assigneeIds": [],
                "estimate": estimate,
                "status": "ACTIVE",
                "duration": "PT0S",
                "billable": True,
                "hourlyRate": None,
                "costRate": None,
            }
        return tid

    # -- the vendor's rules ---------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        with self.lock:
            self.received.append(request)
        return super().handle(request)

    def authenticate(self, request: Request) -> Response | None:
        if request.headers.get("x-api-key") != self.api_key:
            return _error(401, "Full authentication is required to access this resource", 1000)
        workspace = re.match(_WS, request.path)
        if workspace and workspace.group(1) != self.workspace_id:
            return _error(403, "Access denied to this workspace", 403)
        return None

    def throttle_response(self, retry_after: int) -> Response:
        return _error(429, "Too many requests", 429)  # no Retry-After: none is documented

    def not_found(self) -> Response:
        return _error(404, "not found", 0)

    def routes(self) -> list[Route]:
        project = _WS + r"/projects/([^/]+)"
        return [
            ("GET", re.compile(_WS), self.get_workspace),
            ("GET", re.compile(_WS + "/clients"), self.list_clients),
            ("POST", re.compile(_WS + "/clients"), self.create_client),
            ("GET", re.compile(_WS + "/projects"), self.list_projects),
            ("POST", re.compile(_WS + "/projects"), self.create_project),
            ("GET", re.compile(project), self.get_project),
            ("PUT", re.compile(project), self.update_project),
            ("PATCH", re.compile(project + "/estimate"), self.update_estimate),
            ("POST", re.compile(project + "/memberships"), self.change_memberships),
            ("GET", re.compile(project + "/tasks"), self.list_tasks),
            ("POST", re.compile(project + "/tasks"), self.create_task),
            ("GET", re.compile(_WS + "/users"), self.list_users),
        ]

    def page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        try:
            page = int(request.arg("page", "1"))
            size = min(int(request.arg("page-size", str(self.page_size))), self.max_page_size)
        except ValueError:
            return _error(400, "page and page-size must be numbers")
        if page < 1 or size < 1:
            return _error(400, "page and page-size must be positive")
        chunk = items[(page - 1) * size : page * size]
        last = page * size >= len(items)
        headers = {"total-count": str(len(items)), "Last-Page": str(last).lower()}
        return Response(200, chunk, headers)

    def get_workspace(self, request: Request, _ws: str) -> Response:
        paid = self.plan != "free"
        currencies = [
            {"id": secrets.token_hex(12), "code": code, "isDefault": i == 0}
            for i, code in enumerate(self.currencies)
        ]
        return Response(
            200,
            {
                "id": self.workspace_id,
                "name": "Fake workspace",
                "currencies": currencies,
                "hourlyRate": {"amount": 0, "currency": self.currencies[0]},
                "featureSubscriptionType": "PRO" if paid else "FREE",
            },
        )

    def _bad_rate(self, rate: Any) -> Response | None:
        """``hourlyRate``: ``{amount: cents (integer), currency?}``, in a workspace currency."""
        if rate is None:
            return None
        if not isinstance(rate, dict) or not _cents(rate.get("amount")):
            return _error(400, "hourlyRate.amount must be a whole number of cents")
        if rate.get("currency", self.currencies[0]) not in self.currencies:
            return _error(400, f"Currency {str(rate.get('currency'))[:10]} is not in the workspace")
        return None

    def _rate(self, rate: dict[str, Any] | None) -> dict[str, Any] | None:
        if rate is None:
            return None
        return {"amount": rate["amount"], "currency": rate.get("currency", self.currencies[0])}

    def list_clients(self, request: Request, _ws: str) -> Response:
        wanted = (request.arg("name") or "").casefold()
        return self.page(
            request, [c for c in self.clients.values() if wanted in c["name"].casefold()]
        )

    def create_client(self, request: Request, _ws: str) -> Response:
        body = request.body if isinstance(request.body, dict) else {}
        name = str(body.get("name") or "").strip()
        if refusal := self._bad_name(name):
            return refusal
        if any(c["name"].strip().casefold() == name.casefold() for c in self.clients.values()):
            return _error(409, f"Client with name '{name}' already exists", 501)
        return Response(201, self.clients[self.add_client(name)])

    def list_projects(self, request: Request, _ws: str) -> Response:
        clients = set(filter(None, (request.arg("clients") or "").split(",")))
        archived = request.arg("archived")
        name = (request.arg("name") or "").casefold()
        return self.page(
            request,
            [
                p
                for p in self.projects.values()
                if (not clients or p["clientId"] in clients)
                and (archived is None or str(p["archived"]).lower() == archived.lower())
                and name in p["name"].casefold()
            ],
        )

    def _bad_project(self, name: str, client_id: str) -> Response | None:
        """What a create and a full update refuse alike: a bad name, a foreign client."""
        if refusal := self._bad_name(name):
            return refusal
        if client_id and client_id not in self.clients:
            return _error(400, "Client doesn't belong to Workspace", 501)
        return None

    def create_project(self, request: Request, _ws: str) -> Response:
        if is_invalid_json(request.body) or not isinstance(request.body, dict):
            return _error(400, "Malformed JSON request")
        body = request.body
        name = str(body.get("name") or "").strip()
        client_id = body.get("clientId") or ""
        if refusal := self._bad_project(name, client_id):
            return refusal
        if "color" in body and not _COLOR.fullmatch(str(body["color"])):
            return _error(400, "color must be a #RRGGBB value")
        if refusal := self._bad_rate(body.get("hourlyRate")):
            return refusal
        if refusal := self._duplicate(name, client_id, None):
            return refusal
        # The create body's old ``estimate`` is not kept: estimates are the ``timeEstimate``
        # that PATCH .../estimate sets (n8n-io/n8n#25487 meets the old field being ignored).
        pid = self.add_project(
            client_id,
            name,
            str(body.get("note") or ""),
            billable=bool(body.get("billable", True)),
            public=bool(body.get("isPublic", False)),
            color=body.get("color", "#03A9F4"),
            hourlyRate=self._rate(body.get("hourlyRate")),
        )
        return Response(201, self.projects[pid])

    def _duplicate(self, name: str, client_id: str, pid: str | None) -> Response | None:
        for other in self.projects.values():
            if (
                other["id"] != pid
                and other["clientId"] == client_id
                and other["name"].casefold() == name.casefold()
            ):
                owner = self.clients[client_id]["name"] if client_id else "no client"
                return _error(400, f"Other project for client {owner} already exists.", 501)
        return None

    def get_project(self, request: Request, _ws: str, pid: str) -> Response:
        return self._project_or_error(pid) or Response(200, self.projects[pid])

    def update_project(self, request: Request, _ws: str, pid: str) -> Response:
        """PUT replaces the project's settings: what the body leaves out is reset to its
        default, as a client that sends the whole project back expects *(assumption: the
        docs show the full body; the strict reading, so a partial update shows)*."""
        if refusal := self._project_or_error(pid):
            return refusal
        if not isinstance(request.body, dict):
            return _error(400, "Malformed JSON request")
        body = request.body
        name = str(body.get("name") or "").strip()
        client_id = body.get("clientId") or ""
        if refusal := self._bad_project(name, client_id):
            return refusal
        for key in ("archived", "billable", "isPublic"):
            if key in body and not isinstance(body[key], bool):
                return _error(400, f"{key} must be true or false")
        if refusal := self._bad_rate(body.get("hourlyRate")):
            return refusal
        if refusal := self._duplicate(name, client_id, pid):
            return refusal
        client = self.clients.get(client_id)
        self.projects[pid].update(
            name=name,
            clientId=client_id,
            clientName=client["name"] if client else "",
            archived=body.get("archived", False),
            billable=body.get("billable", False),
            public=body.get("isPublic", False),
            color=body.get("color", "#03A9F4"),
            note=str(body.get("note") or ""),
            hourlyRate=self._rate(body.get("hourlyRate")),
        )
        return Response(200, self.projects[pid])

    def update_estimate(self, request: Request, _ws: str, pid: str) -> Response:
        if refusal := self._project_or_error(pid):
            return refusal
        if self.plan == "free":  # estimates are a paid feature; the answer's words assumed
            return _error(403, "Feature not available on the workspace's plan", 403)
        body = request.body if isinstance(request.body, dict) else {}
        time, money = body.get("timeEstimate"), body.get("budgetEstimate")
        if time is None and money is None:
            return _error(400, "timeEstimate or budgetEstimate is required")
        if time is not None and not (
            _estimate_shape(time) and duration_hours(time.get("estimate")) is not None
        ):
            return _error(400, "timeEstimate.estimate must be an ISO-8601 duration like PT10H")
        if money is not None and not (_estimate_shape(money) and _cents(money.get("estimate"))):
            return _error(400, "budgetEstimate.estimate must be a whole number of cents")
        project = self.projects[pid]
        after_time = dict(UNSET_ESTIMATE) | (project["timeEstimate"] or {}) | (time or {})
        after_money = dict(UNSET_BUDGET) | (project["budgetEstimate"] or {}) | (money or {})
        if after_time["active"] and after_money["active"]:
            return _error(400, "Only one of the time and budget estimates may be active")
        project["timeEstimate"], project["budgetEstimate"] = after_time, after_money
        return Response(200, project)

    def change_memberships(self, request: Request, _ws: str, pid: str) -> Response:
        if refusal := self._project_or_error(pid):
            return refusal
        body = request.body if isinstance(request.body, dict) else {}
        user_ids = body.get("userIds")
        if not isinstance(user_ids, list) or any(u not in self.users for u in user_ids):
            return _error(400, "userIds must name users of this workspace")
        project, remove = self.projects[pid], bool(body.get("remove", False))
        kept = [m for m in project["memberships"] if not (remove and m["userId"] in user_ids)]
        present = {m["userId"] for m in kept}
        if not remove:
            kept += [self._membership(pid, u) for u in dict.fromkeys(user_ids) if u not in present]
        project["memberships"] = kept
        return Response(200, project)

    def list_tasks(self, request: Request, _ws: str, pid: str) -> Response:
        if refusal := self._project_or_error(pid):
            return refusal
        return self.page(request, [t for t in self.tasks.values() if t["projectId"] == pid])

    def create_task(self, request: Request, _ws: str, pid: str) -> Response:
        if refusal := self._project_or_error(pid):
            return refusal
        if not isinstance(request.body, dict):
            return _error(400, "Malformed JSON request")
        body = request.body
        name = str(body.get("name") or "").strip()
        if not 1 <= len(name) <= 1000:
            return _error(400, "task name must be between 1 and 1000 characters")
        estimate = body.get("estimate", "PT0S")
        if duration_hours(estimate) is None:
            return _error(400, "estimate must be an ISO-8601 duration like PT10H")
        if body.get("status", "ACTIVE") not in ("ACTIVE", "DONE"):
            return _error(400, "status must be ACTIVE or DONE")
        taken = (t["name"].casefold() for t in self.tasks.values() if t["projectId"] == pid)
        if name.casefold() in taken:
            return _error(400, f"Task with name '{name}' already exists", 501)  # (assumption)
        tid = self.add_task(pid, name, estimate)
        self.tasks[tid]["status"] = body.get("status", "ACTIVE")
        return Response(201, self.tasks[tid])

    def list_users(self, request: Request, _ws: str) -> Response:
        email = (request.arg("email") or "").casefold()
        return self.page(
            request, [u for u in self.users.values() if email in u["email"].casefold()]
        )

    # -- small helpers --------------------------------------------------------------------
    def _bad_name(self, name: str) -> Response | None:
        if not 2 <= len(name) <= 250:
            return _error(400, "name must be between 2 and 250 characters")
        return None

    def _project_or_error(self, pid: str) -> Response | None:
        if not _ID.fullmatch(pid):
            return _error(400, f"Project id {pid[:40]} is not valid", 501)
        return None if pid in self.projects else self.not_found()

    @staticmethod
    def _membership(pid: str, uid: str) -> dict[str, Any]:
        return {
            "userId": uid,
            "targetId": pid,
            "membershipType": "PROJECT",
            "membershipStatus": "ACTIVE",
            "hourlyRate": None,
        }


def _estimate_shape(estimate: Any) -> bool:
    return (
        isinstance(estimate, dict)
        and estimate.get("type", "AUTO") in ESTIMATE_TYPES
        and isinstance(estimate.get("active", False), bool)
    )


if __name__ == "__main__":
    serve_main(lambda args: FakeClockify(latency=args.latency), "A fake Clockify API v1.")
