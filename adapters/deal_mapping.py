"""From the pieces of a CRM deal to the contract's project snapshot, the same way for every
CRM: client = the company / organization / account, one offering per line item, the team
on every offering (the owner's e-mail plus those in the rules' ``team_emails`` property),
the line item's total as the offering's ``price`` and its unit price as its ``hourly_rate``
(the quantity is hours), in the line item's currency, else the deal's, else the CRM
account's; the project's ``url`` is the deal in its CRM. The adapters only fetch the pieces.

Money never passes through a float: a CRM's JSON number reaches here as a ``Decimal`` read
from its own text (``read_json(exact_numbers=True)``), a string as the CRM wrote it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from handlers.ports import DealSnapshot, StageFacts
from schemas.crm import crm_client_id, crm_project_id
from schemas.inbound import MAX_HOURS, Money, Project

_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+$")
_NOT_SOLD = frozenset({"false", "no", "0", "off", "n"})
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class LineItem:
    id: str
    name: Any
    hours: Any
    sold: Any = None
    kind: Any = None
    price: Any = None  # the line item's total
    unit_price: Any = None  # a unit's price: an hour's, as the quantity is hours
    currency: Any = None  # the line item's own ISO 4217 code, where the CRM has one


def hours(value: Any) -> float | None:
    """A quantity or hours property as hours; what is no number of hours is no budget."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if 0 <= number <= MAX_HOURS else None


def sold(value: Any) -> bool:
    """Absent or empty means sold (the contract's default); false/no/0 means not."""
    if value is None or isinstance(value, bool):
        return value is not False
    return str(value).strip().casefold() not in _NOT_SOLD


def amount(value: Any) -> str | None:
    """A price as the contract's decimal string, to the cent at least and never rounded:
    ``12000`` -> ``"12000.00"``, ``"0.1"`` -> ``"0.10"``, ``"0.125"`` stays. A ``Decimal``
    (a JSON number read exactly), an int or a string; a float is refused, as it may already
    have lost the CRM's digits. Anything else, a negative, or what the contract cannot carry
    without rounding (over 13 digits before the point or 6 after) is no price."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        return None
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value).normalize()
        if not number.is_finite() or number < 0:
            return None
        if number.as_tuple().exponent > -2:
            number = number.quantize(_CENT)
    except (InvalidOperation, ValueError):
        return None
    text = f"{number:f}"
    try:
        return Money(amount=text, currency="XXX").amount
    except ValidationError:
        return None


def currency(value: Any) -> str | None:
    """An ISO 4217 code as the contract wants it (three capitals); anything else is none."""
    code = value.strip().upper() if isinstance(value, str) else ""
    return code if _CURRENCY.match(code) else None


def emails(value: Any) -> list[str]:
    """E-mails in a property: separated by commas, semicolons or white space."""
    if not isinstance(value, str):
        return []
    return [e.lower() for e in re.split(r"[,;\s]+", value) if _EMAIL.match(e)]


def snapshot(
    crm: str,
    deal_id: str,
    *,
    name: Any,
    client: tuple[str, Any] | None,
    items: list[LineItem],
    team: list[str],
    stage: StageFacts,
    url: str | None = None,
    deal_currency: Any = None,
    account_currency: Callable[[], Any] = lambda: None,
) -> DealSnapshot:
    """``account_currency`` is called only when a priced line item and its deal name no
    currency (it may cost the CRM a call)."""
    read_at = datetime.now(UTC)
    if client is None:
        return DealSnapshot(crm, deal_id, None, stage, read_at, problem="it has no client")
    client_id, client_name = client
    members = [{"email": e} for e in dict.fromkeys(team)]
    fallback = _Fallback(deal_currency, account_currency)
    raw = {
        "id": crm_project_id(crm, deal_id),
        "name": _text(name) or f"Deal {deal_id}",
        "client": {
            "id": crm_client_id(crm, client_id),
            "name": _text(client_name) or f"Client {client_id}",
        },
        "offerings": [
            {
                "id": item.id,
                "name": _text(item.name) or f"Line item {item.id}",
                "sold": sold(item.sold),
                "budget_hours": hours(item.hours),
                "kind": _text(item.kind) or None,
                "team": members,
                **_money(item, fallback),
            }
            for item in items
        ],
        "url": url,
    }
    try:
        project = Project.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(map(str, err["loc"]))
        problem = f"{where}: {err['msg']}"
        return DealSnapshot(crm, deal_id, None, stage, read_at, problem=problem)
    return DealSnapshot(crm, deal_id, project, stage, read_at)


class _Fallback:
    """The currency of a line item that names none: the deal's, else the account's (asked
    once, and only if needed)."""

    def __init__(self, deal_currency: Any, account_currency: Callable[[], Any]):
        self._deal = currency(deal_currency)
        self._account = account_currency
        self._asked = False
        self._found: str | None = None

    def __call__(self) -> str | None:
        if self._deal:
            return self._deal
        if not self._asked:
            self._asked, self._found = True, currency(self._account())
        return self._found


def _money(item: LineItem, fallback: _Fallback) -> dict[str, Any]:
    """The offering's ``price`` and ``hourly_rate``; a price with no currency anywhere is
    no price (an amount alone would be read in whatever currency a tool assumes)."""
    price, rate = amount(item.price), amount(item.unit_price)
    if price is None and rate is None:
        return {}
    code = currency(item.currency) or fallback()
    if code is None:
        return {}
    money = {"price": price, "hourly_rate": rate}
    return {k: {"amount": v, "currency": code} for k, v in money.items() if v is not None}


def _text(value: Any) -> str:
    return " ".join(str(value).split())[:500] if value is not None else ""
