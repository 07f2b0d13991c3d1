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
  ``additional_data.next_cursor`` until it is null): the offerings, with ``sum`` (the
  total), ``item_price`` (a unit's) and ``currency``; JSON numbers, read as ``Decimal`` from
  their own text, never as floats;
- ``GET /api/v2/organizations/{id}``: the client's name (v2 no longer embeds it);
- ``GET /api/v1/users/{id}``: the owner's e-mail (users have no v2 endpoint).
- ``GET /api/v1/users/me`` once per adapter: ``company_domain`` for the deal's address,
  ``https://{company_domain}.pipedrive.com/deal/{id}``, and ``default_currency`` for
  products and a deal that name no currency (the deal's own ``currency`` comes first).
So 4 calls for a deal with an owner, an organization and up to 500 products.

As a ``CrmSweep`` (``provisioner crm reconcile``):
- ``account_id``: ``GET /api/v1/users/me`` -> ``company_id``, the company of the token's
  user, as webhooks name it (``meta.company_id``); read once per adapter;
- ``changed_deals``: ``GET /api/v2/deals?updated_since=…&updated_until=…&sort_by=update_time
  &sort_direction=asc&limit=500``, then ``cursor`` = ``additional_data.next_cursor`` until it
  is null (10 tokens a page). ``update_time`` is UTC to the second; the bounds go out as
  whole seconds around the window (``since`` floored, ``until`` rounded up) and each deal is
  checked against the exact window here, so consecutive windows never share a deal. The list
  leaves out deleted deals (``status`` not asked for): a deleted deal cannot become a project.
  It leaves out archived deals too, since 2025-07-15 (changelog, "Archived deals and leads
  will not be returned in existing endpoints"; they are under ``/api/v2/deals/archived``): a
  deal archived before a sweep sees it is not swept, as a person set it aside.
  A deal changed while the listing runs may show again further on (the cursor is keyset, by
  ``update_time``): it is given once, at its first place; the worker reads it as it is now.

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

import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import tenacity

from adapters.deal_mapping import LineItem, emails, snapshot
from adapters.http import DEFAULT_TIMEOUT, UNOBSERVED, HttpObserver, VendorHttp, segment
from adapters.pacing import Pacer
from handlers.ports import CrmFields, DealChange, DealSnapshot, StageFacts
from schemas.crm import whole_second
from schemas.errors import CrmRecordNotFound, VendorRejected, VendorUnavailable

NOT_FOUND = frozenset({404})
PAGE = 500  # v2's largest page: every call spends the daily budget, so take few
DAILY_REMAINING = "x-daily-ratelimit-token-remaining"
_SUBDOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


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
        self._me: dict | None = None
        self._me_lock = threading.Lock()

    def _token_user(self) -> dict:
        """``GET /api/v1/users/me``: the token's user and its company, read once."""
        with self._me_lock:
            if self._me is None:
                user = self.http.request("GET", "/api/v1/users/me").json().get("data")
                if not isinstance(user, dict):
                    raise VendorUnavailable("pipedrive GET /api/v1/users/me: answer without data")
                self._me = user
            return self._me

    def account_id(self) -> str:
        company = self._token_user().get("company_id")
        if not _an_id(company):
            raise VendorUnavailable("pipedrive GET /api/v1/users/me: answer without a company_id")
        return str(company)

    def _deal_url(self, deal_id: str) -> str | None:
        domain = self._token_user().get("company_domain")
        if not (isinstance(domain, str) and _SUBDOMAIN.match(domain)):
            return None  # no address is better than a wrong one; the deal still reads
        return f"https://{domain}.pipedrive.com/deal/{deal_id}"

    def changed_deals(self, since: datetime, until: datetime) -> Iterator[DealChange]:
        if since.tzinfo is None or until.tzinfo is None:
            raise ValueError("changed_deals takes aware datetimes (UTC)")
        window = {
            "updated_since": whole_second(since, up=False),
            "updated_until": whole_second(until, up=True),
            "sort_by": "update_time",
            "sort_direction": "asc",
            "limit": PAGE,
        }
        params: dict[str, Any] = window
        given: set[str] = set()
        while True:
            body = self.http.request("GET", "/api/v2/deals", params=params).json()
            for deal in body.get("data") or []:
                change = _change(deal)
                if since <= change.modified_at < until and change.deal_id not in given:
                    given.add(change.deal_id)
                    yield change
            cursor = (body.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                return
            params = {**window, "cursor": cursor}

    def read_deal(self, deal_id: str) -> DealSnapshot:
        if not (deal_id.isascii() and deal_id.isdigit()):  # the ingress checked it too
            raise VendorRejected(f"pipedrive: {deal_id[:40]!r} is not a deal id (digits)")
        answer = self.http.request(
            "GET", f"/api/v2/deals/{segment(deal_id)}", ok_statuses=NOT_FOUND
        )
        deal = answer.json(exact_numbers=True).get("data") if answer.status_code != 404 else None
        if not isinstance(deal, dict) or deal.get("is_deleted") or deal.get("status") == "deleted":
            raise CrmRecordNotFound(
                f"pipedrive deal {deal_id} does not exist (deleted since its webhook was sent?)"
            )
        team = self._owner_emails(deal.get("owner_id"))
        if self.fields.team_emails:
            custom = deal.get("custom_fields") or {}
            team += emails(_custom_value(custom.get(self.fields.team_emails)))
        return snapshot(
            "pipedrive",
            deal_id,
            name=deal.get("title"),
            client=self._organization(deal.get("org_id")),
            items=self._products(deal_id),
            team=team,
            stage=_stage(deal),
            url=self._deal_url(deal_id),
            deal_currency=deal.get("currency"),
            account_currency=lambda: self._token_user().get("default_currency"),
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
            ).json(exact_numbers=True)
            for row in body.get("data") or []:
                items.append(
                    LineItem(
                        id=str(row["id"]),  # the product's attachment to this deal
                        name=row.get(f.offering_name),
                        hours=row.get(f.budget_hours),
                        sold=row.get(f.sold) if f.sold else None,
                        kind=row.get(f.kind) if f.kind else None,
                        price=row.get(f.price) if f.price else None,
                        unit_price=row.get(f.unit_price) if f.unit_price else None,
                        currency=row.get(f.currency) if f.currency else None,
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


def _stage(deal: dict) -> StageFacts:
    status = deal.get("status")
    stage_id = deal.get("stage_id")
    return StageFacts(
        str(stage_id) if stage_id is not None else None,
        won=status == "won",
        lost=status == "lost",
        label=f"status {status}",
    )


def _change(deal: Any) -> DealChange:
    """A listed deal. A row we cannot place in time fails the listing: skipping it could be
    the one won deal the sweep is for."""
    try:
        deal_id = deal["id"]
        modified = datetime.fromisoformat(deal["update_time"])
    except (TypeError, KeyError, ValueError):
        raise VendorUnavailable(
            "pipedrive GET /api/v2/deals: a deal without an id or an RFC 3339 update_time"
        ) from None
    if modified.tzinfo is None:  # v2 times are UTC; v1's had no zone at all
        modified = modified.replace(tzinfo=UTC)
    return DealChange(str(deal_id), modified.astimezone(UTC), _stage(deal))


def _an_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _custom_value(value: Any) -> Any:
    """v2 custom fields: a text field is its value; some types are ``{"value": …}``."""
    return value.get("value") if isinstance(value, dict) else value
