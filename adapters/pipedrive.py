"""Pipedrive API v2 as a ``CrmReader`` (API token, sent in the ``x-api-token`` header so it
is never part of a URL).

Pipedrive put the v1 deal, deal-product and organization reads out of support on
2026-08-01 (changelog, "Deprecated API v1 endpoints become out of support"), so a read
uses v2 wherever v2 exists. One deal read is, in calls:
- ``GET /api/v2/deals/{id}``: ``status`` (open, won, lost), ``stage_id``, ``owner_id`` and
  ``org_id`` as bare integers, ``is_deleted``, and custom fields under ``custom_fields`` by
  their 40-character keys (the rules' team property is one of them). 404, ``is_deleted``
  or ``status`` deleted means the deal is gone: ``CrmRecordNotFound``;
- ``GET /api/v2/deals/{id}/products`` (``limit`` up to 500, then ``cursor`` =
  ``additional_data.next_cursor`` until it is null): the offerings;
- ``GET /api/v2/organizations/{id}``: the client's name (v2 no longer embeds it);
- ``GET /api/v1/users/{id}``: the owner's e-mail (users have no v2 endpoint).
So 4 calls for a deal with an owner, an organization and up to 500 products.

Errors are ``{"success": false, "error", "error_info", ...}``. Limits (Pipedrive, "Rate
limiting"): a burst window of 2 s per token (429 with ``x-ratelimit-reset``, seconds), and
a daily token budget per company that resets at the start of the next day. A 429 that says
the daily budget is spent (``x-daily-ratelimit-token-remaining: 0``) will not clear in
seconds: its wait is the time to the reset, hours, which ``adapters.http`` turns into a
``VendorUnavailable`` with that ``retry_after`` and no re-send here (every refused call
still costs the company's patience, and a burst of them is what Pipedrive's abuse block
answers with a 403).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import tenacity

from adapters.deal_mapping import LineItem, emails, snapshot
from adapters.http import DEFAULT_TIMEOUT, UNOBSERVED, HttpObserver, VendorHttp, segment
from adapters.pacing import Pacer
from handlers.ports import CrmFields, DealSnapshot, StageFacts
from schemas.errors import CrmRecordNotFound, VendorRejected

NOT_FOUND = frozenset({404})
PAGE = 500  # v2's largest page: every call spends the daily budget, so take few
DAILY_REMAINING = "x-daily-ratelimit-token-remaining"


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
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.clock = clock
        self.http = VendorHttp(
            "pipedrive",
            base_url,
            headers={"x-api-token": api_token},
            retrying=retrying,
            pacer=pacer,
            observer=observer,
            timeout=(DEFAULT_TIMEOUT[0], read_timeout),
            retry_hint=self._wait_hint,
        )
        self.fields = fields

    def read_deal(self, deal_id: str) -> DealSnapshot:
        if not (deal_id.isascii() and deal_id.isdigit()):  # the ingress checked it too
            raise VendorRejected(f"pipedrive: {deal_id[:40]!r} is not a deal id (digits)")
        answer = self.http.request(
            "GET", f"/api/v2/deals/{segment(deal_id)}", ok_statuses=NOT_FOUND
        )
        deal = answer.json().get("data") if answer.status_code != 404 else None
        if not isinstance(deal, dict) or deal.get("is_deleted") or deal.get("status") == "deleted":
            raise CrmRecordNotFound(
                f"pipedrive deal {deal_id} does not exist (deleted since its webhook was sent?)"
            )
        team = self._owner_emails(deal.get("owner_id"))
        if self.fields.team_emails:
            custom = deal.get("custom_fields") or {}
            team += emails(_custom_value(custom.get(self.fields.team_emails)))
        status = deal.get("status")
        stage_id = deal.get("stage_id")
        return snapshot(
            "pipedrive",
            deal_id,
            name=deal.get("title"),
            client=self._organization(deal.get("org_id")),
            items=self._products(deal_id),
            team=team,
            stage=StageFacts(
                str(stage_id) if stage_id is not None else None,
                won=status == "won",
                lost=status == "lost",
                label=f"status {status}",
            ),
        )

    def _owner_emails(self, owner_id: Any) -> list[str]:
        if not _an_id(owner_id):
            return []
        answer = self.http.request(
            "GET", f"/api/v1/users/{segment(owner_id)}", ok_statuses=NOT_FOUND
        )
        # A user removed from the company leaves the deal readable, without its owner.
        user = answer.json().get("data") if answer.status_code != 404 else None
        return emails(user.get("email")) if isinstance(user, dict) else []

    def _organization(self, org_id: Any) -> tuple[str, Any] | None:
        if not _an_id(org_id):
            return None
        answer = self.http.request(
            "GET", f"/api/v2/organizations/{segment(org_id)}", ok_statuses=NOT_FOUND
        )
        org = answer.json().get("data") if answer.status_code != 404 else None
        return str(org_id), org.get("name") if isinstance(org, dict) else None

    def _products(self, deal_id: str) -> list[LineItem]:
        f = self.fields
        items: list[LineItem] = []
        params: dict[str, Any] = {"limit": PAGE}
        while True:
            body = self.http.request(
                "GET", f"/api/v2/deals/{segment(deal_id)}/products", params=params
            ).json()
            for row in body.get("data") or []:
                items.append(
                    LineItem(
                        id=str(row["id"]),  # the product's attachment to this deal
                        name=row.get(f.offering_name),
                        hours=row.get(f.budget_hours),
                        sold=row.get(f.sold) if f.sold else None,
                        kind=row.get(f.kind) if f.kind else None,
                    )
                )
            cursor = (body.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                return items
            params = {"limit": PAGE, "cursor": cursor}

    def _wait_hint(self, response: requests.Response) -> str | None:
        """Seconds to wait after a throttle, as text (``adapters.http`` parses it). A spent
        daily budget waits for the reset "at the start of the next day" in Pipedrive's server
        time zone; no header gives that moment, so it is the next midnight UTC unless
        Retry-After says. Still spent within an hour after that midnight, the server's day
        has not turned yet: look again in an hour, not in a day."""
        headers = response.headers
        if headers.get(DAILY_REMAINING, "").strip() == "0":
            if headers.get("Retry-After"):
                return headers["Retry-After"]
            now = self.clock().astimezone(UTC)
            midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
            seconds = (midnight - now).total_seconds()
            return f"{3600 if seconds > 23 * 3600 else seconds:.0f}"
        return headers.get("Retry-After") or headers.get("x-ratelimit-reset")


def _an_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _custom_value(value: Any) -> Any:
    """v2 custom fields: a text field is its value; some types are ``{"value": …}``."""
    return value.get("value") if isinstance(value, dict) else value
