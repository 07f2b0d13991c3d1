"""A fake Salesforce org over real HTTP, written from the Salesforce REST API docs: the calls
``adapters.salesforce`` makes, with Salesforce's rules where the docs state them.

- ``Authorization: Bearer <access token>``; anything else, or a session over, is 401
  ``INVALID_SESSION_ID``. ``token`` is a session that never ends; sessions issued by the
  token endpoint end ``session_seconds`` after they were issued (None: never). Salesforce
  ends them after the org's timeout without activity; a fixed life is the stricter case.
- ``POST /services/oauth2/token``, form-encoded, for the connected apps registered with
  ``add_connected_app``: ``refresh_token`` (client id, secret, refresh token),
  ``client_credentials`` (client id and secret, the app having a run-as user) and the JWT
  bearer grant (an RS256 ``assertion``, verified with the app's certificate's public key:
  ``iss`` the client id, ``sub`` an approved username, ``aud`` this fake's origin, ``exp``
  required and not passed). The answer is ``access_token``, ``instance_url``, ``id``,
  ``token_type`` and, where a client secret signs it, ``issued_at`` and ``signature``
  (HMAC-SHA256 of id + issued_at with the secret); a refusal is 400 with ``{"error",
  "error_description"}`` (``invalid_client_id``, ``invalid_client``, ``invalid_grant``,
  ``unsupported_grant_type``).
- Every REST answer carries ``Sforce-Limit-Info: api-usage=N/M``: each REST call counts
  one against the daily ``allocation``; once spent, 403 ``REQUEST_LIMIT_EXCEEDED``
  ``TotalRequests Limit exceeded.`` (lever: ``spend_daily_total``). The concurrent limit on
  long-running requests is its own lever (``refuse_concurrent``, and the base's rate limit
  and ``throttle_next``): 403 ``REQUEST_LIMIT_EXCEEDED`` ``ConcurrentRequests``.
- Errors are JSON arrays of ``{"message", "errorCode"}``; a record that does not exist is
  404 ``NOT_FOUND``; ``fields=`` naming a field the object lacks is 400 ``INVALID_FIELD``;
  an API version other than the ones served is 404.
- ``/query`` takes the SOQL shapes the adapter sends, and nothing else (400
  ``MALFORMED_QUERY``): the line items of one Opportunity; ``SELECT Id FROM Organization``;
  Opportunities by ``SystemModstamp`` between two unquoted UTC dateTime literals
  (``>= … AND < …``, to the second), ``ORDER BY SystemModstamp``. Results come
  ``page_size`` records at a time with ``done`` and ``nextRecordsUrl``, from the records as
  they were when the query ran (a query locator).
- A record read without ``fields=`` shows every field of its object (null where unset).
- Money: ``OpportunityLineItem.UnitPrice`` and ``TotalPrice`` are currency fields, JSON
  numbers (``TotalPrice`` = UnitPrice x Quantity unless seeded otherwise). A single-currency
  org (the default) has no ``CurrencyIsoCode`` anywhere, and its currency is
  ``Organization.DefaultCurrencyIsoCode`` (``SELECT DefaultCurrencyIsoCode FROM
  Organization``); a multi-currency org (``multi_currency``) has ``CurrencyIsoCode`` on
  Opportunity, OpportunityLineItem, Account and User, a line item's being its opportunity's.
- Every Opportunity has a ``SystemModstamp`` (``2026-01-01T09:00:00.000+0000``) that moves
  when it changes (``set_stage``; lever: ``set_modstamp``). The org's id
  (``organization_id``) is its Organization record's ``Id`` and the first part of the
  identity URL (``id``) in every token answer.
- Salesforce sends no 429 and no Retry-After.

Records are dicts keyed by 18-character id, fields by their API names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import random
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import jwt

from fakes.base import FakeVendor, Request, Response, Route, serve_main

_ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


# Salesforce's default Opportunity stages (help.salesforce.com, the standard sales process).
STANDARD_STAGES = (
    "Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Id. Decision Makers",
    "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review", "Closed Won",
    "Closed Lost",
)  # fmt: skip


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
    "Opportunity": {
        "Id",
        "Name",
        "StageName",
        "IsWon",
        "IsClosed",
        "AccountId",
        "OwnerId",
        "SystemModstamp",
    },  # fmt: skip
    "Account": {"Id", "Name"},
    "User": {"Id", "Email", "Name"},
    "OpportunityLineItem": {
        "Id", "Name", "Quantity", "OpportunityId", "Product2Id", "UnitPrice", "TotalPrice",
    },
    "Organization": {"Id", "Name", "DefaultCurrencyIsoCode"},
}  # fmt: skip
CURRENCY_FIELD = "CurrencyIsoCode"
MULTI_CURRENCY_OBJECTS = ("Opportunity", "OpportunityLineItem", "Account", "User")
_LINE_ITEMS = re.compile(
    r"SELECT (?P<columns>[A-Za-z0-9_., ]+) FROM OpportunityLineItem "
    r"WHERE OpportunityId = '(?P<id>[A-Za-z0-9]{15,18})' ORDER BY Id"
)
_ORGANIZATION = "SELECT Id FROM Organization"
_ORG_CURRENCY = "SELECT DefaultCurrencyIsoCode FROM Organization"
_DATETIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-]\d\d:\d\d)"  # no quotes, no fraction
_CHANGED = re.compile(
    r"SELECT (?P<columns>[A-Za-z0-9_., ]+) FROM Opportunity "
    rf"WHERE SystemModstamp >= (?P<since>{_DATETIME}) AND SystemModstamp < (?P<until>{_DATETIME}) "
    r"ORDER BY SystemModstamp"
)


TOKEN_PATH = "/services/oauth2/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DAILY_SPENT = "TotalRequests Limit exceeded."
CONCURRENT = "ConcurrentRequests (Concurrent API Requests) Limit exceeded."


def _error(status: int, code: str, message: str) -> Response:
    return Response(status, [{"message": message, "errorCode": code}])


def _oauth_error(error: str, description: str) -> Response:
    return Response(400, {"error": error, "error_description": description})


@dataclass
class ConnectedApp:
    """A connected app of the org: the flows it allows and the credentials they take."""

    client_id: str
    client_secret: str | None = None
    refresh_tokens: set[str] = field(default_factory=set)
    run_as_user: bool = False  # the client-credentials flow needs one
    jwt_users: set[str] = field(default_factory=set)  # pre-approved for the JWT flow
    public_key: str | None = None  # PEM, of the certificate uploaded for the JWT flow
    # Refresh token rotation: each refresh answers with a new refresh token and
    # invalidates the one it was sent (help.salesforce.com remoteaccess_oauth_refresh_token_flow).
    rotate_refresh_tokens: bool = False


class FakeSalesforce(FakeVendor):
    name = "salesforce"

    def __init__(
        self,
        token: str = "00Dfake!access-token",
        *,
        page_size: int = 2000,
        rate_limit: tuple[int, float] | None = (100, 1.0),
        latency: float = 0.0,
        session_seconds: float | None = None,
        allocation: int = 100_000,
        currency: str = "USD",
        multi_currency: bool = False,
    ):
        super().__init__(rate_limit=rate_limit, latency=latency)
        self.token = token
        self.session_seconds = session_seconds
        self.sessions: dict[str, float] = {token: math.inf}  # access token -> when it ends
        self.apps: dict[str, ConnectedApp] = {}
        self.tokens_issued: list[str] = []  # the grant type of each token issued
        self.api_usage = 0
        self.allocation = allocation
        self._concurrent_refusals = 0
        self.page_size = page_size
        self.fields = {kind: set(names) for kind, names in FIELDS.items()}
        self.records: dict[str, dict[str, dict]] = {kind: {} for kind in FIELDS}
        self.organization_id = self.add("Organization", "00D", Name="Fake Org")
        self.set_currencies(currency, multi_currency=multi_currency)
        self.received: list[Request] = []
        self._cursors: dict[str, list[dict]] = {}
        # Opportunity.StageName's picklist: a new org's standard sales process.
        self.stages = list(STANDARD_STAGES)
        self.hidden: set[str] = set()  # lever: sObjects the user cannot see (404 NOT_FOUND)

    # -- seeding ----------------------------------------------------------------------------
    def add_field(self, sobject: str, name: str) -> None:
        """A custom field (``Delivery_Team__c``) the org defines on ``sobject``."""
        self.fields[sobject].add(name)

    def set_currencies(self, currency: str, *, multi_currency: bool) -> None:
        """The org's corporate currency, and whether it is a multi-currency org (a lever for
        before any record is seeded: Salesforce never turns multi-currency off)."""
        with self.lock:
            self.multi_currency = multi_currency
            for sobject in MULTI_CURRENCY_OBJECTS:
                (self.fields[sobject].add if multi_currency else self.fields[sobject].discard)(
                    CURRENCY_FIELD
                )
            self.records["Organization"][self.organization_id]["DefaultCurrencyIsoCode"] = currency

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
        line_items: list[tuple] = (),
        currency: str | None = None,
        **custom: Any,
    ) -> str:
        """A line item is ``(name, quantity)`` (100 a unit) or ``(name, quantity, money)``,
        ``money`` a dict of ``UnitPrice`` and ``TotalPrice`` (None: no value). ``currency``
        is the opportunity's CurrencyIsoCode, on a multi-currency org only (default: the
        corporate currency); its line items carry the same."""
        if currency is not None and not self.multi_currency:
            raise ValueError("a single-currency org has no CurrencyIsoCode")
        if self.multi_currency:
            org = self.records["Organization"][self.organization_id]
            custom[CURRENCY_FIELD] = currency or org["DefaultCurrencyIsoCode"]
        opportunity = self.add(
            "Opportunity", "006", Name=name, StageName=stage, IsWon=won,
            IsClosed=won if closed is None else closed, AccountId=account, OwnerId=owner,
            SystemModstamp=_modstamp(datetime.now(UTC)), **custom,
        )  # fmt: skip
        same = {CURRENCY_FIELD: custom[CURRENCY_FIELD]} if self.multi_currency else {}
        for item_name, quantity, *money in line_items:
            prices = {"UnitPrice": 100} | (money[0] if money else {})
            if "TotalPrice" not in prices and None not in (prices["UnitPrice"], quantity):
                prices["TotalPrice"] = Decimal(str(prices["UnitPrice"])) * Decimal(str(quantity))
            self.add(
                "OpportunityLineItem", "00k", Name=item_name, Quantity=quantity,
                OpportunityId=opportunity, Product2Id=salesforce_id("01t"),
                **{k: _number(v) for k, v in prices.items()}, **same,
            )  # fmt: skip
        return opportunity

    def add_connected_app(self, client_id: str, client_secret: str | None = None, **flows):
        """``flows``: ``refresh_tokens``, ``run_as_user``, ``jwt_users``, ``public_key``."""
        with self.lock:
            self.apps[client_id] = ConnectedApp(client_id, client_secret, **flows)

    def expire_sessions(self) -> None:
        """Every session ends now (the org's timeout, or an admin revoking them)."""
        with self.lock:
            self.sessions = dict.fromkeys(self.sessions, 0.0)

    def live_sessions(self) -> int:
        """Sessions the token endpoint issued that have not ended (``token`` not counted)."""
        now = time.monotonic()
        with self.lock:
            return sum(1 for t, ends in self.sessions.items() if ends > now and t != self.token)

    def spend_daily_total(self) -> None:
        with self.lock:
            self.api_usage = self.allocation

    def refuse_concurrent(self, count: int) -> None:
        """The next ``count`` REST calls meet the concurrent long-running request limit."""
        with self.lock:
            self._concurrent_refusals += count

    def set_stage(self, opportunity: str, stage: str, *, won: bool, closed: bool) -> None:
        with self.lock:
            self.records["Opportunity"][opportunity].update(
                StageName=stage, IsWon=won, IsClosed=closed,
                SystemModstamp=_modstamp(datetime.now(UTC)),
            )  # fmt: skip

    def set_modstamp(self, opportunity: str, when: datetime) -> None:
        """The Opportunity last changed at ``when`` (kept to the millisecond, as Salesforce)."""
        with self.lock:
            self.records["Opportunity"][opportunity]["SystemModstamp"] = _modstamp(when)

    def hide(self, sobject: str) -> None:
        """The integration user's profile lacks Read on ``sobject``: it is not visible, so its
        describe and records answer 404 NOT_FOUND."""
        with self.lock:
            self.hidden.add(sobject)

    # -- the API ----------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        base = rf"/services/data/{re.escape(VERSION)}"
        return [
            ("GET", re.compile(rf"{base}/sobjects/(\w+)/describe/?"), self._describe),
            ("GET", re.compile(rf"{base}/sobjects/(\w+)/([^/]+)"), self._sobject),
            ("GET", re.compile(rf"{base}/query"), self._query),
            ("GET", re.compile(rf"{base}/query/([0-9a-f]+)-(\d+)"), self._more),
            ("POST", re.compile(re.escape(TOKEN_PATH)), self._token),
        ]

    def handle(self, request: Request) -> Response:
        response = super().handle(request)
        if request.path.startswith("/services/data/"):
            with self.lock:
                usage = f"api-usage={self.api_usage}/{self.allocation}"
            response.headers = {**response.headers, "Sforce-Limit-Info": usage}
        return response

    def authenticate(self, request: Request) -> Response | None:
        """The session, then the org's limits; the token endpoint needs neither."""
        if request.path == TOKEN_PATH:
            return None
        with self.lock:
            self.received.append(request)
            scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
            if scheme != "Bearer" or self.sessions.get(token, 0.0) <= time.monotonic():
                return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
            if self.api_usage >= self.allocation:
                return _error(403, "REQUEST_LIMIT_EXCEEDED", DAILY_SPENT)
            self.api_usage += 1
            if self._concurrent_refusals:
                self._concurrent_refusals -= 1
                self.throttled += 1
                return _error(403, "REQUEST_LIMIT_EXCEEDED", CONCURRENT)
        return None

    def throttle_response(self, retry_after: int) -> Response:
        return _error(403, "REQUEST_LIMIT_EXCEEDED", CONCURRENT)

    # -- OAuth ------------------------------------------------------------------------------
    def _token(self, request: Request) -> Response:
        form = {name: values[0] for name, values in request.form.items()}
        grant = form.get("grant_type")
        if grant == JWT_BEARER:
            return self._jwt_bearer(form.get("assertion") or "")
        app = self.apps.get(form.get("client_id") or "")
        if grant not in ("refresh_token", "client_credentials"):
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        if app is None:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if app.client_secret is None or not hmac.compare_digest(
            app.client_secret, form.get("client_secret") or ""
        ):
            return _oauth_error("invalid_client", "invalid client credentials")
        if grant == "refresh_token" and form.get("refresh_token") not in app.refresh_tokens:
            return _oauth_error("invalid_grant", "expired access/refresh token")
        if grant == "client_credentials" and not app.run_as_user:
            return _oauth_error("invalid_grant", "no client credentials user enabled")
        response = self._issue(grant, app)
        if grant == "refresh_token" and app.rotate_refresh_tokens:
            app.refresh_tokens.discard(form["refresh_token"])
            rotated = "5Aep" + secrets.token_urlsafe(40)
            app.refresh_tokens.add(rotated)
            response.body["refresh_token"] = rotated
        return response

    def _jwt_bearer(self, assertion: str) -> Response:
        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
        except jwt.InvalidTokenError:
            return _oauth_error("invalid_grant", "invalid assertion")
        app = self.apps.get(str(issuer))
        if app is None or app.public_key is None:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        try:
            claims = jwt.decode(
                assertion, app.public_key, algorithms=["RS256"], audience=self.origin,
                issuer=app.client_id, options={"require": ["iss", "sub", "aud", "exp"]},
            )  # fmt: skip
        except jwt.InvalidAudienceError:
            return _oauth_error("invalid_grant", "audience is invalid")
        except jwt.ExpiredSignatureError:
            return _oauth_error("invalid_grant", "expired authorization code")
        except jwt.InvalidTokenError:
            return _oauth_error("invalid_grant", "invalid assertion")
        if claims["sub"] not in app.jwt_users:
            return _oauth_error("invalid_grant", "user hasn't approved this consumer")
        return self._issue(JWT_BEARER, app)

    def _issue(self, grant: str, app: ConnectedApp) -> Response:
        token = f"00D{secrets.token_hex(6)}!{secrets.token_urlsafe(32)}"
        life = math.inf if self.session_seconds is None else self.session_seconds
        self.sessions[token] = time.monotonic() + life
        self.tokens_issued.append(grant)
        identity = f"{self.origin}/id/{self.organization_id}/{salesforce_id('005')}"
        body = {
            "access_token": token,
            "instance_url": self.origin,
            "id": identity,
            "token_type": "Bearer",
            "scope": "api",
        }
        if app.client_secret and grant != JWT_BEARER:
            issued_at = str(int(time.time() * 1000))
            digest = hmac.new(
                app.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
            ).digest()
            body |= {"issued_at": issued_at, "signature": base64.b64encode(digest).decode()}
        return Response(200, body)

    def not_found(self) -> Response:
        return _error(404, "NOT_FOUND", "The requested resource does not exist")

    def _shown(self, sobject: str, record: dict, fields: list[str]) -> dict:
        url = f"/services/data/{VERSION}/sobjects/{sobject}/{record['Id']}"
        shown: dict[str, Any] = {"attributes": {"type": sobject, "url": url}}
        for name in fields:
            head, _, rest = name.partition(".")
            shown[head] = record.get(head) if not rest else {rest: None}
        return shown

    def _describe(self, request: Request, sobject: str) -> Response:
        """``GET /sobjects/{name}/describe``: the object's fields; a picklist's values."""
        if sobject not in self.fields or sobject in self.hidden:
            return _error(404, "NOT_FOUND", f"The requested resource does not exist: {sobject}")
        fields = []
        for name in sorted(self.fields[sobject]):
            field: dict[str, Any] = {"name": name, "type": "string", "picklistValues": []}
            if (sobject, name) == ("Opportunity", "StageName"):
                field["type"] = "picklist"
                field["picklistValues"] = [
                    {"value": v, "label": v, "active": True, "defaultValue": False}
                    for v in self.stages
                ]
            fields.append(field)
        return Response(200, {"name": sobject, "queryable": True, "fields": fields})

    def _sobject(self, request: Request, sobject: str, record_id: str) -> Response:
        if sobject not in self.fields or sobject in self.hidden:
            return _error(404, "NOT_FOUND", f"The requested resource does not exist: {sobject}")
        record = self.records[sobject].get(record_id)
        if record is None:
            return self.not_found()
        fields = [f for f in (request.arg("fields") or "").split(",") if f] or sorted(
            self.fields[sobject] | set(record)
        )
        unknown = [f for f in fields if f not in self.fields[sobject]]
        if unknown:
            return _error(
                400, "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type {sobject}"
            )
        return Response(200, self._shown(sobject, record, fields))

    def _query(self, request: Request) -> Response:
        soql = request.arg("q") or ""
        if soql in (_ORGANIZATION, _ORG_CURRENCY):
            rows = list(self.records["Organization"].values())
            return self._results("Organization", rows, [soql.split()[1]])
        if found := _LINE_ITEMS.fullmatch(soql):
            rows = sorted(
                (r for r in self.records["OpportunityLineItem"].values()
                 if r["OpportunityId"] == found["id"]),
                key=lambda r: r["Id"],
            )  # fmt: skip
            return self._results("OpportunityLineItem", rows, _columns(found))
        if found := _CHANGED.fullmatch(soql):
            since, until = (datetime.fromisoformat(found[b]) for b in ("since", "until"))
            rows = sorted(
                (r for r in self.records["Opportunity"].values()
                 if since <= datetime.fromisoformat(r["SystemModstamp"]) < until),
                key=lambda r: (datetime.fromisoformat(r["SystemModstamp"]), r["Id"]),
            )  # fmt: skip
            return self._results("Opportunity", rows, _columns(found))
        return _error(400, "MALFORMED_QUERY", "unexpected token: the fake reads three queries")

    def _results(self, sobject: str, rows: list[dict], columns: list[str]) -> Response:
        unknown = [c for c in columns if c not in self.fields[sobject]]
        if unknown:
            return _error(
                400, "INVALID_FIELD", f"No such column '{unknown[0]}' on entity '{sobject}'."
            )
        records = [self._shown(sobject, r, columns) for r in rows]
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


def _number(value: Any) -> int | float | None:
    """A currency field as Salesforce's JSON sends it: a number (None: no value)."""
    if value is None:
        return None
    exact = Decimal(str(value))
    return int(exact) if exact == exact.to_integral_value() else float(exact)


def _columns(found: re.Match[str]) -> list[str]:
    return [c.strip() for c in found["columns"].split(",")]


def _modstamp(when: datetime) -> str:
    """Salesforce's REST form of a dateTime: UTC, milliseconds, ``+0000``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{when.microsecond // 1000:03d}+0000"
    )


if __name__ == "__main__":
    serve_main(lambda args: FakeSalesforce(latency=args.latency), "A fake Salesforce REST API")
