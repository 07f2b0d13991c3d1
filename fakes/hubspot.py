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
- ``POST /crm/v3/objects/deals/search``: ``filterGroups`` (OR of ANDed filters; the
  operators EQ, NEQ, GT, GTE, LT, LTE), ``sorts``, ``properties``, ``limit`` 1..200 and
  ``after`` (a string offset); answers ``total``, ``results`` and ``paging.next.after``.
  One query reaches ``search_cap`` results (10,000): a page past them is 400. Search has
  its own limit (``search_rate``, a few a second), a 429 beside the account's.
- Every deal carries ``hs_lastmodifieddate`` (and ``createdate``), set when it is added or
  changed through a lever, or to any time by ``touch``.
- ``GET /account-info/v3/details``: the portal's id and settings: ``companyCurrency``
  (lever: ``company_currency``), ``uiDomain`` and ``dataHostingLocation`` (``ui_domain``:
  ``app-eu1.hubspot.com`` for an EU-hosted account).
- Every property value is a string, numbers too (``amount`` "12000.00", ``quantity`` "40"),
  as HubSpot returns them; a property with no value is null. Line items carry ``amount``
  (the total), ``price`` (a unit's) and ``hs_line_item_currency_code``; deals carry
  ``deal_currency_code``. The fake keeps the ones seeded, it does not compute ``amount``.

State is plain dicts keyed by string id, so tests read and change it directly.
"""

from __future__ import annotations

import itertools
import random
import re
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

from fakes.base import FakeVendor, Request, Response, Route, serve_main

MAX_ASSOCIATIONS = 500
MAX_BATCH = 100
MAX_SEARCH_PAGE = 200
SEARCH_CAP = 10_000
COMPARE = {
    "EQ": lambda a, b: a == b,
    "NEQ": lambda a, b: a != b,
    "GT": lambda a, b: a > b,
    "GTE": lambda a, b: a >= b,
    "LT": lambda a, b: a < b,
    "LTE": lambda a, b: a <= b,
}
_MS = timedelta(milliseconds=1)
DATES = frozenset({"hs_lastmodifieddate", "createdate"})  # compared as epoch milliseconds
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
        portal_id: int | None = None,
        search_rate: tuple[int, float] | None = (5, 1.0),
        company_currency: str = "USD",
        ui_domain: str = "app.hubspot.com",
    ):
        super().__init__(rate_limit=rate_limit, latency=latency)
        self.token = token
        self.portal_id = portal_id or random.randint(10**7, 10**8)
        self.search_rate = search_rate
        self.company_currency = company_currency
        self.ui_domain = ui_domain
        self.search_cap = SEARCH_CAP  # lever: a small cap makes slicing testable
        self.search_throttled = 0
        self._searches: deque[float] = deque()
        self.page_size = page_size
        self.deals: dict[str, dict] = {}  # id -> {"properties", "companies", "line_items"}
        self.companies: dict[str, dict] = {}  # id -> properties
        self.line_items: dict[str, dict] = {}  # id -> properties
        self.owners: dict[str, dict] = {}
        self.pipelines: list[dict] = [_pipeline("default", "Sales Pipeline", DEFAULT_PIPELINE)]
        self.received: list[Request] = []
        self._ids = itertools.count(random.randint(10**10, 2 * 10**10))
        self.refused_scopes: set[str] = set()  # lever: the app lacks these (403 MISSING_SCOPES)

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
        """``amount``, ``price``, ``hs_line_item_currency_code`` and any other property, kept
        as the strings HubSpot would give (None: no value)."""
        with self.lock:
            item_id = self._id()
            props = {"name": name, "quantity": quantity, **properties}
            self.line_items[item_id] = {k: _text(v) for k, v in props.items()}
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
            now = _stamp(datetime.now(UTC))
            props = {
                "dealname": name, "dealstage": stage, "pipeline": pipeline,
                "hubspot_owner_id": owner, "createdate": now, "hs_lastmodifieddate": now,
                **properties,
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
            self.touch(deal_id)

    def touch(self, deal_id: str, at: datetime | None = None) -> None:
        """The deal was last modified ``at`` (default now), as HubSpot would stamp it."""
        with self.lock:
            stamp = _stamp(at or datetime.now(UTC))
            self.deals[deal_id]["properties"]["hs_lastmodifieddate"] = stamp

    def delete_deal(self, deal_id: str) -> None:
        with self.lock:
            del self.deals[deal_id]

    def refuse_scope(self, scope: str) -> None:
        """The app was not granted ``scope``: every read that needs it answers 403."""
        with self.lock:
            self.refused_scopes.add(scope)

    # -- the API ----------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [
            ("GET", re.compile(r"/crm/v3/objects/(deals|companies|line_items)"), self._list),
            ("GET", re.compile(r"/crm/v3/owners/?"), self._list_owners),
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
            ("POST", re.compile(r"/crm/v3/objects/deals/search"), self._search),
            ("GET", re.compile(r"/account-info/v3/details"), self._account),
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
        scope = _scope_of(request.path)
        if scope in self.refused_scopes:
            return _error(
                403,
                "MISSING_SCOPES",
                "This app hasn't been granted all required scopes to make this call.",
                errors=[
                    {
                        "message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": [scope]},
                    }
                ],
                links={"scopes": "https://developers.hubspot.com/scopes"},
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

    def _list(self, request: Request, kind: str) -> Response:
        """``GET /crm/v3/objects/{type}?limit=&after=``: a page of records, oldest first."""
        table = {"deals": self.deals, "companies": self.companies, "line_items": self.line_items}
        with self.lock:
            rows = [
                (object_id, row["properties"] if kind == "deals" else row)
                for object_id, row in table[kind].items()
            ]
        return self._paged(request, [self._shown(i, p, request) for i, p in rows])

    def _list_owners(self, request: Request) -> Response:
        with self.lock:
            owners = [dict(o) for o in self.owners.values()]
        return self._paged(request, owners)

    def _shown(self, object_id: str, props: dict, request: Request) -> dict:
        wanted = [p for p in (request.arg("properties") or "").split(",") if p]
        shown = {p: props.get(p) for p in wanted} | {"hs_object_id": object_id}
        return {"id": object_id, "properties": shown, "archived": False}

    def _paged(self, request: Request, rows: list[dict]) -> Response:
        try:
            limit, after = int(request.arg("limit", "10")), int(request.arg("after", "0"))
        except ValueError:
            return _error(400, "VALIDATION_ERROR", "limit and after must be integers")
        if not 1 <= limit <= MAX_LIST_PAGE:
            return _error(400, "VALIDATION_ERROR", f"limit must be 1..{MAX_LIST_PAGE}")
        answer: dict[str, Any] = {"results": rows[after : after + limit]}
        if after + limit < len(rows):
            answer["paging"] = {"next": {"after": str(after + limit)}}
        return Response(200, answer)

    def _get_owner(self, request: Request, owner_id: str) -> Response:
        owner = self.owners.get(owner_id)
        return Response(200, owner) if owner else self._missing(owner_id)

    def _pipelines(self, request: Request) -> Response:
        return Response(200, {"results": self.pipelines})

    def _account(self, request: Request) -> Response:
        return Response(
            200,
            {
                "portalId": self.portal_id, "accountType": "STANDARD", "timeZone": "US/Eastern",
                "companyCurrency": self.company_currency, "additionalCurrencies": [],
                "utcOffset": "-05:00", "utcOffsetMilliseconds": -18000000,
                "uiDomain": self.ui_domain,
                "dataHostingLocation": "eu1" if "-eu1." in self.ui_domain else "na1",
            },
        )  # fmt: skip

    def _search_throttled(self) -> bool:
        """Search's own limit, counted apart from the account's (a sliding window)."""
        if self.search_rate is None:
            return False
        calls, period = self.search_rate
        now = time.monotonic()
        while self._searches and now - self._searches[0] >= period:
            self._searches.popleft()
        if len(self._searches) >= calls:
            self.search_throttled += 1
            return True
        self._searches.append(now)
        return False

    def _search(self, request: Request) -> Response:
        with self.lock:
            if self._search_throttled():
                return _error(
                    429, "RATE_LIMITS", "You have reached your secondly limit.",
                    errorType="RATE_LIMIT", policyName="SECONDLY",
                )  # fmt: skip
            body = request.body if isinstance(request.body, dict) else None
            try:
                query = _SearchQuery(body)
            except ValueError as exc:
                return _error(400, "VALIDATION_ERROR", str(exc))
            if query.after + query.limit > self.search_cap:
                return _error(
                    400, "VALIDATION_ERROR",
                    f"Paging past {self.search_cap} results is not supported for search",
                )  # fmt: skip
            found = [(i, d["properties"]) for i, d in self.deals.items() if query.matches(d)]
        found.sort(key=query.order)
        page = found[query.after : query.after + query.limit]
        results = [
            {
                "id": deal_id,
                "properties": {p: props.get(p) for p in query.properties}
                | {p: props.get(p) for p in ("hs_object_id", "createdate", "hs_lastmodifieddate")}
                | {"hs_object_id": deal_id},
                "createdAt": props.get("createdate"),
                "updatedAt": props.get("hs_lastmodifieddate"),
                "archived": False,
            }
            for deal_id, props in page
        ]
        answer: dict[str, Any] = {"total": len(found), "results": results}
        if query.after + len(page) < len(found):
            answer["paging"] = {"next": {"after": str(query.after + len(page)), "link": None}}
        return Response(200, answer)


class _SearchQuery:
    """A search body as HubSpot reads it; ``ValueError`` names what it refuses."""

    def __init__(self, body: dict | None):
        if body is None:
            raise ValueError("a JSON object body is required")
        self.groups = body.get("filterGroups") or []
        if not isinstance(self.groups, list) or len(self.groups) > 5:
            raise ValueError("filterGroups: at most 5 groups")
        for group in self.groups:
            filters = group.get("filters") if isinstance(group, dict) else None
            if not isinstance(filters, list) or not 1 <= len(filters) <= 6:
                raise ValueError("filterGroups: each group has 1 to 6 filters")
            for f in filters:
                if f.get("operator") not in COMPARE or "propertyName" not in f:
                    raise ValueError(f"filter operator {str(f.get('operator'))[:20]} unknown")
        self.sorts = body.get("sorts") or []
        self.properties = body.get("properties") or []
        limit, after = body.get("limit", 10), body.get("after", "0")
        if not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_PAGE:
            raise ValueError(f"limit must be 1..{MAX_SEARCH_PAGE}")
        if not isinstance(after, str) or not after.isdigit():
            raise ValueError("after must be a string of digits, as paging.next.after gave it")
        self.limit, self.after = limit, int(after)

    def matches(self, deal: dict) -> bool:
        props = deal["properties"]
        return not self.groups or any(
            all(self._holds(props, f) for f in group["filters"]) for group in self.groups
        )

    @staticmethod
    def _holds(props: dict, f: dict) -> bool:
        name, value = f["propertyName"], f.get("value")
        have = props.get(name)
        if have is None:
            return f["operator"] == "NEQ"
        if name in DATES:
            return COMPARE[f["operator"]](_ms(have), int(value))
        return COMPARE[f["operator"]](str(have), str(value))

    def order(self, item: tuple[str, dict]) -> tuple:
        deal_id, props = item
        keys = []
        for sort in self.sorts:
            name = sort.get("propertyName")
            value = props.get(name)
            key = _ms(value) if name in DATES and value else (value or "")
            keys.append(-key if sort.get("direction") == "DESCENDING" and name in DATES else key)
        return (*keys, int(deal_id))


# The scope each read needs (developers.hubspot.com, each endpoint's Requirements).
# The scope a read needs; an association read needs the other object's too (the first
# pattern that matches wins, so those come first).
SCOPES = (
    (
        re.compile(r"/crm/v4/objects/deals/[^/]+/associations/companies"),
        "crm.objects.companies.read",
    ),
    (
        re.compile(r"/crm/v4/objects/deals/[^/]+/associations/line_items"),
        "crm.objects.line_items.read",
    ),
    (re.compile(r"/crm/v[34]/objects/deals.*|/crm/v3/pipelines/deals.*"), "crm.objects.deals.read"),
    (re.compile(r"/crm/v3/objects/companies.*"), "crm.objects.companies.read"),
    (re.compile(r"/crm/v3/objects/line_items.*"), "crm.objects.line_items.read"),
    (re.compile(r"/crm/v3/owners.*"), "crm.objects.owners.read"),
)
MAX_LIST_PAGE = 100  # GET /crm/v3/objects/{type}: limit 1..100


def _scope_of(path: str) -> str | None:
    return next((scope for pattern, scope in SCOPES if pattern.fullmatch(path)), None)


def _text(value: Any) -> str | None:
    """A property value as HubSpot sends it: a string, or null for no value."""
    return None if value is None else str(value)


def _stamp(moment: datetime) -> str:
    """HubSpot's form of a date-time property: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(stamp: str) -> int:
    moment = datetime.fromisoformat(stamp)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // _MS


if __name__ == "__main__":
    serve_main(lambda args: FakeHubSpot(latency=args.latency), "A fake HubSpot CRM API")
