"""A fake Salesforce org over real HTTP, written from the Salesforce REST API docs: the calls
``adapters.salesforce`` makes, with Salesforce's rules where the docs state them.

- ``Authorization: Bearer <access token>``; anything else is 401 ``INVALID_SESSION_ID``.
- Errors are JSON arrays of ``{"message", "errorCode"}``; a record that does not exist is
  404 ``NOT_FOUND``; ``fields=`` naming a field the object lacks is 400 ``INVALID_FIELD``;
  an API version other than the ones served is 404.
- ``/query`` takes the one SOQL shape the adapter sends (line items of one Opportunity);
  anything else is 400 ``MALFORMED_QUERY``. Results come ``page_size`` records at a time
  with ``done`` and ``nextRecordsUrl``.
- Running out of calls is 403 ``REQUEST_LIMIT_EXCEEDED`` (Salesforce sends no 429).

Records are dicts keyed by 18-character id, fields by their API names.
"""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

from fakes.base import FakeVendor, Request, Response, Route, serve_main

_ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def salesforce_id(prefix: str) -> str:
    """A random 18-character Salesforce id (suffix computed as Salesforce documents)."""
    id15 = prefix + "".join(random.choice(_ALPHANUMERIC) for _ in range(15 - len(prefix)))
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, c in enumerate(id15[start : start + 5]) if c.isupper())
        suffix += "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"[bits]
    return id15 + suffix


VERSION = "v60.0"
FIELDS = {
    "Opportunity": {"Id", "Name", "StageName", "IsWon", "IsClosed", "AccountId", "OwnerId"},
    "Account": {"Id", "Name"},
    "User": {"Id", "Email", "Name"},
    "OpportunityLineItem": {"Id", "Name", "Quantity", "OpportunityId", "Product2Id"},
}
_LINE_ITEMS = re.compile(
    r"SELECT (?P<columns>[A-Za-z0-9_., ]+) FROM OpportunityLineItem "
    r"WHERE OpportunityId = '(?P<id>[A-Za-z0-9]{15,18})' ORDER BY Id"
)


def _error(status: int, code: str, message: str) -> Response:
    return Response(status, [{"message": message, "errorCode": code}])


class FakeSalesforce(FakeVendor):
    name = "salesforce"

    def __init__(
        self,
        token: str = "00Dfake!access-token",
        *,
        page_size: int = 2000,
        rate_limit: tuple[int, float] | None = (100, 1.0),
        latency: float = 0.0,
    ):
        super().__init__(rate_limit=rate_limit, latency=latency)
        self.token = token
        self.page_size = page_size
        self.fields = {kind: set(names) for kind, names in FIELDS.items()}
        self.records: dict[str, dict[str, dict]] = {kind: {} for kind in FIELDS}
        self.received: list[Request] = []
        self._cursors: dict[str, list[dict]] = {}

    # -- seeding ----------------------------------------------------------------------------
    def add_field(self, sobject: str, name: str) -> None:
        """A custom field (``Delivery_Team__c``) the org defines on ``sobject``."""
        self.fields[sobject].add(name)

    def add(self, sobject: str, prefix: str, **fields: Any) -> str:
        with self.lock:
            record_id = salesforce_id(prefix)
            self.records[sobject][record_id] = {"Id": record_id, **fields}
            return record_id

    def add_user(self, email: str) -> str:
        return self.add("User", "005", Email=email, Name="Test Owner")

    def add_account(self, name: str) -> str:
        return self.add("Account", "001", Name=name)

    def add_opportunity(
        self,
        name: str,
        stage: str = "Prospecting",
        *,
        won: bool = False,
        closed: bool | None = None,
        account: str | None = None,
        owner: str | None = None,
        line_items: list[tuple[str, float]] = (),
        **custom: Any,
    ) -> str:
        opportunity = self.add(
            "Opportunity", "006", Name=name, StageName=stage, IsWon=won,
            IsClosed=won if closed is None else closed, AccountId=account, OwnerId=owner,
            **custom,
        )  # fmt: skip
        for item_name, quantity in line_items:
            self.add(
                "OpportunityLineItem", "00k", Name=item_name, Quantity=quantity,
                OpportunityId=opportunity, Product2Id=salesforce_id("01t"),
            )  # fmt: skip
        return opportunity

    def set_stage(self, opportunity: str, stage: str, *, won: bool, closed: bool) -> None:
        with self.lock:
            self.records["Opportunity"][opportunity].update(
                StageName=stage, IsWon=won, IsClosed=closed
            )

    # -- the API ----------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        base = rf"/services/data/{re.escape(VERSION)}"
        return [
            ("GET", re.compile(rf"{base}/sobjects/(\w+)/([^/]+)"), self._sobject),
            ("GET", re.compile(rf"{base}/query"), self._query),
            ("GET", re.compile(rf"{base}/query/([0-9a-f]+)-(\d+)"), self._more),
        ]

    def authenticate(self, request: Request) -> Response | None:
        with self.lock:
            self.received.append(request)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        return None

    def throttle_response(self, retry_after: int) -> Response:
        return _error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")

    def not_found(self) -> Response:
        return _error(404, "NOT_FOUND", "The requested resource does not exist")

    def _shown(self, sobject: str, record: dict, fields: list[str]) -> dict:
        url = f"/services/data/{VERSION}/sobjects/{sobject}/{record['Id']}"
        shown: dict[str, Any] = {"attributes": {"type": sobject, "url": url}}
        for name in fields:
            head, _, rest = name.partition(".")
            shown[head] = record.get(head) if not rest else {rest: None}
        return shown

    def _sobject(self, request: Request, sobject: str, record_id: str) -> Response:
        if sobject not in self.fields:
            return _error(404, "NOT_FOUND", f"The requested resource does not exist: {sobject}")
        record = self.records[sobject].get(record_id)
        if record is None:
            return self.not_found()
        fields = [f for f in (request.arg("fields") or "").split(",") if f] or sorted(record)
        unknown = [f for f in fields if f not in self.fields[sobject]]
        if unknown:
            return _error(
                400, "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type {sobject}"
            )
        return Response(200, self._shown(sobject, record, fields))

    def _query(self, request: Request) -> Response:
        found = _LINE_ITEMS.fullmatch(request.arg("q") or "")
        if not found:
            return _error(400, "MALFORMED_QUERY", "unexpected token: the fake reads one query")
        columns = [c.strip() for c in found["columns"].split(",")]
        unknown = [c for c in columns if c not in self.fields["OpportunityLineItem"]]
        if unknown:
            return _error(
                400,
                "INVALID_FIELD",
                f"No such column '{unknown[0]}' on entity 'OpportunityLineItem'.",
            )
        rows = sorted(
            (r for r in self.records["OpportunityLineItem"].values()
             if r["OpportunityId"] == found["id"]),
            key=lambda r: r["Id"],
        )  # fmt: skip
        records = [self._shown("OpportunityLineItem", r, columns) for r in rows]
        cursor = uuid.uuid4().hex[:16]
        self._cursors[cursor] = records
        return self._page(cursor, 0)

    def _page(self, cursor: str, start: int) -> Response:
        records = self._cursors[cursor]
        page = records[start : start + self.page_size]
        done = start + self.page_size >= len(records)
        body: dict[str, Any] = {"totalSize": len(records), "done": done, "records": page}
        if not done:
            body["nextRecordsUrl"] = (
                f"/services/data/{VERSION}/query/{cursor}-{start + self.page_size}"
            )
        return Response(200, body)

    def _more(self, request: Request, cursor: str, start: str) -> Response:
        if cursor not in self._cursors:
            return _error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(cursor, int(start))


if __name__ == "__main__":
    serve_main(lambda args: FakeSalesforce(latency=args.latency), "A fake Salesforce REST API")
