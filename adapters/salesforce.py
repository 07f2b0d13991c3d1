"""Salesforce REST API as a ``CrmReader`` (an OAuth access token and the org's instance URL).

One deal read is, in calls (API version ``API``):
- ``GET /services/data/vXX.X/sobjects/Opportunity/{id}``, the whole record: ``Name``,
  ``StageName``, ``IsWon``, ``IsClosed``, ``AccountId``, ``OwnerId``, the rules' team field
  and, on a multi-currency org only, ``CurrencyIsoCode`` (a single-currency org has no such
  field, and naming it in ``fields=`` would be a 400 ``INVALID_FIELD``; whether the record
  carries it is how the reader tells the two apart); 404 ``NOT_FOUND`` means deleted;
- ``GET …/sobjects/Account/{AccountId}`` (the client) and ``…/sobjects/User/{OwnerId}``
  (the owner's ``Email``), each with ``fields=`` so only those are read;
- ``GET …/query?q=SELECT … FROM OpportunityLineItem WHERE OpportunityId = '…'`` (SOQL),
  following ``nextRecordsUrl`` until ``done``: the offerings, with ``TotalPrice`` and
  ``UnitPrice`` (currency fields: JSON numbers, read as ``Decimal`` from their own text) and,
  on a multi-currency org, ``CurrencyIsoCode``;
- a single-currency org's currency, once per adapter and only for a priced deal:
  ``SELECT DefaultCurrencyIsoCode FROM Organization``.
The deal's address is ``{instance_url}/lightning/r/Opportunity/{id}/view``.

Salesforce errors are a JSON array of ``{"errorCode", "message"}``. A session that is over
is 401 ``INVALID_SESSION_ID``: the session (``adapters.salesforce_session``) gets a new token
and the call is made once more. Running out of API calls is ``403 REQUEST_LIMIT_EXCEEDED``,
not a 429, for two limits that recover very differently (developer.salesforce.com, "API
Request Limits and Allocations"):

- the org's total of API requests, counted over a rolling 24 hours (``TotalRequests Limit
  exceeded``, or ``Sforce-Limit-Info: api-usage=N/M`` with N >= M): nothing frees in seconds
  and no reset time is given, so it is a ``VendorUnavailable`` with ``retry_after`` of an
  hour (``DAILY_WAIT``), not re-sent here: the delayed message retry tries again as calls of
  a day ago age out of the window, a few times a day rather than in a burst;
- the concurrent limit on requests running 20 s or longer (``ConcurrentRequests``,
  ``ConcurrentPerOrgLongTxn``): such a request frees its slot within seconds, so a short wait
  (``CONCURRENT_WAIT``) and the call is re-sent.

As a ``CrmSweep`` (``provisioner crm reconcile``):
- ``account_id``: the org's 18-character id, as Outbound Messages name it
  (``OrganizationId``): from the token answer's identity URL under an OAuth flow
  (``SalesforceSession.organization_id``), else ``SELECT Id FROM Organization``; read once;
- ``changed_deals``: ``SELECT Id, StageName, IsWon, IsClosed, SystemModstamp FROM Opportunity
  WHERE SystemModstamp >= <since> AND SystemModstamp < <until> ORDER BY SystemModstamp``,
  following ``nextRecordsUrl`` until ``done``. SOQL's dateTime literals are unquoted, UTC,
  to the second (``2026-01-01T00:00:00Z``; developer.salesforce.com, "Date Formats and Date
  Literals in WHERE"), so the bounds are the whole seconds around the window and each record
  is checked against the exact window here. ``SystemModstamp`` moves on every change,
  including those the system makes (a workflow, a roll-up); ``query`` leaves out deleted
  records, which cannot become projects anyway.

Every answer's ``Sforce-Limit-Info`` (the daily use and allocation) is told to a
``LimitObserver`` (the worker's is a Prometheus gauge, ``worker.metrics``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

import requests
import tenacity

from adapters.deal_mapping import LineItem, emails, snapshot
from adapters.http import DEFAULT_TIMEOUT, UNOBSERVED, HttpObserver, VendorHttp, segment
from adapters.pacing import Pacer
from adapters.salesforce_session import SalesforceSession
from handlers.ports import CrmFields, DealChange, DealSnapshot, StageFacts
from schemas.crm import whole_second
from schemas.errors import CrmRecordNotFound, Unreadable, VendorRejected, VendorUnavailable
from schemas.json_body import read_json

API = "v60.0"
NOT_FOUND = frozenset({404})
_ID = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?$")
_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
_ORGANIZATION = re.compile(r"^00D[A-Za-z0-9]{15}$")
MULTI_CURRENCY = "CurrencyIsoCode"  # on every record of a multi-currency org, and only there
DAILY_WAIT = 3600.0  # seconds: see the docstring
CONCURRENT_WAIT = 5.0  # seconds: a long-running request (20 s or more) is ending meanwhile


class LimitObserver(Protocol):
    """Told the org's daily API use from each answer; must be cheap and never raise."""

    def api_usage(self, used: int, allocation: int) -> None: ...


class _Unwatched:
    def api_usage(self, used: int, allocation: int) -> None:
        pass


UNWATCHED = _Unwatched()


def api_usage(response: requests.Response) -> tuple[int, int] | None:
    """``Sforce-Limit-Info: api-usage=18/5000`` (maybe with ``; per-app-api-usage=…``)."""
    found = _USAGE.search(response.headers.get("Sforce-Limit-Info") or "")
    return (int(found[1]), int(found[2])) if found else None


def _errors(response: requests.Response) -> list[dict]:
    try:
        body = read_json(response.content)
    except Unreadable:
        return []
    return [e for e in body if isinstance(e, dict)] if isinstance(body, list) else []


def error_text(response: requests.Response) -> str:
    found = _errors(response)
    if not found:
        return response.text.strip()[:300]
    return "; ".join(f"{e.get('errorCode')}: {e.get('message')}" for e in found)[:300]


def is_throttle(response: requests.Response) -> bool:
    if response.status_code == 429:
        return True
    return response.status_code == 403 and any(
        e.get("errorCode") == "REQUEST_LIMIT_EXCEEDED" for e in _errors(response)
    )


def limit_wait(response: requests.Response) -> str:
    """The wait of a refusal for rate, in seconds (read as a Retry-After): long for the
    daily total, short for the concurrent limit (see the docstring)."""
    usage = api_usage(response)
    daily = (usage is not None and usage[0] >= usage[1]) or any(
        "TotalRequests" in str(e.get("message")) for e in _errors(response)
    )
    return f"{DAILY_WAIT if daily else CONCURRENT_WAIT:g}"


class SalesforceCrm:
    name = "salesforce"

    def __init__(
        self,
        session: SalesforceSession,
        *,
        fields: CrmFields,
        retrying: tenacity.Retrying,
        pacer: Pacer | None = None,
        observer: HttpObserver = UNOBSERVED,
        limits: LimitObserver = UNWATCHED,
        read_timeout: float = 30.0,
    ):
        self.session = session
        self.fields = fields
        self._http_options = dict(
            retrying=retrying,
            pacer=pacer,
            observer=observer,
            timeout=(DEFAULT_TIMEOUT[0], read_timeout),
            error_text=error_text,
            is_throttle=is_throttle,
            retry_hint=limit_wait,
            credential=session,
        )
        self.limits = limits
        self._http: VendorHttp | None = None
        self._http_lock = threading.Lock()
        self._organization: str | None = None
        self._organization_lock = threading.Lock()
        self._org_currency: str | None = None
        named = (fields.offering_name, fields.budget_hours, fields.sold, fields.kind,
                 fields.price, fields.unit_price, fields.currency)  # fmt: skip
        for name in named:
            if name and not _FIELD.match(name):  # it goes into SOQL: a name, nothing else
                raise ValueError(f"not a Salesforce field name: {name!r}")

    @property
    def http(self) -> VendorHttp:
        """Built at the first read: the instance URL may come with the first token."""
        with self._http_lock:
            if self._http is None:
                origin = self.session.instance_url()
                self._http = VendorHttp(
                    "salesforce",
                    f"{origin}/services/data/{API}",
                    headers={},
                    session=self._watched_session(),
                    **self._http_options,
                )
                self.origin = origin
            return self._http

    def _watched_session(self) -> requests.Session:
        """A session whose every answer (retries and refusals too) reports the daily use."""
        session = requests.Session()

        def report(response: requests.Response, *args: Any, **kwargs: Any) -> None:
            if usage := api_usage(response):
                self.limits.api_usage(*usage)

        session.hooks["response"].append(report)
        return session

    def account_id(self) -> str:
        with self._organization_lock:
            if self._organization is None:
                self._organization = self.session.organization_id() or self._queried_org()
            return self._organization

    def _queried_org(self) -> str:
        """A static token comes with no identity URL: the org's one Organization record."""
        found = [r.get("Id") for r in self._query("SELECT Id FROM Organization")]
        if len(found) != 1 or not _ORGANIZATION.match(str(found[0])):
            raise VendorUnavailable("salesforce SELECT Id FROM Organization: no 18-character Id")
        return found[0]

    def changed_deals(self, since: datetime, until: datetime) -> Iterator[DealChange]:
        if since.tzinfo is None or until.tzinfo is None:
            raise ValueError("changed_deals takes aware datetimes (UTC)")
        soql = (
            "SELECT Id, StageName, IsWon, IsClosed, SystemModstamp FROM Opportunity "
            f"WHERE SystemModstamp >= {whole_second(since, up=False)} "
            f"AND SystemModstamp < {whole_second(until, up=True)} ORDER BY SystemModstamp"
        )
        given: set[str] = set()
        for record in self._query(soql):
            change = _change(record)
            if since <= change.modified_at < until and change.deal_id not in given:
                given.add(change.deal_id)
                yield change

    def read_deal(self, deal_id: str) -> DealSnapshot:
        if not _ID.match(deal_id):
            raise VendorRejected(f"salesforce: {deal_id[:40]!r} is not an Opportunity id")
        opportunity = self._record("Opportunity", deal_id, None)
        if opportunity is None:
            raise CrmRecordNotFound(
                f"salesforce Opportunity {deal_id} does not exist (deleted since its "
                "Outbound Message was sent?)"
            )
        team_field = self.fields.team_emails
        if team_field and "." not in team_field and team_field not in opportunity:
            raise VendorRejected(
                f"salesforce: Opportunity has no field {team_field} (the rules' "
                "[crm.salesforce.fields] team_emails)"
            )
        multi_currency = MULTI_CURRENCY in opportunity
        account_id = opportunity.get("AccountId")
        account = self._record("Account", account_id, ["Name"]) if account_id else None
        owner_id = opportunity.get("OwnerId")
        owner = self._record("User", owner_id, ["Email"]) if owner_id else None
        team = emails((owner or {}).get("Email"))
        if self.fields.team_emails:
            team += emails(opportunity.get(self.fields.team_emails))
        return snapshot(
            "salesforce",
            deal_id,
            name=opportunity.get("Name"),
            client=(account_id, account.get("Name")) if account else None,
            items=self._line_items(deal_id, multi_currency),
            team=team,
            stage=_stage(opportunity),
            url=f"{self.origin}/lightning/r/Opportunity/{segment(deal_id)}/view",
            deal_currency=opportunity.get(MULTI_CURRENCY),
            account_currency=self._org_default_currency,
        )

    def _record(self, sobject: str, record_id: str, fields: list[str] | None) -> dict | None:
        """A record by id: the ``fields`` named, or every field (None)."""
        answer = self.http.request(
            "GET",
            f"/sobjects/{sobject}/{segment(record_id)}",
            params={"fields": ",".join(fields)} if fields is not None else None,
            ok_statuses=NOT_FOUND,
        )
        return None if answer.status_code == 404 else answer.json(exact_numbers=True)

    def _org_default_currency(self) -> str | None:
        """A single-currency org's one currency (records there carry none), read once."""
        if self._org_currency is None:
            found = list(self._query("SELECT DefaultCurrencyIsoCode FROM Organization"))
            self._org_currency = found[0].get("DefaultCurrencyIsoCode") if found else None
        return self._org_currency

    def _line_items(self, deal_id: str, multi_currency: bool) -> list[LineItem]:
        f = self.fields
        # CurrencyIsoCode exists on a multi-currency org only; a custom field always may.
        currency = f.currency if multi_currency or f.currency != MULTI_CURRENCY else None
        named = (f.offering_name, f.budget_hours, f.sold, f.kind, f.price, f.unit_price, currency)
        columns = ["Id", *dict.fromkeys(p for p in named if p)]
        soql = (
            f"SELECT {', '.join(columns)} FROM OpportunityLineItem "
            f"WHERE OpportunityId = '{deal_id}' ORDER BY Id"  # deal_id is checked: an id
        )
        return [
            LineItem(
                id=str(r["Id"]),
                name=_path(r, f.offering_name),
                hours=_path(r, f.budget_hours),
                sold=_path(r, f.sold) if f.sold else None,
                kind=_path(r, f.kind) if f.kind else None,
                price=_path(r, f.price) if f.price else None,
                unit_price=_path(r, f.unit_price) if f.unit_price else None,
                currency=_path(r, currency) if currency else None,
            )
            for r in self._query(soql)
        ]

    def _query(self, soql: str) -> Iterator[dict]:
        """Every record of a SOQL query, page after page (``nextRecordsUrl`` until ``done``)."""
        body = self.http.request("GET", "/query", params={"q": soql}).json(exact_numbers=True)
        yield from body.get("records") or []
        while not body.get("done", True) and body.get("nextRecordsUrl"):
            url = f"{self.origin}{body['nextRecordsUrl']}"
            body = self.http.request("GET", url).json(exact_numbers=True)
            yield from body.get("records") or []


def _stage(opportunity: dict) -> StageFacts:
    stage = opportunity.get("StageName")
    return StageFacts(
        stage,
        won=opportunity.get("IsWon") is True,
        lost=opportunity.get("IsClosed") is True and opportunity.get("IsWon") is not True,
        label=stage,
    )


def _change(record: Any) -> DealChange:
    """A listed Opportunity. A record we cannot place in time fails the listing: skipping it
    could be the one won deal the sweep is for."""
    try:
        deal_id = record["Id"]
        # REST gives 2026-01-01T09:00:00.000+0000: UTC, to the millisecond.
        modified = datetime.fromisoformat(record["SystemModstamp"])
    except (TypeError, KeyError, ValueError):
        raise VendorUnavailable(
            "salesforce Opportunity query: a record without an Id or a SystemModstamp"
        ) from None
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=UTC)
    return DealChange(str(deal_id), modified.astimezone(UTC), _stage(record))


def _path(record: dict, name: str) -> Any:
    """``Product2.Name`` reads the related record SOQL nests under ``Product2``."""
    value: Any = record
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
