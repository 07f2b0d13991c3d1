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

Events: the body is an array of up to 100 events of any subscribed types (reference
"crm-production", HubSpot). Each deal event (``deal.*``, or the generic ``object.*`` with
``objectTypeId`` 0-3) becomes one ``crm.deal_changed`` for the deal it names: ``objectId``
for creation, propertyChange, deletion and restore; ``primaryObjectId`` for a merge (the
merged ids go in ``change``); the deal side of ``fromObjectId`` / ``toObjectId`` for an
associationChange, which has no ``objectId``. Anything else, and a deal event that cannot
be read, is skipped, counted (``provisioner_ingress_skipped``) and answered 2xx with the
rest: HubSpot retries a refused batch (up to 10 times over 24 hours, then drops it; any
4xx counts, per HubSpot's current "Retries" section as the reference quotes it; older
HubSpot docs exempted 400/401/403/404/405, so a 400 may be dropped at once). Either way a
400 for one event would lose the stage changes that came with it, so only a body that is
not a HubSpot batch at all gets one. The id is portalId-subscriptionId-eventId-occurredAt
(contract): HubSpot's own identity of a notification, without ``attemptNumber``, so its
retry publishes the same id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worker import metrics
from worker.ingress.deal_events import Outgoing, deal_changed
from worker.ingress.refusals import Malformed, Unauthorized
from worker.ingress.strict_json import parse_json

log = structlog.get_logger("ingress")

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
Label = Annotated[str, Field(min_length=1, max_length=200)]


class Event(BaseModel):
    """The fields of one HubSpot event that the contract uses; others are ignored. Which
    object id is present depends on the kind: ``objectId`` (creation, propertyChange,
    deletion, restore), ``primaryObjectId`` and ``mergedObjectIds`` (merge), and
    ``fromObjectId`` / ``toObjectId`` with ``associationType`` (associationChange)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    eventId: HubSpotId
    subscriptionId: HubSpotId
    portalId: HubSpotId
    occurredAt: Annotated[int, Field(strict=True, ge=0, lt=10**14)]  # ms, before year 5138
    subscriptionType: Label
    objectTypeId: Label | None = None
    objectId: HubSpotId | None = None
    propertyName: Annotated[str, Field(max_length=500)] | None = None
    propertyValue: Annotated[str, Field(max_length=65536)] | None = None
    primaryObjectId: HubSpotId | None = None
    mergedObjectIds: Annotated[list[HubSpotId], Field(max_length=1000)] | None = None
    fromObjectId: HubSpotId | None = None
    toObjectId: HubSpotId | None = None
    fromObjectTypeId: Label | None = None
    toObjectTypeId: Label | None = None
    associationType: Label | None = None
    associationRemoved: Annotated[bool, Field(strict=True)] | None = None
    isPrimaryAssociation: Annotated[bool, Field(strict=True)] | None = None

    @property
    def action(self) -> str:
        return self.subscriptionType.partition(".")[2]

    @property
    def id(self) -> str:
        # HubSpot's identity of the notification, without attemptNumber (contract).
        return f"{self.portalId}-{self.subscriptionId}-{self.eventId}-{self.occurredAt}"


def _is_deal(raw: dict) -> bool:
    """``deal.*`` of the legacy form, or ``object.*`` about a deal (type 0-3); for an
    association change, either side may be the deal."""
    kind = raw.get("subscriptionType")
    if not isinstance(kind, str):
        return False
    if kind.startswith("deal."):
        return True
    if not kind.startswith("object."):
        return False
    if raw.get("objectTypeId") == DEAL_OBJECT_TYPE:
        return True
    return kind == "object.associationChange" and DEAL_OBJECT_TYPE in (
        raw.get("fromObjectTypeId"),
        raw.get("toObjectTypeId"),
    )


def _deal_side(event: Event) -> int:
    """The deal an association change names: the side its type or type ids say is a deal
    (``DEAL_TO_LINE_ITEM``: from; ``LINE_ITEM_TO_DEAL``: to). A deal-to-deal change arrives
    once for each side (HubSpot fires both), so ``from`` is enough."""
    from_type, _, to_type = (event.associationType or "").upper().partition("_TO_")
    if from_type == "DEAL" or event.fromObjectTypeId == DEAL_OBJECT_TYPE:
        deal = event.fromObjectId
    elif to_type == "DEAL" or event.toObjectTypeId == DEAL_OBJECT_TYPE:
        deal = event.toObjectId
    else:
        raise ValueError("associationType names no deal side")
    if deal is None:
        raise ValueError("the deal side of the association has no object id")
    return deal


def _deal_and_change(event: Event) -> tuple[int, dict]:
    change: dict = {"subscriptionType": event.subscriptionType}
    if event.action == "merge":
        if event.primaryObjectId is None:
            raise ValueError("a merge without primaryObjectId")
        change["mergedObjectIds"] = list(event.mergedObjectIds or [])
        return event.primaryObjectId, change
    if event.action == "associationChange":
        deal = _deal_side(event)
        for name in ("associationType", "associationRemoved", "isPrimaryAssociation"):
            if (value := getattr(event, name)) is not None:
                change[name] = value
        change["fromObjectId"], change["toObjectId"] = event.fromObjectId, event.toObjectId
        return deal, change
    if event.objectId is None:
        raise ValueError("no objectId")
    if event.propertyName is not None:
        change["propertyName"] = event.propertyName
    if event.propertyValue is not None:
        change["propertyValue"] = event.propertyValue
    return event.objectId, change


def _one(index: int, raw: dict) -> Outgoing:
    """The ``crm.deal_changed`` of one deal event; ``Malformed`` naming what is wrong."""
    try:
        event = Event.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(map(str, err["loc"]))
        raise Malformed(f"HubSpot event {index}: {where}: {err['msg']}") from None
    try:
        deal, change = _deal_and_change(event)
    except ValueError as exc:
        raise Malformed(f"HubSpot event {index} ({event.subscriptionType}): {exc}") from None
    return deal_changed(
        crm="hubspot",
        account=str(event.portalId),
        event_id=event.id,
        deal_id=str(deal),
        occurred_at=datetime.fromtimestamp(event.occurredAt / 1000, UTC),
        change=change,
    )


def translate(body: bytes) -> tuple[list[Outgoing], int]:
    """The deal events of a batch, and how many others it held (answered, not published).

    Only a body that is not a HubSpot batch at all (not an array of objects) is refused;
    one event that cannot be read is skipped, counted and logged (without its content),
    because refusing the batch would refuse every good event that came with it."""
    batch = parse_json(body)
    if not isinstance(batch, list):
        raise Malformed("HubSpot sends a JSON array of events; this is not an array")
    if len(batch) > MAX_EVENTS:
        raise Malformed(f"{len(batch)} events in one request, over {MAX_EVENTS}")
    if not all(isinstance(raw, dict) for raw in batch):
        raise Malformed("HubSpot sends an array of event objects; an element is not an object")
    outgoing, skipped, malformed = [], {"not_a_deal": 0, "malformed": 0}, []
    for index, raw in enumerate(batch):
        if not _is_deal(raw):
            skipped["not_a_deal"] += 1
            continue
        try:
            outgoing.append(_one(index, raw))
        except Malformed as refusal:
            skipped["malformed"] += 1
            malformed.append(refusal.reason)
    for reason, count in skipped.items():
        if count:
            metrics.INGRESS_SKIPPED.labels("hubspot", reason).inc(count)
    if malformed:
        log.warning(
            "hubspot_events_skipped",
            malformed=len(malformed),
            first_reason=malformed[0],
            published=len(outgoing),
        )
    return outgoing, sum(skipped.values())
