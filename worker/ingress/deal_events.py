"""One ``crm.deal_changed`` CloudEvent per CRM notification, ready to publish.

Its ``(source, id)`` comes only from the CRM's identity of the notification (contract), so
a CRM's retry of it, whatever else differs (attempt number, signature, arrival time),
publishes the same pair and the worker gives it no second effect.

This is also the one place where every CRM route's input is held to what the worker will
take: the deal id in each CRM's own form (it becomes a path segment of the worker's read),
a time that converts to UTC, text that encodes and stores (no lone surrogate, no NUL), and
finally the worker's own parser over the finished event. What fails any of these is a 400
now, since the CRM would otherwise retry, or the worker dead-letter, input that can never
be taken."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import pika
from pydantic import ValidationError

from schemas.crm import CRM_DEAL_CHANGED, Crm, CrmDealChanged, rfc3339
from schemas.envelope import CONTENT_TYPE, MAX_BODY_BYTES
from schemas.errors import Unreadable
from schemas.inbound import parse_inbound
from worker.ingress.refusals import Malformed

# Each CRM's form of a deal id. HubSpot and Pipedrive number their deals; Salesforce ids
# are 15 case-sensitive alphanumerics, or 18 with the case suffix (``salesforce_ids``).
_DIGITS = re.compile(r"[0-9]{1,20}")
DEAL_ID_FORMS: dict[str, tuple[re.Pattern[str], str]] = {
    "hubspot": (_DIGITS, "digits"),
    "pipedrive": (_DIGITS, "digits"),
    "salesforce": (
        re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?"),
        "15 or 18 letters and digits",
    ),
}


@dataclass(frozen=True)
class Outgoing:
    """One message for ``NS.inbound``: routing key, body, AMQP properties."""

    event_id: str
    routing_key: str
    body: bytes
    properties: pika.BasicProperties


def properties_for(event_id: str, event_type: str) -> pika.BasicProperties:
    """The contract's envelope properties (structured mode, persistent)."""
    return pika.BasicProperties(
        content_type=CONTENT_TYPE, message_id=event_id, type=event_type, delivery_mode=2
    )


def deal_changed(
    *,
    crm: Crm,
    account: str,
    event_id: str,
    deal_id: str,
    occurred_at: datetime,
    change: dict,
) -> Outgoing:
    """The event for one notification; ``Malformed`` with a one-line reason if the worker
    could not take it."""
    form, described = DEAL_ID_FORMS[crm]
    if not isinstance(deal_id, str) or not form.fullmatch(deal_id):
        raise Malformed(f"{crm}: deal id {_shown(deal_id)} is not {described}")
    try:
        occurred_at.astimezone(UTC)
    except (OverflowError, ValueError):
        # Year 1 with a positive offset, or 9999 with a negative one, has no UTC time.
        raise Malformed(f"{crm}: time {occurred_at.isoformat()} has no UTC equivalent") from None
    try:
        data = CrmDealChanged(
            crm=crm, account=account, deal_id=deal_id, occurred_at=occurred_at, change=change
        )
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise Malformed(f"{crm}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": f"crm/{crm}/{account}",
        "type": CRM_DEAL_CHANGED,
        "time": rfc3339(occurred_at),
        "subject": deal_id,
        "datacontenttype": "application/json",
        "data": data.model_dump(mode="json"),
    }
    try:
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        # JSON's \ud800 escape decodes to a lone surrogate, which no UTF-8 encoder takes.
        raise Malformed(f"{crm}: deal {deal_id}: the text holds a lone surrogate") from None
    if len(body) > MAX_BODY_BYTES:
        # The worker would dead-letter it unread; the CRM should hear no now, not never.
        raise Malformed(f"{crm}: deal {deal_id}: event of {len(body)} bytes, over 256 KiB")
    try:
        parse_inbound(body)  # the worker's own reading: NUL in text, times out of range
    except Unreadable as exc:
        raise Malformed(f"{crm}: deal {deal_id}: {exc.code}: {exc.message}") from None
    return Outgoing(event_id, CRM_DEAL_CHANGED, body, properties_for(event_id, CRM_DEAL_CHANGED))


def _shown(value: object) -> str:
    # Only a short, printable piece of what the sender wrote goes back to it (refusals.py).
    return ascii(value)[:40]
