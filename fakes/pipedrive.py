"""A fake Pipedrive company over real HTTP, written from Pipedrive's API v2 reference and
its rate-limiting page: the calls ``adapters.pipedrive`` makes, with Pipedrive's rules where
the docs state them.

- The API token goes in the ``x-api-token`` header or the ``api_token`` query parameter;
  anything else is 401 ``{"success": false, "error": "unauthorized access"}``.
- ``GET /api/v2/deals/{id}``: ``owner_id`` and ``org_id`` are bare integers, custom fields
  sit under ``custom_fields``; an unknown id is 404 "Deal not found"; a deleted deal is
  still readable for a while, with ``is_deleted`` true.
- ``GET /api/v2/deals/{id}/products``: ``limit`` 1..500 (default 100), opaque ``cursor``,
  ``additional_data.next_cursor`` null on the last page; no products is ``data: []``.
- ``GET /api/v2/deals`` (the list, 10 tokens a page): ``updated_since`` (``update_time`` >=)
  and ``updated_until`` (<), both RFC 3339; ``sort_by`` id, update_time or add_time (default
  id) and ``sort_direction`` asc or desc (default asc); ``status`` a comma-separated choice of
  open, won, lost, deleted, without which deleted deals are left out; ``limit`` 1..500
  (default 100) and a keyset ``cursor`` (the sort value and id of the last deal shown, so a
  deal changed while a listing runs moves to its new place). Anything malformed is 400.
  ``update_time`` is UTC to the second (``2025-01-01T10:20:00Z``) and moves whenever the deal
  changes (lever: ``set_update_time``).
- ``GET /api/v2/organizations/{id}``, ``GET /api/v1/users/{id}`` (users stay on v1) and
  ``GET /api/v1/users/me``: the token's user with its company (``company_id``,
  ``company_domain``) and ``default_currency`` (lever: ``default_currency``).
- Money is JSON numbers: a deal's ``value`` with its ``currency``; a deal product's
  ``item_price``, ``sum`` (item_price x quantity unless seeded otherwise) and ``currency``.
- The v1 reads Pipedrive retired on 2026-08-01 (deals, deal products, organizations,
  stages, pipelines) answer 410 Gone, so a reader that drifts back fails loudly.
- Every answer carries the burst headers ``x-ratelimit-limit``, ``-remaining`` and
  ``-reset`` (seconds) and the daily budget's ``x-daily-ratelimit-token-limit`` and
  ``-remaining``. Over the burst window (20 requests per 2 s by default): 429. With the
  daily budget spent (``spend_daily_budget``): 429 with ``x-daily-ratelimit-token-remaining``
  0 for every request until ``refill_daily_budget``.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import random
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from fakes.base import FakeVendor, Request, Response, Route, serve_main

MAX_LIMIT = 500
DAILY_BUDGET = 30_000  # tokens: the base budget of one seat on the smallest plan
COST = {"v1": 2, "v2": 1}  # a single-entity GET; v2 costs about half of v1
LIST_COST = 10  # GET /api/v2/deals, per page (the v2 reference's "Cost")
SORT_FIELDS = ("id", "update_time", "add_time")
STATUSES = frozenset({"open", "won", "lost", "deleted"})
INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."
RETIRED_V1 = re.compile(r"/api/v1/(deals|organizations|stages|pipelines)(/.*)?")


def _error(status: int, message: str) -> Response:
    body = {"success": False, "error": message, "errorCode": status, "error_info": INFO}
    return Response(status, body | {"data": None, "additional_data": None})


class FakePipedrive(FakeVendor):
    name = "pipedrive"

    def __init__(
        self,
        token: str = "pipedrive-test-token",
        *,
        page_size: int = MAX_LIMIT,
        rate_limit: tuple[int, float] | None = (20, 2.0),
        latency: float = 0.0,
        daily_budget: int = DAILY_BUDGET,
        company_id: int | None = None,
        default_currency: str = "EUR",
    ):
        super().__init__(rate_limit=rate_limit, latency=latency)
        self.token = token
        self.company_id = company_id or random.randint(10**6, 10**7)
        self.default_currency = default_currency
        self.page_size = page_size
        self.daily_budget = daily_budget
        self.budget_left = daily_budget
        self.deals: dict[int, dict] = {}
        self.organizations: dict[int, dict] = {}
        self.users: dict[int, dict] = {}
        self.deal_products: dict[int, list[dict]] = {}  # deal id -> attached products
        self.received: list[Request] = []
        self._ids = itertools.count(random.randint(1000, 10**6))
        self.token_user = self.add_user("api-owner@example.com")  # whose token this is
        # Pipeline 1's stages, as a new company has them: stage id -> name.
        self.stages: dict[int, dict] = {}
        for name in ("Qualified", "Contact Made", "Proposal Made", "Negotiations Started"):
            self.add_stage(name)
        self.forbidden: set[str] = set()  # lever: resources the token's user may not see

    # -- seeding ----------------------------------------------------------------------------
    def add_user(self, email: str) -> int:
        with self.lock:
            user_id = next(self._ids)
            self.users[user_id] = {"id": user_id, "name": "Test Owner", "email": email,
                                   "has_pic": 0, "active_flag": True, "is_admin": 0}  # fmt: skip
            return user_id

    def add_stage(self, name: str, pipeline_id: int = 1) -> int:
        with self.lock:
            stage_id = len(self.stages) + 1
            self.stages[stage_id] = {"id": stage_id, "name": name, "pipeline_id": pipeline_id,
                                     "order_nr": stage_id, "is_deleted": False}  # fmt: skip
            return stage_id

    def forbid(self, resource: str) -> None:
        """The token's user may not read ``resource`` (deals, organizations, products,
        stages): 403, as for a user whose permission set lacks it."""
        with self.lock:
            self.forbidden.add(resource)

    def add_organization(self, name: str) -> int:
        with self.lock:
            org_id = next(self._ids)
            self.organizations[org_id] = {
                "id": org_id, "name": name, "owner_id": None, "is_deleted": False,
                "visible_to": 3, "custom_fields": {},
            }  # fmt: skip
            return org_id

    def add_deal(
        self,
        title: str,
        *,
        status: str = "open",
        stage_id: int = 1,
        org_id: int | None = None,
        user_id: int | None = None,
        products: list[tuple] = (),
        currency: str | None = "EUR",
        **custom: Any,
    ) -> int:
        """``user_id`` is the owner (v2's ``owner_id``); keyword extras are custom fields.
        A product is ``(name, quantity)`` (priced 100 a unit) or ``(name, quantity, money)``,
        ``money`` a dict of ``item_price``, ``sum`` and ``currency`` (decimal strings or
        numbers; None: no value)."""
        with self.lock:
            deal_id = next(self._ids)
            now = _now()
            self.deals[deal_id] = {
                "id": deal_id, "title": title, "status": "open", "stage_id": stage_id,
                "pipeline_id": 1, "value": 0, "currency": currency, "org_id": org_id,
                "owner_id": user_id, "person_id": None, "is_deleted": False,
                "add_time": now, "update_time": now, "custom_fields": dict(custom),
            }  # fmt: skip
            self.deal_products[deal_id] = [
                self._deal_product(deal_id, currency, *product) for product in products
            ]
            self.set_status(deal_id, status)
            return deal_id

    def _deal_product(self, deal_id: int, currency: str | None, *product: Any) -> dict:
        name, quantity, *priced = product
        money = {"item_price": 100, "currency": currency} | (priced[0] if priced else {})
        if "sum" not in money and money["item_price"] is not None and quantity is not None:
            money["sum"] = Decimal(str(money["item_price"])) * Decimal(str(quantity))
        return {
            "id": next(self._ids), "deal_id": deal_id, "product_id": next(self._ids),
            "name": name, "quantity": quantity, "is_enabled": True,
            **{k: _number(v) if k != "currency" else v for k, v in money.items()},
        }  # fmt: skip

    def set_status(self, deal_id: int, status: str, stage_id: int | None = None) -> None:
        """``deleted`` deletes the deal (``is_deleted``), as v2 shows it."""
        with self.lock:
            deal = self.deals[deal_id]
            if status == "deleted":
                deal["is_deleted"] = True
            else:
                deal["status"] = status
            if stage_id is not None:
                deal["stage_id"] = stage_id
            deal["update_time"] = _now()

    def set_update_time(self, deal_id: int, when: datetime) -> None:
        """The deal's last change was at ``when`` (UTC, kept to the second, as Pipedrive)."""
        with self.lock:
            self.deals[deal_id]["update_time"] = _stamp(when)

    # -- levers -------------------------------------------------------------------------------
    def spend_daily_budget(self) -> None:
        """The company's daily token budget is gone: every request is 429 until a refill."""
        with self.lock:
            self.budget_left = 0

    def refill_daily_budget(self) -> None:
        with self.lock:
            self.budget_left = self.daily_budget

    def retired_reads(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request to a retired v1 read."""
        with self.lock:
            return [entry for entry in self.log if RETIRED_V1.fullmatch(entry[1])]

    # -- the API ----------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [
            ("GET", re.compile(r"/api/v2/deals"), self._list_deals),
            ("GET", re.compile(r"/api/v2/deals/([^/]+)"), self._get_deal),
            ("GET", re.compile(r"/api/v2/deals/([^/]+)/products"), self._products),
            ("GET", re.compile(r"/api/v2/organizations/([^/]+)"), self._get_organization),
            ("GET", re.compile(r"/api/v2/organizations"), self._list_organizations),
            ("GET", re.compile(r"/api/v2/stages"), self._list_stages),
            ("GET", re.compile(r"/api/v1/users/me"), self._me),
            ("GET", re.compile(r"/api/v1/users/([^/]+)"), self._get_user),
            *[(m, RETIRED_V1, self._retired) for m in ("GET", "POST", "PUT", "DELETE")],
        ]

    def handle(self, request: Request) -> Response:
        response = super().handle(request)
        response.headers = {**self._limit_headers(), **response.headers}
        return response

    def authenticate(self, request: Request) -> Response | None:
        with self.lock:
            self.received.append(request)
        given = request.headers.get("x-api-token") or request.arg("api_token")
        if given != self.token:
            return _error(401, "unauthorized access")
        with self.lock:
            if self.budget_left <= 0:
                self.throttled += 1
                response = _error(429, "Request over limit")  # the daily budget's refusal
                response.headers = {"x-daily-ratelimit-token-remaining": "0"}
                return response
            if _resource(request.path) in self.forbidden:
                return _error(403, "You do not have permission to view this resource")
            version = "v2" if request.path.startswith("/api/v2/") else "v1"
            cost = LIST_COST if request.path == "/api/v2/deals" else COST[version]
            self.budget_left = max(0, self.budget_left - cost)
        return None

    def _limit_headers(self) -> dict[str, str]:
        calls, period = self.rate_limit or (20, 2.0)
        with self.lock:
            used = len(self._arrivals)
            left = self.budget_left
        return {
            "x-ratelimit-limit": str(calls),
            "x-ratelimit-remaining": str(max(0, calls - used)),
            "x-ratelimit-reset": str(round(period)),
            "x-daily-ratelimit-token-limit": str(self.daily_budget),
            "x-daily-ratelimit-token-remaining": str(left),
        }

    def throttle_response(self, retry_after: int) -> Response:
        response = _error(429, "Request over limit")
        response.headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(retry_after)}
        return response

    def not_found(self) -> Response:
        return _error(404, "Unknown method .")

    def _retired(self, request: Request, *_: Any) -> Response:
        return _error(410, "This endpoint is deprecated. Please use API v2 instead.")

    def _deal(self, deal_id: str) -> dict | None:
        return self.deals.get(int(deal_id)) if deal_id.isdigit() else None

    def _get_deal(self, request: Request, deal_id: str) -> Response:
        deal = self._deal(deal_id)
        if deal is None:
            return _error(404, "Deal not found")
        shown = dict(deal, custom_fields=dict(deal["custom_fields"]))
        return Response(200, {"success": True, "data": shown, "additional_data": None})

    def _products(self, request: Request, deal_id: str) -> Response:
        deal = self._deal(deal_id)
        if deal is None:
            return _error(404, "Deal not found")
        try:
            limit = int(request.arg("limit", "100"))
            start = _offset(request.arg("cursor"))
        except ValueError:
            return _error(400, "Invalid cursor or limit")
        if not 1 <= limit <= MAX_LIMIT:
            return _error(400, f"limit must be 1..{MAX_LIMIT}")
        rows = self.deal_products[deal["id"]]
        size = min(limit, self.page_size)
        page = rows[start : start + size]
        more = start + size < len(rows)
        next_cursor = base64.b64encode(f"o:{start + size}".encode()).decode() if more else None
        return Response(
            200, {"success": True, "data": page, "additional_data": {"next_cursor": next_cursor}}
        )

    def _list_deals(self, request: Request) -> Response:
        try:
            query = _DealQuery(request)
        except ValueError as exc:
            return _error(400, str(exc))
        rows = sorted(
            (d for d in self.deals.values() if query.wants(d)),
            key=query.key,
            reverse=query.descending,
        )
        if query.after is not None:
            rows = [d for d in rows if query.beyond(d)]
        page = rows[: min(query.limit, self.page_size)]
        more = len(rows) > len(page)
        cursor = query.cursor_after(page[-1]) if more else None
        shown = [dict(d, custom_fields=dict(d["custom_fields"])) for d in page]
        return Response(
            200, {"success": True, "data": shown, "additional_data": {"next_cursor": cursor}}
        )

    def _me(self, request: Request) -> Response:
        user = dict(self.users[self.token_user])
        user |= {"company_id": self.company_id, "company_name": "Fake Company",
                 "company_domain": f"fake-{self.company_id}", "timezone_name": "UTC",
                 "default_currency": self.default_currency}  # fmt: skip
        return Response(200, {"success": True, "data": user})

    def _get_organization(self, request: Request, org_id: str) -> Response:
        org = self.organizations.get(int(org_id)) if org_id.isdigit() else None
        if org is None:
            return _error(404, "Organization not found")
        return Response(200, {"success": True, "data": dict(org), "additional_data": None})

    def _list_organizations(self, request: Request) -> Response:
        return self._cursor_page(request, [dict(o) for o in self.organizations.values()])

    def _list_stages(self, request: Request) -> Response:
        """``GET /api/v2/stages[?pipeline_id=]``: the stages, by ``order_nr``."""
        wanted = request.arg("pipeline_id")
        rows = [
            dict(s)
            for s in self.stages.values()
            if not s["is_deleted"] and (wanted is None or str(s["pipeline_id"]) == wanted)
        ]
        return self._cursor_page(request, rows)

    def _cursor_page(self, request: Request, rows: list[dict]) -> Response:
        try:
            limit = int(request.arg("limit", "100"))
            start = _offset(request.arg("cursor"))
        except ValueError:
            return _error(400, "Invalid cursor or limit")
        if not 1 <= limit <= MAX_LIMIT:
            return _error(400, f"limit must be 1..{MAX_LIMIT}")
        page = rows[start : start + limit]
        more = start + limit < len(rows)
        next_cursor = base64.b64encode(f"o:{start + limit}".encode()).decode() if more else None
        return Response(
            200, {"success": True, "data": page, "additional_data": {"next_cursor": next_cursor}}
        )

    def _get_user(self, request: Request, user_id: str) -> Response:
        user = self.users.get(int(user_id)) if user_id.isdigit() else None
        if user is None:
            return _error(404, "User not found")
        return Response(200, {"success": True, "data": dict(user)})


def _resource(path: str) -> str | None:
    """What a v2 path reads: ``/api/v2/deals/1/products`` reads products."""
    parts = path.removeprefix("/api/v2/").split("/")
    if not path.startswith("/api/v2/"):
        return None
    return "products" if parts[-1] == "products" else parts[0]


def _number(value: Any) -> int | float | None:
    """A JSON number, as Pipedrive sends money: no string, no trailing zeros kept."""
    if value is None:
        return None
    exact = Decimal(str(value))
    return int(exact) if exact == exact.to_integral_value() else float(exact)


def _now() -> str:
    return _stamp(datetime.now(UTC))


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc3339(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    if not _RFC3339.fullmatch(value):
        raise ValueError(f"{name} must be in RFC3339 format, e.g. 2025-01-01T10:20:00Z")
    return datetime.fromisoformat(value.replace("z", "Z")).astimezone(UTC)


_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


class _DealQuery:
    """One ``GET /api/v2/deals``: its filters, its order and where its cursor left off."""

    def __init__(self, request: Request):
        self.since = _rfc3339("updated_since", request.arg("updated_since"))
        self.until = _rfc3339("updated_until", request.arg("updated_until"))
        self.sort_by = request.arg("sort_by", "id")
        if self.sort_by not in SORT_FIELDS:
            raise ValueError(f"sort_by must be one of {', '.join(SORT_FIELDS)}")
        direction = request.arg("sort_direction", "asc")
        if direction not in ("asc", "desc"):
            raise ValueError("sort_direction must be asc or desc")
        self.descending = direction == "desc"
        statuses = request.arg("status")
        self.statuses = set(statuses.split(",")) if statuses else {"open", "won", "lost"}
        if not self.statuses <= STATUSES:
            raise ValueError(f"status must be among {', '.join(sorted(STATUSES))}")
        limit = request.arg("limit", "100")
        if not (limit.isdigit() and 1 <= int(limit) <= MAX_LIMIT):
            raise ValueError(f"limit must be 1..{MAX_LIMIT}")
        self.limit = int(limit)
        self.after = self._decode(request.arg("cursor"))

    def wants(self, deal: dict) -> bool:
        status = "deleted" if deal["is_deleted"] else deal["status"]
        changed = datetime.fromisoformat(deal["update_time"])
        return (
            status in self.statuses
            and (self.since is None or changed >= self.since)
            and (self.until is None or changed < self.until)
        )

    def key(self, deal: dict) -> tuple:
        return (deal[self.sort_by], deal["id"])

    def beyond(self, deal: dict) -> bool:
        """After the cursor's deal in this order (keyset paging)."""
        key = self.key(deal)
        return key < self.after if self.descending else key > self.after

    def cursor_after(self, deal: dict) -> str:
        value = {"field": self.sort_by, "fieldValue": deal[self.sort_by], "id": deal["id"],
                 "sortDirection": "desc" if self.descending else "asc"}  # fmt: skip
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    def _decode(self, cursor: str | None) -> tuple | None:
        if cursor is None:
            return None
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            value = json.loads(raw)
            if value["field"] != self.sort_by or not isinstance(value["id"], int):
                raise ValueError
            if value["sortDirection"] != ("desc" if self.descending else "asc"):
                raise ValueError
            return (value["fieldValue"], value["id"])
        except (binascii.Error, UnicodeDecodeError, ValueError, KeyError, TypeError):
            raise ValueError("Invalid cursor") from None


def _offset(cursor: str | None) -> int:
    """The fake's cursor is opaque to clients; a forged or stale one is a 400."""
    if cursor is None:
        return 0
    try:
        kind, _, offset = base64.b64decode(cursor, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError(cursor) from None
    if kind != "o" or not offset.isdigit():
        raise ValueError(cursor)
    return int(offset)


if __name__ == "__main__":
    serve_main(lambda args: FakePipedrive(latency=args.latency), "A fake Pipedrive API")
