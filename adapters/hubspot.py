"""HubSpot CRM API v3/v4 as a ``CrmReader`` (private-app token).

One deal read is, in calls:
- ``GET /crm/v3/objects/deals/{id}?properties=…`` (its properties: name, stage, pipeline,
  owner, ``deal_currency_code``, the rules' team property); 404 means the deal was deleted;
- ``GET /crm/v4/objects/deals/{id}/associations/{companies|line_items}`` (cursor pages of
  ``after``), the primary company first (association type 5 ``deal_to_company`` primary);
- ``GET /crm/v3/objects/companies/{id}?properties=name`` (the client);
- ``POST /crm/v3/objects/line_items/batch/read`` (the offerings, 100 ids a call; a read,
  so safe to re-send): ``amount`` (the total) and ``price`` (a unit's), decimal strings as
  HubSpot gives every property, and ``hs_line_item_currency_code``;
- ``GET /crm/v3/owners/{ownerId}`` (the owner's e-mail, for the team);
- ``GET /crm/v3/pipelines/deals`` once per adapter (again when a stage is not in it): which
  stage ids are won (``closedwon``; a custom pipeline's stage HubSpot marks
  ``isClosed`` with probability 1) or lost (closed, probability 0), and their labels;
- ``GET /account-info/v3/details`` once per adapter: ``portalId`` and ``uiDomain``
  (``app.hubspot.com``, ``app-eu1.hubspot.com`` for an EU-hosted account) for the deal's
  address, ``https://{uiDomain}/contacts/{portalId}/record/0-3/{dealId}`` (0-3 is the deal
  object's type id), and ``companyCurrency``, the currency of a line item and deal that
  name none.

As a ``CrmSweep`` (``provisioner crm reconcile``):
- ``GET /account-info/v3/details`` once: ``portalId``, the account its webhooks name;
- ``POST /crm/v3/objects/deals/search`` on ``hs_lastmodifieddate`` (``GTE``/``LT``, epoch
  ms), ascending, ``after`` pages of 200. One query reaches at most 10,000 results (HubSpot
  answers 400 past them), so a window that would pass the cap restarts from the last
  modification time it saw, skipping the deals already given at that millisecond. Search
  has its own, lower limit (HubSpot's search guide: a few requests a second per account),
  paced apart from, and on top of, the account's budget (``search_pacer``: a budget of
  its own, shared by every process when the composition root gives a shared one).

HubSpot errors are ``{"status": "error", "message", "category", "correlationId"}``;
throttling is 429 (policy in the body, ``X-HubSpot-RateLimit-*`` headers, no Retry-After).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import tenacity

from adapters.deal_mapping import LineItem, emails, snapshot
from adapters.http import DEFAULT_TIMEOUT, UNOBSERVED, HttpObserver, VendorHttp, segment
from adapters.pacing import Pacer
from handlers.ports import CrmFields, DealChange, DealSnapshot, StageFacts
from schemas.errors import CrmRecordNotFound, VendorRejected

NOT_FOUND = frozenset({404})
BATCH = 100  # ids per batch read (HubSpot's limit)
PRIMARY_COMPANY = 5  # HubSpot-defined association type: the deal's primary company
SEARCH_PAGE = 200  # results per search page (HubSpot's most)
SEARCH_CAP = 10_000  # results one search query reaches; paging past them is a 400
# HubSpot's search limit: 4 a second per token in its changelog, 5 per account in the guide.
SEARCH_RATE = (4, 1.0)
MODIFIED = "hs_lastmodifieddate"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEAL_CURRENCY = "deal_currency_code"
UI_DOMAIN = "app.hubspot.com"  # where the account details name none
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")


class HubSpotCrm:
    name = "hubspot"

    def __init__(
        self,
        access_token: str,
        *,
        fields: CrmFields,
        base_url: str = "https://api.hubapi.com",
        retrying: tenacity.Retrying,
        pacer: Pacer | None = None,
        observer: HttpObserver = UNOBSERVED,
        read_timeout: float = 30.0,
        search_pacer: Pacer | None = None,
        search_cap: int = SEARCH_CAP,
    ):
        self.http = VendorHttp(
            "hubspot",
            base_url,
            headers={"Authorization": f"Bearer {access_token}"},
            retrying=retrying,
            pacer=pacer,
            observer=observer,
            timeout=(DEFAULT_TIMEOUT[0], read_timeout),
        )
        self.fields = fields
        self._stages: dict[str, StageFacts] | None = None  # stage id -> facts, all pipelines
        self._portal: str | None = None
        self._details: dict | None = None
        self.search_pacer = search_pacer or Pacer(*SEARCH_RATE)
        self.search_cap = search_cap

    def read_deal(self, deal_id: str) -> DealSnapshot:
        if not (deal_id.isascii() and deal_id.isdigit()):  # the ingress checked it too
            raise VendorRejected(f"hubspot: {deal_id[:40]!r} is not a deal id (digits)")
        wanted = ["dealname", "dealstage", "pipeline", "hubspot_owner_id", DEAL_CURRENCY]
        if self.fields.team_emails:
            wanted.append(self.fields.team_emails)
        answer = self.http.request(
            "GET",
            f"/crm/v3/objects/deals/{segment(deal_id)}",
            params={"properties": ",".join(wanted)},
            ok_statuses=NOT_FOUND,
        )
        if answer.status_code == 404:
            raise CrmRecordNotFound(
                f"hubspot deal {deal_id} does not exist (deleted since its webhook was sent?)"
            )
        props = answer.json().get("properties") or {}
        team = self._owner_email(props.get("hubspot_owner_id"))
        team += emails(props.get(self.fields.team_emails)) if self.fields.team_emails else []
        return snapshot(
            "hubspot",
            deal_id,
            name=props.get("dealname"),
            client=self._company(deal_id),
            items=self._line_items(deal_id),
            team=team,
            stage=self._stage(props.get("dealstage")),
            url=self._deal_url(deal_id),
            deal_currency=props.get(DEAL_CURRENCY),
            account_currency=lambda: self._account_details().get("companyCurrency"),
        )

    def _associated(self, deal_id: str, kind: str) -> list[dict]:
        found: list[dict] = []
        params: dict[str, Any] = {"limit": 500}
        while True:
            body = self.http.request(
                "GET",
                f"/crm/v4/objects/deals/{segment(deal_id)}/associations/{kind}",
                params=params,
            ).json()
            found += body.get("results") or []
            after = ((body.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return found
            params = {"limit": 500, "after": after}

    def _company(self, deal_id: str) -> tuple[str, Any] | None:
        companies = self._associated(deal_id, "companies")
        if not companies:
            return None

        def primary(row: dict) -> bool:
            return any(t.get("typeId") == PRIMARY_COMPANY for t in row.get("associationTypes", []))

        chosen = next((c for c in companies if primary(c)), companies[0])
        company_id = str(chosen["toObjectId"])
        body = self.http.request(
            "GET", f"/crm/v3/objects/companies/{segment(company_id)}", params={"properties": "name"}
        ).json()
        return company_id, (body.get("properties") or {}).get("name")

    def _line_items(self, deal_id: str) -> list[LineItem]:
        ids = [str(row["toObjectId"]) for row in self._associated(deal_id, "line_items")]
        f = self.fields
        named = (f.offering_name, f.budget_hours, f.sold, f.kind, f.price, f.unit_price, f.currency)
        wanted = sorted({p for p in named if p})
        rows: dict[str, dict] = {}
        for start in range(0, len(ids), BATCH):
            body = self.http.request(
                "POST",
                "/crm/v3/objects/line_items/batch/read",
                json={
                    "properties": wanted,
                    "inputs": [{"id": i} for i in ids[start : start + BATCH]],
                },
                read_only=True,
            ).json()
            rows.update({str(r["id"]): r.get("properties") or {} for r in body.get("results", [])})
        return [
            LineItem(
                id=i,
                name=rows[i].get(f.offering_name),
                hours=rows[i].get(f.budget_hours),
                sold=rows[i].get(f.sold) if f.sold else None,
                kind=rows[i].get(f.kind) if f.kind else None,
                price=rows[i].get(f.price) if f.price else None,
                unit_price=rows[i].get(f.unit_price) if f.unit_price else None,
                currency=rows[i].get(f.currency) if f.currency else None,
            )
            for i in sorted(rows, key=ids.index)  # a line item deleted meanwhile is left out
        ]

    def _owner_email(self, owner_id: Any) -> list[str]:
        if not owner_id:
            return []
        answer = self.http.request(
            "GET", f"/crm/v3/owners/{segment(owner_id)}", ok_statuses=NOT_FOUND
        )
        if answer.status_code == 404:
            return []  # the owner left the account: the team is who is left
        return emails(answer.json().get("email"))

    def _stage(self, stage_id: Any) -> StageFacts:
        stage = str(stage_id) if stage_id else None
        if self._stages is None or (stage and stage not in self._stages):
            self._stages = self._pipelines()  # a stage added since: read them again
        known = self._stages.get(stage) if stage else None
        if known is None:  # not in any pipeline: only HubSpot's built-in id says won
            return StageFacts(stage, won=stage == "closedwon", lost=stage == "closedlost")
        return known

    def _pipelines(self) -> dict[str, StageFacts]:
        stages = {}
        for pipeline in self.http.request("GET", "/crm/v3/pipelines/deals").json()["results"]:
            for stage in pipeline.get("stages", []):
                meta = stage.get("metadata") or {}
                closed = str(meta.get("isClosed")).lower() == "true"
                probability = _probability(meta.get("probability"))
                stages[str(stage["id"])] = StageFacts(
                    str(stage["id"]),
                    won=stage["id"] == "closedwon" or (closed and probability == 1.0),
                    lost=stage["id"] == "closedlost" or (closed and probability == 0.0),
                    label=stage.get("label"),
                )
        return stages

    def _account_details(self) -> dict:
        """``GET /account-info/v3/details``, read once per adapter."""
        if self._details is None:
            body = self.http.request("GET", "/account-info/v3/details").json()
            self._details = body if isinstance(body, dict) else {}
        return self._details

    def _deal_url(self, deal_id: str) -> str | None:
        details = self._account_details()
        portal, domain = details.get("portalId"), str(details.get("uiDomain") or "").lower()
        if not isinstance(portal, int) or isinstance(portal, bool):
            return None  # no address is better than a wrong one; the deal still reads
        host = domain if _HOST.match(domain) else UI_DOMAIN
        return f"https://{host}/contacts/{portal}/record/0-3/{deal_id}"

    # -- the sweep (``CrmSweep``) ---------------------------------------------------------
    def account_id(self) -> str:
        if self._portal is None:
            portal = self._account_details().get("portalId")
            if not isinstance(portal, int) or isinstance(portal, bool):
                raise VendorRejected("hubspot: the account details carry no numeric portalId")
            self._portal = str(portal)
        return self._portal

    def changed_deals(self, since: datetime, until: datetime) -> Iterator[DealChange]:
        """Keyset paging: every page is a new query from the last modification time seen,
        never an ``after`` offset. A deal modified while the sweep runs leaves the window's
        end, and with offsets every deal after it would shift back a place and one would
        never be listed; and no query nears the 10,000-result cap. Deals at the restart's
        millisecond that were already given are skipped."""
        start, end, given = _epoch_ms(since), _epoch_ms(until), set[str]()
        while True:
            page = self._search(start, end, None, min(SEARCH_PAGE, self.search_cap))
            rows = [self._change(row) for row in page.get("results") or []]
            for change in rows:
                if not (_epoch_ms(change.modified_at) == start and change.deal_id in given):
                    yield change
            if not rows or not ((page.get("paging") or {}).get("next") or {}).get("after"):
                return
            last = _epoch_ms(rows[-1].modified_at)
            at_last = {c.deal_id for c in rows if _epoch_ms(c.modified_at) == last}
            if last == start:  # a whole page at one millisecond: list it by offset
                yield from self._one_millisecond(start, given | at_last)
                start, given = start + 1, set()
            else:
                start, given = last, at_last

    def _one_millisecond(self, moment: int, given: set[str]) -> Iterator[DealChange]:
        """The deals modified at one millisecond, past those ``given``, by ``after`` pages
        (one query, so at most ``search_cap`` of them)."""
        after, read = None, 0
        while True:
            page = self._search(moment, moment + 1, after, min(SEARCH_PAGE, self.search_cap - read))
            for row in page.get("results") or []:
                change = self._change(row)
                if change.deal_id not in given:
                    yield change
            read += len(page.get("results") or [])
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return
            if read >= self.search_cap:
                raise VendorRejected(
                    f"hubspot: over {self.search_cap} deals modified at one millisecond "
                    f"({_moment(moment)}): the search cannot list them"
                )

    def _search(self, start: int, end: int, after: str | None, room: int) -> dict:
        body: dict[str, Any] = {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": MODIFIED, "operator": "GTE", "value": str(start)},
                        {"propertyName": MODIFIED, "operator": "LT", "value": str(end)},
                    ]
                }
            ],
            "sorts": [{"propertyName": MODIFIED, "direction": "ASCENDING"}],
            "properties": ["dealstage", MODIFIED, "pipeline"],
            "limit": min(SEARCH_PAGE, room),
        }
        if after:
            body["after"] = after
        if waited := self.search_pacer.acquire():
            self.http.observer.paced("hubspot", waited)
        try:
            return self.http.request(
                "POST", "/crm/v3/objects/deals/search", json=body, read_only=True
            ).json()
        finally:
            self.search_pacer.answered()

    def _change(self, row: dict) -> DealChange:
        props = row.get("properties") or {}
        deal_id = str(row.get("id") or props.get("hs_object_id") or "")
        try:
            modified = datetime.fromisoformat(str(props.get(MODIFIED))).astimezone(UTC)
        except ValueError:
            raise VendorRejected(
                f"hubspot: deal {deal_id[:40]!r} in the search has no {MODIFIED} time"
            ) from None
        return DealChange(deal_id, modified, self._stage(props.get("dealstage")))


def _epoch_ms(moment: datetime) -> int:
    """Exact milliseconds (a float's would be off by one now and then); naive means UTC."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (aware - EPOCH) // timedelta(milliseconds=1)


def _moment(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")


def _probability(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
