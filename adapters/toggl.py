"""Toggl Track (API v9) as a ``TimesheetTool``: one workspace, reached with one API token.

Vendor facts come from Toggl's public API v9 docs (engineering.toggl.com/docs): Basic
auth as ``<token>:api_token``, failed auth is 403, the hourly quota answers 402, error bodies
are usually a JSON-encoded string, ids are integers, and names are unique (clients per
workspace, projects per client, archived ones included).

The adapter is one class, ``TogglTool``, in rooms by job: this module holds the clients,
the projects, the people and the references people paste; the commercial shape (money
fields, plan, template tasks) is in ``adapters.toggl_commercial``, and how ids and names are
read in ``adapters.toggl_ids``.

The workspace's users are read once and kept by e-mail for a few minutes (``ReadCache``; see
``adapters.read_cache`` for what may be kept and why); a kept user id Toggl then refuses is
dropped and the provisioning tried again with a fresh read (``StaleRead``).
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import tenacity

from adapters.http import UNOBSERVED, HttpObserver, VendorHttp
from adapters.pacing import HourlyQuota, Pacer
from adapters.read_cache import ReadCache, StaleRead
from adapters.toggl_commercial import MONEY_FIELDS as MONEY_FIELDS
from adapters.toggl_commercial import PREMIUM_FIELDS, TogglCommercial
from adapters.toggl_ids import _DIGITS, _number, fold
from handlers.ports import ProjectSpec, ToolClient, ToolProject
from schemas.errors import InvalidReference, TimesheetNotFound, VendorRejected

WEB_HOST = "track.toggl.com"
PAGE_SIZE = 200  # the most ``GET .../projects`` gives per page
_WEB_PATH = re.compile(r"/([0-9]+)/projects/([0-9]+)(?:/.*)?")
QUOTA_REMAINING = "X-Toggl-Quota-Remaining"
QUOTA_RESETS_IN = "X-Toggl-Quota-Resets-In"
# Our clock and Toggl's may disagree a little; a project stamped this much before our intent
# still counts as ours. A person making the same name under the same client within that
# minute is the one case this cannot tell apart.
CLOCK_SKEW = timedelta(seconds=60)


def is_quota_refusal(response) -> bool:
    """Toggl's 402 means the hourly quota is spent (with the quota headers saying 0 left) or
    that the plan lacks a feature. 429 is always a throttle. A 402 with no quota figure is
    read as the plan's refusal: that fails with the vendor's words at once, while a throttle
    would be retried for up to an hour (support.toggl.com, api-webhook-limits)."""
    if response.status_code == 429:
        return True
    if response.status_code != 402:
        return False
    remaining = response.headers.get(QUOTA_REMAINING)
    return remaining == "0" or (remaining is None and QUOTA_RESETS_IN in response.headers)


class TogglTool(TogglCommercial):
    name = "toggl"

    def __init__(
        self,
        api_token: str,
        workspace_id: str,
        *,
        base_url: str = "https://api.track.toggl.com/api/v9",
        retrying: tenacity.Retrying,
        pacer: Pacer | None = None,
        observer: HttpObserver = UNOBSERVED,
        read_timeout: float = 30.0,
        reads: ReadCache | None = None,
    ):
        if not _DIGITS.fullmatch(str(workspace_id)):
            raise ValueError("a Toggl workspace id is a number")
        self.workspace_id = str(workspace_id)
        basic = base64.b64encode(f"{api_token}:api_token".encode()).decode()
        self.http = VendorHttp(
            "toggl",
            base_url,
            headers={"Authorization": f"Basic {basic}"},
            retrying=retrying,
            pacer=pacer,
            observer=observer,
            timeout=(5.0, read_timeout),
            # The default error text already reads Toggl's JSON-string bodies (and an object's
            # ``message``/``error``, or plain text), so there is no Toggl-specific reader.
            # A 402 is the hourly quota (wait until it resets) or the plan (a refusal).
            throttle_statuses=frozenset({429, 402}),
            is_throttle=is_quota_refusal,
            # Every answer carries the quota headers; only a quota 402's reset is a wait.
            retry_hint=lambda r: r.headers.get(
                QUOTA_RESETS_IN if r.status_code == 402 else "Retry-After"
            ),
            # The hourly quota (30/240/600 by plan) is the real ceiling: what the answers say
            # is left decides whether the next request is sent now, later, or not at all.
            # The pacer keeps it, for all workers on the workspace when the pacer is shared.
            quota=(
                pacer.hourly_quota(QUOTA_REMAINING, QUOTA_RESETS_IN)
                if pacer
                else HourlyQuota(QUOTA_REMAINING, QUOTA_RESETS_IN)
            ),
        )
        self._ws = f"/workspaces/{self.workspace_id}"
        self._workspace: dict[str, Any] | None = None  # plan and currency, read once
        self._fresh: set[int] = set()  # projects this process made: no members listed yet
        self.reads = reads if reads is not None else ReadCache()  # ("user", e-mail) -> id

    # -- references -------------------------------------------------------------------------
    def parse_reference(self, reference: str) -> str:
        text = reference.strip()
        if _DIGITS.fullmatch(text):
            return text
        parts = urlsplit(text if "://" in text else f"https://{text}")
        match = _WEB_PATH.fullmatch(parts.path)
        if parts.scheme not in ("http", "https") or parts.hostname != WEB_HOST or not match:
            raise InvalidReference(f"not a Toggl Track project id or URL: {text[:80]!r}")
        workspace, project = match.groups()
        if workspace != self.workspace_id:
            raise InvalidReference(
                f"the Toggl URL is in workspace {workspace}, not ours ({self.workspace_id})"
            )
        return project

    def project_url(self, project_id: str) -> str:
        return f"https://{WEB_HOST}/{self.workspace_id}/projects/{project_id}/team"

    # -- clients ----------------------------------------------------------------------------
    def clients_named(self, name: str) -> list[ToolClient]:
        # No name filter on the server worth trusting, so list them all and match here.
        found = self.http.request("GET", f"{self._ws}/clients", params={"status": "both"})
        wanted = fold(name)
        return [
            ToolClient(str(c["id"]), c["name"])
            for c in found.json() or []
            if fold(c.get("name") or "") == wanted
        ]

    def create_client(self, name: str) -> ToolClient:
        body = {"name": name, "wid": int(self.workspace_id)}
        try:
            created = self.http.request("POST", f"{self._ws}/clients", json=body).json()
        except VendorRejected as refused:
            # Client names are unique per workspace: a 400 here most likely means another
            # worker created it since we looked. Adopt it if it is unambiguous.
            if refused.status != 400 or len(matches := self.clients_named(name)) != 1:
                raise
            return matches[0]
        return ToolClient(str(created["id"]), created["name"])

    # -- projects ---------------------------------------------------------------------------
    def create_project(self, spec: ProjectSpec) -> ToolProject:
        body: dict[str, Any] = {
            "name": spec.name,
            "client_id": _number(spec.client_id, "client"),
            "active": True,
            # Only private projects have members; a public one is open to the whole workspace.
            "is_private": bool(spec.options.get("is_private", spec.has_team)),
        }
        if self._has_premium():  # else left out, and complete_setup says so
            body["billable"] = spec.billable
            if spec.budget_hours is not None:
                # Toggl takes whole hours only; round half up rather than Python's half-to-even.
                body["estimated_hours"] = math.floor(spec.budget_hours + 0.5)
        body |= self._commercial(spec)[0]
        if spec.starts_on:
            body["start_date"] = spec.starts_on.isoformat()
        if spec.ends_on:
            body["end_date"] = spec.ends_on.isoformat()
        # A "name has already been taken" 400 is not adopted here: only the handler knows
        # whether an earlier attempt of ours may have made it (then it calls find_project).
        try:
            created = self.http.request("POST", f"{self._ws}/projects", json=body).json()
        except VendorRejected as refused:
            if refused.status != 402:
                raise
            self._workspace = None  # the plan changed since we read it: read it again next time
            sent = [f for f in PREMIUM_FIELDS if f in body]
            raise VendorRejected(
                f"toggl: the workspace's plan refuses {', '.join(sent) or 'a field we sent'}"
                f" ({refused.message})",
                status=402,
            ) from None
        self._fresh.add(int(created["id"]))
        return self._project(created)

    def find_project(
        self, client_id: str, marker: str, name: str, since: datetime | None = None
    ) -> ToolProject | None:
        # Toggl projects have no free-text field to carry our marker. A project name is unique
        # per client (archived ones included), but a person may have made that name by hand:
        # only a project made after our intent was recorded can be our interrupted create.
        if since is None:
            return None
        cid, wanted = _number(client_id, "client"), fold(name)
        params = {"client_ids": cid, "name": name, "active": "both", "per_page": PAGE_SIZE}
        for page in range(1, 1000):  # a bound against a server that never ends, not a limit
            params["page"] = page
            batch = self.http.request("GET", f"{self._ws}/projects", params=params).json() or []
            for project in batch:
                if fold(project["name"]) == wanted and _client_of(project) == str(cid):
                    made = _instant(project.get("created_at"))
                    return self._project(project) if made and made >= since - CLOCK_SKEW else None
            if len(batch) < PAGE_SIZE:
                break
        return None

    def get_project(self, project_id: str) -> ToolProject:
        path = f"{self._ws}/projects/{_number(project_id, 'project', TimesheetNotFound)}"
        response = self.http.request("GET", path, ok_statuses=frozenset({404}))
        if response.status_code == 404:
            raise TimesheetNotFound(f"no Toggl project {project_id}")
        return self._project(response.json())

    def set_archived(self, project_id: str, archived: bool) -> None:
        path = f"{self._ws}/projects/{_number(project_id, 'project', TimesheetNotFound)}"
        body = {"active": not archived}  # Toggl archives by deactivating
        response = self.http.request("PUT", path, json=body, ok_statuses=frozenset({404}))
        if response.status_code == 404:
            raise TimesheetNotFound(f"no Toggl project {project_id}")

    # -- people -----------------------------------------------------------------------------
    def find_users(self, emails: Sequence[str]) -> dict[str, str]:
        # No server-side e-mail filter exists, so list the workspace's users and match here.
        # The list holds deactivated and deleted users too (``inactive``, ``is_active``):
        # they cannot log time, so for a team they are as good as missing.
        wanted = {e.strip().lower() for e in emails}
        kept = {e: self.reads.get(("user", e)) for e in wanted}
        if all(kept.values()):
            return kept
        active = self._active_users()
        return {e: active[e] for e in wanted if e in active}

    def _active_users(self) -> dict[str, str]:
        """E-mail -> id of every user who can log time, read now and kept."""
        users = self.http.request("GET", f"{self._ws}/users").json() or []
        active = {
            email: str(u["id"])
            for u in users
            if (email := (u.get("email") or "").strip().lower())
            and u.get("inactive") is not True
            and u.get("is_active", True) is not False
        }
        for email, user_id in active.items():
            self.reads.put(("user", email), user_id)
        return active

    def _user_went_stale(self, user_id: str) -> bool:
        """Whether ``user_id`` came from a kept read and a fresh one no longer has it active."""
        return self.reads.went_stale("user", user_id, lambda: self._active_users().values())

    def assign_team(self, project_id: str, user_ids: Sequence[str]) -> None:
        pid = _number(project_id, "project", TimesheetNotFound)
        # A project this process just made has no members to list (a saved call a project on
        # the hourly quota); anything else, or a refused add, is decided from the listing.
        present = set() if pid in self._fresh else self._members(pid)
        self._fresh.discard(pid)
        for user_id in dict.fromkeys(u for u in user_ids if u not in present):
            body = {"project_id": pid, "user_id": _number(user_id, "user")}
            try:
                self.http.request("POST", f"{self._ws}/project_users", json=body)
            except VendorRejected as refused:
                if refused.status != 400:
                    raise
                # Toggl documents no wording for "already a member": look, do not parse.
                if user_id in self._members(pid):
                    continue
                if self._user_went_stale(user_id):
                    raise StaleRead(
                        f"toggl user {user_id} is no longer active; the team is read again on"
                        " the next attempt"
                    ) from None
                raise

    def _members(self, pid: int) -> set[str]:
        listed = self.http.request("GET", f"{self._ws}/project_users", params={"project_ids": pid})
        return {str(m["user_id"]) for m in listed.json() or [] if m.get("project_id") == pid}

    # -- helpers ----------------------------------------------------------------------------
    def _project(self, raw: dict[str, Any]) -> ToolProject:
        return ToolProject(
            id=str(raw["id"]),
            name=raw["name"],
            client_id=_client_of(raw),
            url=self.project_url(str(raw["id"])),
            archived=not raw.get("active", True),
        )


def _instant(text: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _client_of(project: dict[str, Any]) -> str | None:
    client = project.get("client_id") or project.get("cid")  # ``cid`` is the v8 name
    return str(client) if client else None
