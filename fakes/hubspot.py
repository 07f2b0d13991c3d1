"""A fake HubSpot CRM account over real HTTP, written from HubSpot's public API docs: the
calls ``adapters.hubspot`` makes, with HubSpot's rules where the docs state them.

- Private-app token as ``Authorization: Bearer``; anything else is 401
  ``INVALID_AUTHENTICATION``.
- Records are read by numeric id; another id, or a deleted record, is 404
  ``OBJECT_NOT_FOUND``. Only the properties asked for (plus ``hs_object_id``) come back.
- v4 association lists page by ``after`` cursors, ``limit`` at most 500.
- Batch reads take at most 100 inputs (400 ``VALIDATION_ERROR`` above); ids not found give
  207 with ``errors`` beside the ``results``.
- 100 requests per 10 s (a private app on Free/Starter); over it, 429 ``RATE_LIMIT`` with
  the ``X-HubSpot-RateLimit-*`` headers and no Retry-After.

State is plain dicts keyed by string id, so tests read and change it directly.
"""

from __future__ import annotations

import itertools
import random
import re
import uuid
from typing import Any

from fakes.base import FakeVendor, Request, Response, Route, serve_main

MAX_ASSOCIATIONS = 500
MAX_BATCH = 100
DEFAULT_PIPELINE = [
    ("appointmentscheduled", "Appointment Scheduled", "false", "0.2"),
    ("qualifiedtobuy", "Qualified To Buy", "false", "0.4"),
    ("contractsent", "Contract Sent", "false", "0.9"),
    ("closedwon", "Closed Won", "true", "1.0"),
    ("closedlost", "Closed Lost", "true", "0.0"),
]


def _error(status: int, category: str, message: str, **extra: Any) -> Response:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4())}
    return Response(status, {**body, "category": category, **extra})


def _pipeline(pipeline_id: str, label: str, stages: list[tuple[str, str, str, str]]) -> dict:
    return {
        "id": pipeline_id,
        "label": label,
        "displayOrder": 0,
        "archived": False,
        "stages": [
            {
                "id": sid,
                "label": slabel,
                "displayOrder": i,
                "archived": False,
                "metadata": {"isClosed": closed, "probability": probability},
            }
            for i, (sid, slabel, closed, probability) in enumerate(stages)
        ],
    }


class FakeHubSpot(FakeVendor):
    name = "hubspot"

    def __init__(
        self,
        token: str = "pat-na1-test-token",
        *,
        page_size: int = MAX_ASSOCIATIONS,
        rate_limit: tuple[int, float] | None = (100, 10.0),
        latency: float = 0.0,
    ):
        super().__init__(rate_limit=rate_limit, latency=latency)
        self.token = token
        self.page_size = page_size
        self.deals: dict[str, dict] = {}  # id -> {"properties", "companies", "line_items"}
        self.companies: dict[str, dict] = {}  # id -> properties
        self.line_items: dict[str, dict] = {}  # id -> properties
        self.owners: dict[str, dict] = {}
        self.pipelines: list[dict] = [_pipeline("default", "Sales Pipeline", DEFAULT_PIPELINE)]
        self.received: list[Request] = []
        self._ids = itertools.count(random.randint(10**10, 2 * 10**10))

    # -- seeding ----------------------------------------------------------------------------
    def _id(self) -> str:
        return str(next(self._ids))

    def add_pipeline(self, label: str, stages: list[tuple[str, str, str, str]]) -> str:
        with self.lock:
            pipeline_id = self._id()
            self.pipelines.append(_pipeline(pipeline_id, label, stages))
            return pipeline_id

    def add_owner(self, email: str) -> str:
        with self.lock:
            owner_id = self._id()
            self.owners[owner_id] = {
                "id": owner_id, "email": email, "firstName": "Test", "lastName": "Owner",
                "userId": int(owner_id) % 10**8, "archived": False,
            }  # fmt: skip
            return owner_id

    def add_company(self, name: str) -> str:
        with self.lock:
            company_id = self._id()
            self.companies[company_id] = {"name": name, "hs_object_id": company_id}
            return company_id

    def add_line_item(self, name: str, quantity: float | None = 1, **properties: Any) -> str:
        with self.lock:
            item_id = self._id()
            qty = None if quantity is None else str(quantity)
            self.line_items[item_id] = {"name": name, "quantity": qty, **properties}
            return item_id

    def add_deal(
        self,
        name: str,
        stage: str = "appointmentscheduled",
        *,
        company: str | None = None,
        line_items: list[str] = (),
        owner: str | None = None,
        pipeline: str = "default",
        **properties: Any,
    ) -> str:
        with self.lock:
            deal_id = self._id()
            props = {
                "dealname": name, "dealstage": stage, "pipeline": pipeline,
                "hubspot_owner_id": owner, **properties,
            }  # fmt: skip
            self.deals[deal_id] = {
                "properties": props,
                "companies": [company] if company else [],
                "line_items": list(line_items),
            }
            return deal_id

    def set_stage(self, deal_id: str, stage: str) -> None:
        with self.lock:
            self.deals[deal_id]["properties"]["dealstage"] = stage

    def delete_deal(self, deal_id: str) -> None:
        with self.lock:
            del self.deals[deal_id]

    # -- the API ----------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [
            ("GET", re.compile(r"/crm/v3/objects/deals/([^/]+)"), self._get_deal),
            ("GET", re.compile(r"/crm/v3/objects/companies/([^/]+)"), self._get_company),
            (
                "GET",
                re.compile(r"/crm/v4/objects/deals/([^/]+)/associations/(companies|line_items)"),
                self._associations,
            ),
            ("POST", re.compile(r"/crm/v3/objects/line_items/batch/read"), self._batch_read),
            ("GET", re.compile(r"/crm/v3/owners/([^/]+)"), self._get_owner),
            ("GET", re.compile(r"/crm/v3/pipelines/deals"), self._pipelines),
        ]

    def authenticate(self, request: Request) -> Response | None:
        with self.lock:
            self.received.append(request)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return _error(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at https://developers.hubspot.com",
            )
        return None

    def throttle_response(self, retry_after: int) -> Response:
        calls = self.rate_limit[0] if self.rate_limit else 100
        response = _error(
            429,
            "RATE_LIMITS",
            "You have reached your ten_secondly_rolling limit.",
            errorType="RATE_LIMIT",
            policyName="TEN_SECONDLY_ROLLING",
        )
        response.headers = {
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Max": str(calls),
            "X-HubSpot-RateLimit-Remaining": "0",
        }
        return response

    def not_found(self) -> Response:
        return _error(404, "OBJECT_NOT_FOUND", "Resource not found")

    def _missing(self, object_id: str) -> Response:
        return _error(
            404,
            "OBJECT_NOT_FOUND",
            "Object not found.  objectId are usually numeric.",
            context={"id": [object_id]},
        )

    def _record(self, object_id: str, props: dict, request: Request) -> Response:
        wanted = [p for p in (request.arg("properties") or "").split(",") if p]
        shown = {p: props.get(p) for p in wanted} | {"hs_object_id": object_id}
        return Response(200, {"id": object_id, "properties": shown, "archived": False})

    def _get_deal(self, request: Request, deal_id: str) -> Response:
        deal = self.deals.get(deal_id)
        return (
            self._record(deal_id, deal["properties"], request) if deal else self._missing(deal_id)
        )

    def _get_company(self, request: Request, company_id: str) -> Response:
        company = self.companies.get(company_id)
        if company is None:
            return self._missing(company_id)
        return self._record(company_id, company, request)

    def _associations(self, request: Request, deal_id: str, kind: str) -> Response:
        deal = self.deals.get(deal_id)
        if deal is None:
            return self._missing(deal_id)
        try:
            limit = int(request.arg("limit", "500"))
            after = int(request.arg("after", "0"))
        except ValueError:
            return _error(400, "VALIDATION_ERROR", "limit and after must be integers")
        if not 1 <= limit <= MAX_ASSOCIATIONS:
            return _error(400, "VALIDATION_ERROR", f"limit must be 1..{MAX_ASSOCIATIONS}")
        size = min(limit, self.page_size)
        ids = deal[kind][after : after + size]
        type_id = 5 if kind == "companies" else 20
        label = "Primary" if kind == "companies" else None
        results = [
            {
                "toObjectId": int(i),
                "associationTypes": [
                    {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": label}
                ],
            }
            for i in ids
        ]
        body: dict[str, Any] = {"results": results}
        if after + size < len(deal[kind]):
            body["paging"] = {"next": {"after": str(after + size), "link": None}}
        return Response(200, body)

    def _batch_read(self, request: Request) -> Response:
        body = request.body if isinstance(request.body, dict) else {}
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
            return _error(400, "VALIDATION_ERROR", "inputs: a list of {id} is required")
        if len(inputs) > MAX_BATCH:
            return _error(400, "VALIDATION_ERROR", f"at most {MAX_BATCH} inputs per batch")
        wanted = body.get("properties") or []
        results, errors = [], []
        for entry in inputs:
            item_id = str(entry.get("id"))
            props = self.line_items.get(item_id)
            if props is None:
                errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                               "context": {"ids": [item_id]}})  # fmt: skip
                continue
            shown = {p: props.get(p) for p in wanted} | {"hs_object_id": item_id}
            results.append({"id": item_id, "properties": shown, "archived": False})
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if errors:
            return Response(207, answer | {"numErrors": len(errors), "errors": errors})
        return Response(200, answer)

    def _get_owner(self, request: Request, owner_id: str) -> Response:
        owner = self.owners.get(owner_id)
        return Response(200, owner) if owner else self._missing(owner_id)

    def _pipelines(self, request: Request) -> Response:
        return Response(200, {"results": self.pipelines})


if __name__ == "__main__":
    serve_main(lambda args: FakeHubSpot(latency=args.latency), "A fake HubSpot CRM API")
