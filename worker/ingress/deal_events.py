"""One ``crm.deal_changed`` CloudEvent per CRM notification, ready to publish.

Its ``(source, id)`` comes only from the CRM's identity of the notification (contract), so
a CRM's retry of it, whatever else differs (attempt number, signature, arrival time),
publishes the same pair and the worker gives it no second effect."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import pika
from pydantic import ValidationError

from schemas.crm import CRM_DEAL_CHANGED, Crm, CrmDealChanged, rfc3339
from schemas.envelope import CONTENT_TYPE, MAX_BODY_BYTES
from worker.ingress.refusals import Malformed


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
    body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_BODY_BYTES:
        # The worker would dead-letter it unread; the CRM should hear no now, not never.
        raise Malformed(f"{crm}: deal {deal_id}: event of {len(body)} bytes, over 256 KiB")
    return Outgoing(event_id, CRM_DEAL_CHANGED, body, properties_for(event_id, CRM_DEAL_CHANGED))
