"""The Clockify API v1 adapter: one workspace, reached with one user's API key.

Vendor facts this module relies on (``/work/shared/reference/vendor-apis.md`` section 4):
the key goes raw in ``X-Api-Key``; ids are 24-hex strings; errors are ``{"message", "code"}``;
lists page with ``page``/``page-size`` (at most 500) and may carry a ``total-count`` header;
only the users list filters by e-mail on the server. Clockify has no project "code" field,
so the offering's marker is written into the project's ``note``.

HTTP, retries, pacing and error translation are ``adapters.http.VendorHttp``'s job.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import tenacity

from adapters.http import VendorHttp
from adapters.pacing import Pacer
from handlers.ports import ProjectSpec, ToolClient, ToolProject
from schemas.errors import InvalidReference, TimesheetNotFound, VendorRejected

PAGE_SIZE = 500  # Clockify's largest page
PROJECT_COLOR = "#03A9F4"  # Clockify's own light blue; the API wants some #RRGGBB
NOTE_TAG = "timesheet-provisioner:"
_ID = re.compile(r"[0-9a-fA-F]{24}")
_URL_PROJECT = re.compile(r"/projects/([0-9a-fA-F]{24})(?:/|$)")


def folded(name: str) -> str:
    """The form in which two client names count as the same."""
    return " ".join(name.split()).casefold()


def iso_hours(hours: float) -> str:
    """40 -> ``PT40H``, 37.5 -> ``PT37H30M``: Clockify estimates are ISO-8601 durations."""
    whole, minutes = divmod(round(hours * 60), 60)
    return "PT" + (f"{whole}H" if whole or not minutes else "") + (f"{minutes}M" if minutes else "")


def carries_marker(note: str | None, marker: str) -> bool:
    # Whole-token match, so marker ``P-1/O-1`` is not found in a note tagged ``P-1/O-11``.
    return re.search(re.escape(NOTE_TAG + marker) + r"(?!\S)", note or "") is not None


class ClockifyTool:
    name = "clockify"

    def __init__(
        self,
        api_key: str,
        workspace_id: str,
        *,
        base_url: str = "https://api.clockify.me/api/v1",
        retrying: tenacity.Retrying,
        pacer: Pacer | None = None,
        read_timeout: float = 30.0,
        web_url: str = "https://app.clockify.me",
    ):
        self.http = VendorHttp(
            "clockify",
            base_url,
            headers={"X-Api-Key": api_key},  # raw key, no "Bearer"
            retrying=retrying,
            pacer=pacer,
            timeout=(5.0, read_timeout),
        )
        self.workspace = f"/workspaces/{workspace_id}"
        self.web_url = web_url.rstrip("/")

    # -- references ---------------------------------------------------------------------
    def parse_reference(self, reference: str) -> str:
        text = reference.strip()
        if _ID.fullmatch(text):
            return text.lower()
        # People paste addresses without the scheme too: "app.clockify.me/projects/…/edit".
        parts = urlsplit(text if "://" in text else f"https://{text}")
        host = (parts.hostname or "").lower()
        if parts.scheme in ("http", "https") and (
            host == "clockify.me" or host.endswith(".clockify.me")
        ):
            found = _URL_PROJECT.search(parts.path)
            if found:
                return found.group(1).lower()
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise InvalidReference(f"not a Clockify project id or URL: {shown!r}")

    def project_url(self, project_id: str) -> str:
        return f"{self.web_url}/projects/{project_id}/edit"

    # -- clients ------------------------------------------------------------------------
    def clients_named(self, name: str) -> list[ToolClient]:
        # No name filter here: the server's would not fold spaces the way we must.
        wanted = folded(name)
        return [
            ToolClient(c["id"], c["name"])
            for c in self._listed(f"{self.workspace}/clients")
            if folded(c["name"]) == wanted
        ]

    def create_client(self, name: str) -> ToolClient:
        try:
            response = self.http.request("POST", f"{self.workspace}/clients", json={"name": name})
        except VendorRejected as refused:
            # A duplicate name answers 409 (some deployments 400): another worker won the race.
            if refused.status not in (400, 409):
                raise
            matches = self.clients_named(name)
            if len(matches) != 1:
                raise
            return matches[0]
        client = response.json()
        return ToolClient(client["id"], client["name"])

    # -- projects -----------------------------------------------------------------------
    def create_project(self, spec: ProjectSpec) -> ToolProject:
        body: dict[str, Any] = {
            "name": spec.name,
            "clientId": spec.client_id,
            "billable": spec.billable,
            # A project with a team is private, so only its members can log time to it.
            "isPublic": bool(spec.options.get("is_public", not spec.has_team)),
            "color": PROJECT_COLOR,
            "note": NOTE_TAG + spec.marker,
        }
        if spec.budget_hours is not None:
            body["estimate"] = {"estimate": iso_hours(spec.budget_hours), "type": "MANUAL"}
        created = self.http.request("POST", f"{self.workspace}/projects", json=body).json()
        return self._project(created)

    def find_project(
        self, client_id: str, marker: str, name: str, since: datetime | None = None
    ) -> ToolProject | None:
        # Archived projects are asked for separately: the ``archived`` filter picks one kind.
        for archived in ("false", "true"):
            params = {"clients": client_id, "archived": archived}
            for project in self._listed(f"{self.workspace}/projects", params):
                if carries_marker(project.get("note"), marker):
                    return self._project(project)
        return None

    def complete_setup(self, project_id: str, spec: ProjectSpec) -> None:
        """Nothing beyond the create and the team."""

    def get_project(self, project_id: str) -> ToolProject:
        return self._project(self._read_project(project_id))

    def set_archived(self, project_id: str, archived: bool) -> None:
        response = self.http.request(
            "PUT",
            f"{self.workspace}/projects/{project_id}",
            json={"archived": archived},
            ok_statuses=frozenset({400, 404}),
        )
        if response.status_code in (400, 404):
            raise TimesheetNotFound(f"no Clockify project {project_id}")

    # -- people -------------------------------------------------------------------------
    def find_users(self, emails: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for email in dict.fromkeys(e.strip().lower() for e in emails if e.strip()):
            # The server's filter is a substring match: ana@x also finds diana@x.
            for user in self._listed(f"{self.workspace}/users", {"email": email}):
                if (user.get("email") or "").strip().lower() == email:
                    found[email] = user["id"]
                    break
        return found

    def assign_team(self, project_id: str, user_ids: Sequence[str]) -> None:
        members = {m["userId"] for m in self._read_project(project_id).get("memberships") or []}
        new = [u for u in dict.fromkeys(user_ids) if u not in members]
        if new:
            self.http.request(
                "POST",
                f"{self.workspace}/projects/{project_id}/memberships",
                json={"userIds": new, "remove": False},
            )

    # -- plumbing -----------------------------------------------------------------------
    def _read_project(self, project_id: str) -> dict[str, Any]:
        response = self.http.request(
            "GET",
            f"{self.workspace}/projects/{project_id}",
            # Clockify answers a malformed id with 400, an unknown one with 404.
            ok_statuses=frozenset({400, 404}),
        )
        if response.status_code in (400, 404):
            raise TimesheetNotFound(f"no Clockify project {project_id}")
        return response.json()

    def _project(self, body: Mapping[str, Any]) -> ToolProject:
        return ToolProject(
            id=body["id"],
            name=body["name"],
            client_id=body.get("clientId") or None,
            url=self.project_url(body["id"]),
            archived=bool(body.get("archived")),
        )

    def _listed(self, path: str, params: Mapping[str, str] | None = None) -> Iterator[dict]:
        """Every item of a paged list. A short page ends it, unless ``total-count`` says
        more are left (a server may serve fewer than we ask); ``Last-Page`` is believed."""
        page, seen = 1, 0
        while True:
            query = {**(params or {}), "page": page, "page-size": PAGE_SIZE}
            response = self.http.request("GET", path, params=query)
            items = response.json()
            yield from items
            seen += len(items)
            total = response.headers.get("total-count", "")
            last = response.headers.get("Last-Page", "").lower()
            if not items or last == "true":
                return
            if total.isdigit():
                if seen >= int(total):
                    return
            elif last != "false" and len(items) < PAGE_SIZE:
                return
            page += 1
