"""HubSpot CRM API v3/v4 as a ``CrmReader`` (private-app token).

One deal read is, in calls:
- ``GET /crm/v3/objects/deals/{id}?properties=…`` (its properties: name, stage, pipeline,
  owner, the rules' team property); 404 means the deal was deleted;
- ``GET /crm/v4/objects/deals/{id}/associations/{companies|line_items}`` (cursor pages of
  ``after``), the primary company first (association type 5 ``deal_to_company`` primary);
- ``GET /crm/v3/objects/companies/{id}?properties=name`` (the client);
- ``POST /crm/v3/objects/line_items/batch/read`` (the offerings, 100 ids a call; a read,
  so safe to re-send);
- ``GET /crm/v3/owners/{ownerId}`` (the owner's e-mail, for the team);
- ``GET /crm/v3/pipelines/deals`` once per adapter (again when a stage is not in it): which
  stage ids are won (``closedwon``; a custom pipeline's stage HubSpot marks
  ``isClosed`` with probability 1) or lost (closed, probability 0), and their labels.

HubSpot errors are ``{"status": "error", "message", "category", "correlationId"}``;
throttling is 429 (policy in the body, ``X-HubSpot-RateLimit-*`` headers, no Retry-After).
"""

from __future__ import annotations

from typing import Any

import tenacity

from adapters.deal_mapping import LineItem, emails, snapshot
from adapters.http import DEFAULT_TIMEOUT, UNOBSERVED, HttpObserver, VendorHttp, segment
from adapters.pacing import Pacer
from handlers.ports import CrmFields, DealSnapshot, StageFacts
from schemas.errors import CrmRecordNotFound, VendorRejected

NOT_FOUND = frozenset({404})
BATCH = 100  # ids per batch read (HubSpot's limit)
PRIMARY_COMPANY = 5  # HubSpot-defined association type: the deal's primary company


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

    def read_deal(self, deal_id: str) -> DealSnapshot:
        if not (deal_id.isascii() and deal_id.isdigit()):  # the ingress checked it too
            raise VendorRejected(f"hubspot: {deal_id[:40]!r} is not a deal id (digits)")
        wanted = ["dealname", "dealstage", "pipeline", "hubspot_owner_id"]
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
        wanted = sorted({p for p in (f.offering_name, f.budget_hours, f.sold, f.kind) if p})
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


def _probability(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
