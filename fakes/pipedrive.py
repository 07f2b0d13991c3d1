"""A fake Pipedrive company over real HTTP, written from Pipedrive's API v1 docs: the calls
``adapters.pipedrive`` makes, with Pipedrive's rules where the docs state them.

- The API token goes in the ``x-api-token`` header or the ``api_token`` query parameter;
  anything else is 401 ``{"success": false, "error": "unauthorized access"}``.
- ``GET /api/v1/deals/{id}`` embeds the owner (``user_id``, with ``email``) and the
  organization (``org_id``: ``value`` and ``name``); an unknown id is 404 "Deal not found";
  a deleted deal is still readable for a while, with ``status`` deleted.
- Deal products page by ``start``/``limit`` (limit at most 500) and say
  ``more_items_in_collection``; no products is ``data: null``.
- A rate limit per token (20 requests per 2 s by default); over it, 429 with
  ``x-ratelimit-limit``, ``x-ratelimit-remaining`` and ``x-ratelimit-reset`` (seconds).
"""

from __future__ import annotations

import itertools
import random
import re
from typing import Any

from fakes.base import FakeVendor, Request, Response, Route, serve_main

MAX_LIMIT = 500
INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."


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
    ):
        super().__init__(rate_limit=rate_limit, latency=latency)
        self.token = token
        self.page_size = page_size
        self.deals: dict[int, dict] = {}
        self.organizations: dict[int, dict] = {}
        self.users: dict[int, dict] = {}
        self.deal_products: dict[int, list[dict]] = {}  # deal id -> attached products
        self.received: list[Request] = []
        self._ids = itertools.count(random.randint(1000, 10**6))

    # -- seeding ----------------------------------------------------------------------------
    def add_user(self, email: str) -> int:
        with self.lock:
            user_id = next(self._ids)
            self.users[user_id] = {"id": user_id, "name": "Test Owner", "email": email,
                                   "has_pic": 0, "active_flag": True, "value": user_id}  # fmt: skip
            return user_id

    def add_organization(self, name: str) -> int:
        with self.lock:
            org_id = next(self._ids)
            self.organizations[org_id] = {"id": org_id, "name": name, "owner_id": None}
            return org_id

    def add_deal(
        self,
        title: str,
        *,
        status: str = "open",
        stage_id: int = 1,
        org_id: int | None = None,
        user_id: int | None = None,
        products: list[tuple[str, float]] = (),
        **custom: Any,
    ) -> int:
        with self.lock:
            deal_id = next(self._ids)
            self.deals[deal_id] = {
                "id": deal_id, "title": title, "status": status, "stage_id": stage_id,
                "pipeline_id": 1, "value": 0, "currency": "EUR", "org_id": org_id,
                "user_id": user_id, **custom,
            }  # fmt: skip
            self.deal_products[deal_id] = [
                {"id": next(self._ids), "deal_id": deal_id, "product_id": next(self._ids),
                 "name": name, "quantity": quantity, "item_price": 100, "enabled_flag": True}
                for name, quantity in products
            ]  # fmt: skip
            return deal_id

    def set_status(self, deal_id: int, status: str, stage_id: int | None = None) -> None:
        with self.lock:
            self.deals[deal_id]["status"] = status
            if stage_id is not None:
                self.deals[deal_id]["stage_id"] = stage_id

    # -- the API ----------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [
            ("GET", re.compile(r"/api/v1/deals/([^/]+)"), self._get_deal),
            ("GET", re.compile(r"/api/v1/deals/([^/]+)/products"), self._products),
        ]

    def authenticate(self, request: Request) -> Response | None:
        with self.lock:
            self.received.append(request)
        given = request.headers.get("x-api-token") or request.arg("api_token")
        if given != self.token:
            return _error(401, "unauthorized access")
        return None

    def throttle_response(self, retry_after: int) -> Response:
        calls = self.rate_limit[0] if self.rate_limit else 20
        response = _error(429, "Request over limit")
        response.headers = {
            "x-ratelimit-limit": str(calls),
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": str(retry_after),
        }
        return response

    def not_found(self) -> Response:
        return _error(404, "Unknown method .")

    def _deal(self, deal_id: str) -> dict | None:
        return self.deals.get(int(deal_id)) if deal_id.isdigit() else None

    def _get_deal(self, request: Request, deal_id: str) -> Response:
        deal = self._deal(deal_id)
        if deal is None:
            return _error(404, "Deal not found")
        shown = dict(deal)
        org = self.organizations.get(deal["org_id"]) if deal["org_id"] else None
        shown["org_id"] = (
            {"name": org["name"], "owner_id": org["owner_id"], "value": org["id"],
             "people_count": 0, "active_flag": True}
            if org else None
        )  # fmt: skip
        user = self.users.get(deal["user_id"]) if deal["user_id"] else None
        shown["user_id"] = dict(user) if user else None
        return Response(200, {"success": True, "data": shown, "additional_data": None})

    def _products(self, request: Request, deal_id: str) -> Response:
        deal = self._deal(deal_id)
        if deal is None:
            return _error(404, "Deal not found")
        try:
            start = int(request.arg("start", "0"))
            limit = int(request.arg("limit", "100"))
        except ValueError:
            return _error(400, "start and limit must be integers")
        if start < 0 or not 1 <= limit <= MAX_LIMIT:
            return _error(400, f"limit must be 1..{MAX_LIMIT}")
        rows = self.deal_products[deal["id"]]
        size = min(limit, self.page_size)
        page = rows[start : start + size]
        more = start + size < len(rows)
        pagination = {"start": start, "limit": size, "more_items_in_collection": more}
        if more:
            pagination["next_start"] = start + size
        return Response(
            200,
            {
                "success": True,
                "data": page or None,
                "additional_data": {"pagination": pagination},
            },
        )


if __name__ == "__main__":
    serve_main(lambda args: FakePipedrive(latency=args.latency), "A fake Pipedrive API")
