"""``/webhooks/events``: Standard Webhooks signatures around one inbound CloudEvent.

Signed content is ``{webhook-id}.{webhook-timestamp}.{raw body}``, HMAC-SHA256 with the key
inside the ``whsec_`` secret, base64. ``webhook-signature`` is a space-separated list of
``version,signature`` pairs so a sender can rotate keys: one matching ``v1`` entry is
enough, other versions are ignored (spec; the reference library does the same). The
timestamp is Unix seconds, refused beyond 5 minutes either way.

The event is then read by the worker's own parser (``schemas.inbound.parse_inbound``):
what the worker would dead-letter is refused here with its reason, and what it would
accept is published as it came, routing key = its type. ``crm.deal_changed`` is refused:
only the CRM routes make it, from a notification whose sender they verified.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from schemas.errors import Unreadable
from schemas.inbound import parse_inbound
from worker.ingress.deal_events import Outgoing, properties_for
from worker.ingress.refusals import Malformed, Unauthorized

WINDOW_SECONDS = 5 * 60
MAX_ID_CHARS = 256


def signature(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(headers: Mapping[str, str], body: bytes, *, key: bytes, now: float) -> None:
    webhook_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    given = headers.get("webhook-signature", "")
    if not webhook_id or len(webhook_id) > MAX_ID_CHARS or not given:
        raise Unauthorized("webhook-id and webhook-signature are required")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise Unauthorized("webhook-timestamp missing or not Unix seconds")
    if abs(now - int(timestamp)) > WINDOW_SECONDS:
        raise Unauthorized("webhook-timestamp outside the 5-minute window")
    expected = signature(key, webhook_id, timestamp, body).encode()
    for entry in given.split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(errors="replace"), expected):
            return
    raise Unauthorized("no webhook-signature entry matches")


# Made only by the CRM routes, from a verified notification: the (source, id) of one sent
# here first would make the CRM's genuine notification look like a duplicate.
CRM_ONLY = frozenset({"crm.deal_changed"})


def translate(body: bytes) -> Outgoing:
    try:
        event = parse_inbound(body).envelope
    except Unreadable as exc:
        raise Malformed(f"{exc.code}: {exc.message}") from None
    if event.type in CRM_ONLY:
        raise Malformed(f"{event.type} comes only from the CRM routes (/webhooks/<crm>)")
    return Outgoing(event.id, event.type, body, properties_for(event.id, event.type))
