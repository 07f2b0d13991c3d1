"""The Clockify API v1 adapter: one workspace, reached with one user's API key.

Vendor facts this module relies on (Clockify's API reference, docs.clockify.me):
the key goes raw in ``X-Api-Key``; ids are 24-hex strings; errors are ``{"message", "code"}``;
lists page with ``page``/``page-size`` (at most 500) and may carry a ``total-count`` header;
only the users list filters by e-mail on the server. Clockify has no project "code" field,
so the offering's marker is written into the project's ``note``: on its own last line, after
the rules' notes, so that it stays findable whatever the notes say.

The adapter is one class, ``ClockifyTool``, in rooms by job: this module holds the clients,
the projects, the people and the references people paste; the commercial shape (rate,
estimates, template tasks) is in ``adapters.clockify_commercial``, and how ids and names are
read in ``adapters.clockify_ids``.

The workspace's users are read once and kept by e-mail for a few minutes (``ReadCache``; see
``adapters.read_cache`` for what may be kept and why); a kept user id Clockify then refuses
is dropped and the provisioning tried again with a fresh read (``StaleRead``).

HTTP, retries, pacing and error translation are ``adapters.http.VendorHttp``'s job.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import tenacity

from adapters.clockify_commercial import ClockifyCommercial
from adapters.clockify_commercial import cents as cents
from adapters.clockify_commercial import iso_hours as iso_hours
from adapters.clockify_ids import _ID, _checked, folded
from adapters.http import UNOBSERVED, HttpObserver, VendorHttp
from adapters.pacing import Pacer
from adapters.read_cache import ReadCache, StaleRead
from handlers.ports import ProjectSpec, ToolClient, ToolProject
from schemas.errors import InvalidReference, TimesheetNotFound, VendorRejected

PAGE_SIZE = 500  # Clockify's largest page
PROJECT_COLOR = "#03A9F4"  # Clockify's own light blue; the API wants some #RRGGBB
NOTE_TAG = "timesheet-provisioner:"
_URL_PROJECT = re.compile(r"/projects/([0-9a-fA-F]{24})(?:/|$)")
# Requests a workspace may make, by plan (clockify.me/help/getting-started/
# webhook-and-api-limitations): new free workspaces 30 an hour, paid ones 50 a second.
PLAN_RATES = {"free": (30, 3600.0), "paid": (50, 1.0)}
# Clockify's answer to a second project of one name under one client: 400, code 501,
# "Other project for client X already exists" (clockify-cli's `project add` docs).
DUPLICATE_PROJECT = 501
# What a full project update carries back (PUT /projects/{id} replaces the project's settings:
# a field left out is reset, the marker in ``note`` included).
UPDATE_FIELDS = ("name", "clientId", "billable", "color", "note", "hourlyRate", "costRate")


def note_with_marker(notes: str | None, marker: str) -> str:
    """The project's note: the rules' notes, then our marker on a line of its own."""
    tag = NOTE_TAG + marker
    return f"{notes.rstrip()}\n{tag}" if notes and notes.strip() else tag


def carries_marker(note: str | None, marker: str) -> bool:
    # Whole-token match, so marker ``P-1/O-1`` is not found in a note tagged ``P-1/O-11``.
    return re.search(re.escape(NOTE_TAG + marker) + r"(?!\S)", note or "") is not None


class ClockifyTool(ClockifyCommercial):
    name = "clockify"

    def __init__(
        self,
        api_key: str,
        workspace_id: str,
        *,
        base_url: str = "https://api.clockify.me/api/v1",
        retrying: tenacity.Retrying,
        pacer: Pacer | None = None,
        observer: HttpObserver = UNOBSERVED,
        read_timeout: float = 30.0,
        web_url: str = "https://app.clockify.me",
        plan: str = "paid",
        reads: ReadCache | None = None,
    ):
        calls, period = PLAN_RATES[plan]
        self.http = VendorHttp(
            "clockify",
            base_url,
            headers={"X-Api-Key": api_key},  # raw key, no "Bearer"
            retrying=retrying,
            pacer=pacer,
            observer=observer,
            timeout=(5.0, read_timeout),
            # Clockify sends no Retry-After. On a free workspace a 429 means the hour is spent:
            # waiting a slot's share of it (two minutes) leaves the retry to the delayed
            # message, instead of burning the allowance on fast in-process retries.
            retry_hint=lambda r: (
                r.headers.get("Retry-After")
                or (str(period / calls) if period / calls > 1 else None)
            ),
        )
        self.workspace = f"/workspaces/{workspace_id}"
        self.web_url = web_url.rstrip("/")
        # Members of the projects this process just made, from the create's answer: their
        # team is added without reading the project again (a call saved on a 30/hour plan).
        self._fresh: dict[str, set[str]] = {}
        self._currency: str | None = None  # the workspace's default currency, read once
        self.reads = reads if reads is not None else ReadCache()  # ("user", e-mail) -> id

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
            "note": note_with_marker(spec.notes, spec.marker),
        }
        body |= self._commercial(spec)[0]
        try:
            created = self.http.request("POST", f"{self.workspace}/projects", json=body).json()
        except VendorRejected as refused:
            if refused.status != 400:
                raise
            # A second project of this name under the client answers 400 (code 501, "Other
            # project for client X already exists"): ours from an interrupted create carries
            # our marker and is adopted; anyone else's is a clear refusal, never a loop.
            # Decided from the listing, not from the words.
            ours = self.find_project(spec.client_id, spec.marker, spec.name)
            if ours is not None:
                return ours
            if "already exists" in refused.message:
                raise VendorRejected(
                    f"clockify already has a project named {spec.name!r} under this client"
                    f" that we did not make; rename one of them or connect it ({refused.message})",
                    status=400,
                ) from None
            raise
        self._fresh[created["id"]] = {m["userId"] for m in created.get("memberships") or []}
        return self._project(created)

    def find_project(
        self, client_id: str, marker: str, name: str, since: datetime | None = None
    ) -> ToolProject | None:
        # No ``archived`` filter: one listing holds archived and active projects alike.
        for project in self._listed(f"{self.workspace}/projects", {"clients": client_id}):
            if carries_marker(project.get("note"), marker):
                return self._project(project)
        return None

    def get_project(self, project_id: str) -> ToolProject:
        return self._project(self._read_project(project_id))

    def set_archived(self, project_id: str, archived: bool) -> None:
        # A PUT replaces the project's settings, so the whole current project goes back with
        # only ``archived`` changed: the note carrying our marker survives.
        current = self._read_project(project_id)
        body = {k: current[k] for k in UPDATE_FIELDS if current.get(k) is not None}
        body |= {
            "isPublic": bool(current.get("public", current.get("isPublic"))),
            "archived": archived,
        }
        response = self.http.request(
            "PUT",
            f"{self.workspace}/projects/{project_id}",
            json=body,
            ok_statuses=frozenset({404}),  # a 400 is a refusal, not a missing project
        )
        if response.status_code == 404:
            raise TimesheetNotFound(f"no Clockify project {project_id}")

    # -- people -------------------------------------------------------------------------
    def find_users(self, emails: Sequence[str]) -> dict[str, str]:
        # One listing for every address (500 a page), not one filtered request each: the
        # server's filter is a substring match anyway, so matching happens here either way.
        wanted = {e.strip().lower() for e in emails if e.strip()}
        if not wanted:
            return {}
        kept = {e: self.reads.get(("user", e)) for e in wanted}
        if all(kept.values()):
            return kept
        listed = self._listed_users()
        return {e: listed[e] for e in wanted if e in listed}

    def _listed_users(self) -> dict[str, str]:
        """E-mail -> id of every user of the workspace, read now and kept."""
        found: dict[str, str] = {}
        for user in self._listed(f"{self.workspace}/users"):
            email = (user.get("email") or "").strip().lower()
            if email and email not in found:
                found[email] = user["id"]
                self.reads.put(("user", email), user["id"])
        return found

    def _stale_users(self, user_ids: Sequence[str]) -> list[str]:
        """Those of ``user_ids`` that came from a kept read and a fresh read no longer
        lists; their entries are dropped either way."""
        ids = set(user_ids)
        if not self.reads.drop_where(lambda key, value: key[0] == "user" and value in ids):
            return []
        listed = set(self._listed_users().values())
        return [u for u in user_ids if u not in listed]

    def assign_team(self, project_id: str, user_ids: Sequence[str]) -> None:
        members = self._fresh.pop(project_id, None)
        if members is None:
            listed = self._read_project(project_id).get("memberships") or []
            members = {m["userId"] for m in listed}
        new = [u for u in dict.fromkeys(user_ids) if u not in members]
        if not new:
            return
        try:
            self.http.request(
                "POST",
                f"{self.workspace}/projects/{project_id}/memberships",
                json={"userIds": new, "remove": False},
            )
        except VendorRejected as refused:
            if refused.status in (400, 404) and (gone := self._stale_users(new)):
                raise StaleRead(
                    f"clockify users {', '.join(gone)} are no longer in the workspace; the"
                    " team is read again on the next attempt"
                ) from None
            raise

    # -- plumbing -----------------------------------------------------------------------
    def _read_project(self, project_id: str) -> dict[str, Any]:
        response = self.http.request(
            "GET",
            f"{self.workspace}/projects/{_checked(project_id)}",
            ok_statuses=frozenset({404}),
        )
        if response.status_code == 404:
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
