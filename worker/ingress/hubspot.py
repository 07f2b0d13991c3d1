"""HubSpot Webhooks API: signatures v3 (and v1/v2 when allowed) and the event array.

Signatures (HubSpot, "Validating requests"; reference §1.2), all keyed by the app's client
secret and compared in constant time:

    v3  X-HubSpot-Signature-v3 = base64(HMAC-SHA256(secret, METHOD + URI + body + timestamp))
        X-HubSpot-Request-Timestamp in ms, refused beyond 5 minutes either way. URI is the
        public URL HubSpot called, with the percent-escapes HubSpot lists decoded.
    v2  X-HubSpot-Signature = hex(SHA-256(secret + METHOD + URI + body))   no timestamp
    v1  X-HubSpot-Signature = hex(SHA-256(secret + body))                  no timestamp

v1 and v2 can be replayed forever, so they count only with HUBSPOT_LEGACY_SIGNATURES=true;
a request that carries v3 is judged by v3 alone.

Events: the body is always an array. Deal events (``deal.*``, or the generic
``object.*`` with ``objectTypeId`` 0-3) become one ``crm.deal_changed`` each; anything else
is answered 2xx and counted, since HubSpot never retries a 4xx and a contact event is not
an error. The id is portalId-subscriptionId-eventId-occurredAt (contract): HubSpot's own
identity of a notification, without ``attemptNumber``, so its retry publishes the same id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worker.ingress.deal_events import Outgoing, deal_changed
from worker.ingress.refusals import Malformed, Unauthorized
from worker.ingress.strict_json import parse_json

WINDOW_MS = 5 * 60 * 1000
MAX_EVENTS = 1000
DEAL_OBJECT_TYPE = "0-3"

# HubSpot's table of escapes to decode in the URI before signing (v3), and nothing else.
_DECODED = {
    "3A": ":", "2F": "/", "3F": "?", "40": "@", "21": "!", "24": "$",
    "27": "'", "28": "(", "29": ")", "2A": "*", "2C": ",", "3B": ";",
}  # fmt: skip
_ESCAPE = re.compile(r"%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)", re.IGNORECASE)


def decode_uri(uri: str) -> str:
    return _ESCAPE.sub(lambda m: _DECODED[m.group(1).upper()], uri)


def v3_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = method.encode() + decode_uri(uri).encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def v2_signature(secret: str, method: str, uri: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + method.encode() + uri.encode() + body).hexdigest()


def v1_signature(secret: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + body).hexdigest()


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(errors="replace"), expected.encode())


def verify(
    headers: Mapping[str, str],
    *,
    secret: str,
    method: str,
    uri: str,
    body: bytes,
    legacy: bool,
    now_ms: int,
) -> str:
    """Raises ``Unauthorized`` unless the request is signed; returns the version that held."""
    given = headers.get("x-hubspot-signature-v3")
    if given is not None:
        timestamp = headers.get("x-hubspot-request-timestamp", "")
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 15:
            raise Unauthorized("X-HubSpot-Request-Timestamp missing or not milliseconds")
        if abs(now_ms - int(timestamp)) > WINDOW_MS:
            raise Unauthorized("X-HubSpot-Request-Timestamp outside the 5-minute window")
        if not _equal(given, v3_signature(secret, method, uri, body, timestamp)):
            raise Unauthorized("X-HubSpot-Signature-v3 does not match")
        return "v3"
    version = headers.get("x-hubspot-signature-version", "").lower()
    legacy_given = headers.get("x-hubspot-signature")
    if legacy_given is None:
        raise Unauthorized("no X-HubSpot-Signature-v3")
    if not legacy:
        raise Unauthorized("only signature v3 is accepted (HUBSPOT_LEGACY_SIGNATURES is off)")
    if version == "v1":
        expected = v1_signature(secret, body)
    elif version == "v2":
        expected = v2_signature(secret, method, uri, body)
    else:
        raise Unauthorized("X-HubSpot-Signature-Version is neither v1 nor v2")
    if not _equal(given=legacy_given.lower(), expected=expected):
        raise Unauthorized(f"X-HubSpot-Signature ({version}) does not match")
    return version


HubSpotId = Annotated[int, Field(strict=True, ge=0, lt=2**63)]


class DealEvent(BaseModel):
    """The fields of one HubSpot event that the contract uses; others are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    eventId: HubSpotId
    subscriptionId: HubSpotId
    portalId: HubSpotId
    occurredAt: Annotated[int, Field(strict=True, ge=0, lt=10**14)]  # ms, before year 5138
    subscriptionType: Annotated[str, Field(min_length=1, max_length=200)]
    objectId: HubSpotId
    propertyName: Annotated[str, Field(max_length=500)] | None = None
    propertyValue: Annotated[str, Field(max_length=65536)] | None = None


def _is_deal(event: dict) -> bool:
    kind = event.get("subscriptionType")
    if not isinstance(kind, str):
        raise Malformed("a HubSpot event without a subscriptionType")
    return kind.startswith("deal.") or (
        kind.startswith("object.") and event.get("objectTypeId") == DEAL_OBJECT_TYPE
    )


def _one(index: int, raw: dict) -> Outgoing:
    try:
        event = DealEvent.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(map(str, err["loc"]))
        raise Malformed(f"HubSpot event {index}: {where}: {err['msg']}") from None
    change = {"subscriptionType": event.subscriptionType}
    if event.propertyName is not None:
        change["propertyName"] = event.propertyName
    if event.propertyValue is not None:
        change["propertyValue"] = event.propertyValue
    return deal_changed(
        crm="hubspot",
        account=str(event.portalId),
        event_id=f"{event.portalId}-{event.subscriptionId}-{event.eventId}-{event.occurredAt}",
        deal_id=str(event.objectId),
        occurred_at=datetime.fromtimestamp(event.occurredAt / 1000, UTC),
        change=change,
    )


def translate(body: bytes) -> tuple[list[Outgoing], int]:
    """The deal events of a batch, and how many others it held (answered, not published)."""
    batch = parse_json(body)
    if not isinstance(batch, list):
        raise Malformed("HubSpot sends a JSON array of events; this is not an array")
    if len(batch) > MAX_EVENTS:
        raise Malformed(f"{len(batch)} events in one request, over {MAX_EVENTS}")
    outgoing, ignored = [], 0
    for index, raw in enumerate(batch):
        if not isinstance(raw, dict):
            raise Malformed(f"HubSpot event {index} is not an object")
        if _is_deal(raw):
            outgoing.append(_one(index, raw))
        else:
            ignored += 1
    return outgoing, ignored
