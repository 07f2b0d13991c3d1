"""Pipedrive API v1 as a ``CrmReader`` (API token, sent in the ``x-api-token`` header so it
is never part of a URL).

One deal read is, in calls:
- ``GET /api/v1/deals/{id}``: the deal with its ``status`` (open, won, lost, deleted),
  ``stage_id``, ``org_id`` (an object: ``value`` is the id, ``name`` the organization's
  name, so the client costs no second call), ``user_id`` (the owner, with ``email``) and
  custom fields by their 40-character keys; 404, or ``status`` deleted, means deleted;
- ``GET /api/v1/deals/{id}/products`` (``start``/``limit`` pages until
  ``additional_data.pagination.more_items_in_collection`` is false): the offerings.

Pipedrive errors are ``{"success": false, "error", "error_info"}``; throttling is 429 with
``x-ratelimit-reset`` (seconds until the window resets).
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
PAGE = 100


class PipedriveCrm:
    name = "pipedrive"

    def __init__(
        self,
        api_token: str,
        *,
        base_url: str,
        fields: CrmFields,
        retrying: tenacity.Retrying,
        pacer: Pacer | None = None,
        observer: HttpObserver = UNOBSERVED,
        read_timeout: float = 30.0,
    ):
        self.http = VendorHttp(
            "pipedrive",
            base_url,
            headers={"x-api-token": api_token},
            retrying=retrying,
            pacer=pacer,
            observer=observer,
            timeout=(DEFAULT_TIMEOUT[0], read_timeout),
            retry_after_headers=("Retry-After", "x-ratelimit-reset"),
        )
        self.fields = fields

    def read_deal(self, deal_id: str) -> DealSnapshot:
        if not (deal_id.isascii() and deal_id.isdigit()):  # the ingress checked it too
            raise VendorRejected(f"pipedrive: {deal_id[:40]!r} is not a deal id (digits)")
        answer = self.http.request(
            "GET", f"/api/v1/deals/{segment(deal_id)}", ok_statuses=NOT_FOUND
        )
        deal = answer.json().get("data") if answer.status_code != 404 else None
        if not deal or deal.get("status") == "deleted":
            raise CrmRecordNotFound(
                f"pipedrive deal {deal_id} does not exist (deleted since its webhook was sent?)"
            )
        owner = deal.get("user_id")
        team = emails(owner.get("email")) if isinstance(owner, dict) else []
        if self.fields.team_emails:
            team += emails(deal.get(self.fields.team_emails))
        status = deal.get("status")
        stage_id = deal.get("stage_id")
        return snapshot(
            "pipedrive",
            deal_id,
            name=deal.get("title"),
            client=_organization(deal.get("org_id")),
            items=self._products(deal_id),
            team=team,
            stage=StageFacts(
                str(stage_id) if stage_id is not None else None,
                won=status == "won",
                lost=status == "lost",
                label=f"status {status}",
            ),
        )

    def _products(self, deal_id: str) -> list[LineItem]:
        f = self.fields
        items: list[LineItem] = []
        start = 0
        while True:
            body = self.http.request(
                "GET",
                f"/api/v1/deals/{segment(deal_id)}/products",
                params={"start": start, "limit": PAGE},
            ).json()
            for row in body.get("data") or []:  # null, not [], when there are none
                items.append(
                    LineItem(
                        id=str(row["id"]),  # the product's attachment to this deal
                        name=row.get(f.offering_name),
                        hours=row.get(f.budget_hours),
                        sold=row.get(f.sold) if f.sold else None,
                        kind=row.get(f.kind) if f.kind else None,
                    )
                )
            page = (body.get("additional_data") or {}).get("pagination") or {}
            if not page.get("more_items_in_collection"):
                return items
            start = page.get("next_start", start + PAGE)


def _organization(org: Any) -> tuple[str, Any] | None:
    if isinstance(org, dict) and org.get("value") is not None:
        return str(org["value"]), org.get("name")
    if isinstance(org, int):  # an API that answers with the bare id: no name to give
        return str(org), None
    return None
