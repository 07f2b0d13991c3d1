"""Toggl Track (API v9) as a ``TimesheetTool``: one workspace, reached with one API token.

Vendor facts come from ``reference/vendor-apis.md`` section 3 (Toggl's public docs): Basic
auth as ``<token>:api_token``, failed auth is 403, the hourly quota answers 402, error bodies
are usually a JSON-encoded string, ids are integers, and names are unique (clients per
workspace, projects per client, archived ones included).
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import tenacity

from adapters.http import VendorHttp
from adapters.pacing import Pacer
from handlers.ports import ProjectSpec, ToolClient, ToolProject
from schemas.errors import InvalidReference, TimesheetNotFound, VendorRejected

WEB_HOST = "track.toggl.com"
PAGE_SIZE = 200  # the most ``GET .../projects`` gives per page
_WEB_PATH = re.compile(r"/([0-9]+)/projects/([0-9]+)(?:/.*)?")
_DIGITS = re.compile(r"[0-9]+")  # str.isdigit() would also accept "²" and other digits


def fold(name: str) -> str:
    """How we compare names: case and runs of whitespace do not count."""
    return " ".join(name.split()).casefold()


class TogglTool:
    name = "toggl"

    def __init__(
        self,
        api_token: str,
        workspace_id: str,
        *,
        base_url: str = "https://api.track.toggl.com/api/v9",
        retrying: tenacity.Retrying,
        pacer: Pacer | None = None,
        read_timeout: float = 30.0,
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
            timeout=(5.0, read_timeout),
            # The default error text already reads Toggl's JSON-string bodies (and an object's
            # ``message``/``error``, or plain text), so there is no Toggl-specific reader.
            # 402 is the hourly quota running out, not a refusal: wait until it resets.
            throttle_statuses=frozenset({429, 402}),
            retry_after_headers=("Retry-After", "X-Toggl-Quota-Resets-In"),
        )
        self._ws = f"/workspaces/{self.workspace_id}"

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
            "billable": spec.billable,
            # Only private projects have members; a public one is open to the whole workspace.
            "is_private": bool(spec.options.get("is_private", spec.has_team)),
        }
        if spec.budget_hours is not None:
            # Toggl takes whole hours only; round half up rather than Python's half-to-even.
            body["estimated_hours"] = math.floor(spec.budget_hours + 0.5)
        if spec.starts_on:
            body["start_date"] = spec.starts_on.isoformat()
        if spec.ends_on:
            body["end_date"] = spec.ends_on.isoformat()
        # A "name has already been taken" 400 is not adopted here: only the handler knows
        # whether an earlier attempt of ours may have made it (then it calls find_project).
        created = self.http.request("POST", f"{self._ws}/projects", json=body).json()
        return self._project(created)

    def find_project(self, client_id: str, marker: str, name: str) -> ToolProject | None:
        # Toggl projects have no free-text field to carry our marker, but a project name is
        # unique per client (archived ones included), so the name we gave is the marker.
        cid, wanted = _number(client_id, "client"), fold(name)
        params = {"client_ids": cid, "name": name, "active": "both", "per_page": PAGE_SIZE}
        for page in range(1, 1000):  # a bound against a server that never ends, not a limit
            params["page"] = page
            batch = self.http.request("GET", f"{self._ws}/projects", params=params).json() or []
            for project in batch:
                if fold(project["name"]) == wanted and _client_of(project) == str(cid):
                    return self._project(project)
            if len(batch) < PAGE_SIZE:
                break
        return None

    def complete_setup(self, project_id: str, spec: ProjectSpec) -> None:
        """Nothing beyond the create and the team."""

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
        wanted = {e.strip().lower() for e in emails}
        users = self.http.request("GET", f"{self._ws}/users").json() or []
        return {
            email: str(u["id"])
            for u in users
            if (email := (u.get("email") or "").strip().lower()) in wanted
        }

    def assign_team(self, project_id: str, user_ids: Sequence[str]) -> None:
        pid = _number(project_id, "project", TimesheetNotFound)
        listed = self.http.request("GET", f"{self._ws}/project_users", params={"project_ids": pid})
        present = {str(m["user_id"]) for m in listed.json() or [] if m.get("project_id") == pid}
        for user_id in dict.fromkeys(u for u in user_ids if u not in present):
            body = {"project_id": pid, "user_id": _number(user_id, "user")}
            try:
                self.http.request("POST", f"{self._ws}/project_users", json=body)
            except VendorRejected as refused:
                # Added meanwhile (or by a create that timed out on us): the goal is met.
                if refused.status != 400 or "already" not in refused.message.lower():
                    raise

    # -- helpers ----------------------------------------------------------------------------
    def _project(self, raw: dict[str, Any]) -> ToolProject:
        return ToolProject(
            id=str(raw["id"]),
            name=raw["name"],
            client_id=_client_of(raw),
            url=self.project_url(str(raw["id"])),
            archived=not raw.get("active", True),
        )


def _client_of(project: dict[str, Any]) -> str | None:
    client = project.get("client_id") or project.get("cid")  # ``cid`` is the v8 name
    return str(client) if client else None


def _number(value: str, what: str, error: type[Exception] = VendorRejected) -> int:
    """Toggl ids are integers; anything else cannot name one (and must not reach a URL)."""
    text = str(value).strip()
    if not _DIGITS.fullmatch(text):
        raise error(f"a Toggl {what} id is a number, not {text[:40]!r}")
    return int(text)
