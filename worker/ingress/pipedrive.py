"""Pipedrive webhooks, v2 and v1 on one route: HTTP Basic credentials, then either v2's
``meta`` / ``data`` / ``previous`` body (Pipedrive, "Guide for Webhooks v2"; reference §3)
or v1's ``v`` / ``meta`` / ``current`` / ``previous`` / ``event`` / ``retry`` body ("Guide
for Webhooks"). v1 webhooks still run beside v2 and can still be made, so both are taken.

Pipedrive signs nothing; the credentials it was given when the webhook was made arrive in
``Authorization: Basic`` on every request and are compared in constant time. Only deal
events are published; any other object is answered 2xx and counted, because every failed
first try counts towards Pipedrive banning the webhook for 30 minutes (events lost).

The CloudEvent id comes only from what Pipedrive's retries of one notification keep:
- v2: ``meta.id``, Pipedrive's id of the event;
- v1 has no event id, and ``retry`` counts the tries. Pipedrive's advice for telling v1
  notifications apart (Dev Community, "Troubleshooting Webhook delivery and payload
  structure") is the ``meta`` block: ``webhook_id``, ``pipedrive_service_name``,
  ``timestamp*`` and ``change_source``. The id is a digest of those with the company, the
  object, its id, the action and the acting user, so a retry gives the same id and two
  changes (another webhook, deal, action or microsecond) never share one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker.ingress.deal_events import Outgoing, deal_changed
from worker.ingress.refusals import Malformed, Unauthorized
from worker.ingress.strict_json import parse_json

CHALLENGE = {"WWW-Authenticate": 'Basic realm="provisioner", charset="UTF-8"'}

Text = Annotated[str, Field(min_length=1, max_length=200)]


def verify(authorization: str | None, *, user: str, password: str) -> None:
    """Raises ``Unauthorized`` unless ``Authorization`` carries exactly these credentials."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise Unauthorized("HTTP Basic credentials required", CHALLENGE)
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Unauthorized("Authorization is not valid Basic credentials", CHALLENGE) from None
    expected = f"{user}:{password}".encode()
    # One comparison over "user:password": the time taken says nothing about either part.
    if not hmac.compare_digest(given, expected):
        raise Unauthorized("wrong credentials", CHALLENGE)


class Meta(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Text
    action: Text
    entity: Text
    entity_id: Text
    company_id: Text
    version: Text
    timestamp: str | int | None = None

    @field_validator("entity_id", "company_id", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        # v2 sends strings; older captures show integers. Either names the same record.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


def _occurred_at(meta: Meta, data: dict | None) -> datetime:
    """``meta.timestamp`` is documented as ISO in one place and 10 digits in another."""
    stamp = meta.timestamp
    if isinstance(stamp, str) and stamp.isdigit():
        stamp = int(stamp)
    try:
        if isinstance(stamp, int) and not isinstance(stamp, bool):
            seconds = stamp / 1000 if stamp > 10**11 else stamp  # ms in some captures
            return datetime.fromtimestamp(seconds, UTC)
        if isinstance(stamp, str):
            return _aware(datetime.fromisoformat(stamp))
        if data and isinstance(data.get("update_time"), str):
            return _aware(datetime.fromisoformat(data["update_time"]))
    except (ValueError, OverflowError, OSError):
        raise Malformed("Pipedrive meta.timestamp is not a time") from None
    raise Malformed("Pipedrive meta.timestamp missing")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class MetaV1(BaseModel):
    """v1's ``meta``: ``id`` is the object's id; ids arrive as numbers or text."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    action: Text
    object: Text
    id: Text
    company_id: Text
    user_id: Text | None = None
    webhook_id: Text | None = None
    timestamp: int
    timestamp_micro: int | None = None
    change_source: Text | None = None
    pipedrive_service_name: str | bool | None = None

    @field_validator("id", "company_id", "user_id", "webhook_id", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    def event_id(self) -> str:
        """Stable across Pipedrive's retries of this notification (see the docstring)."""
        kept = self.model_dump(mode="json")
        digest = hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()
        return f"v1-{digest}"

    def occurred_at(self) -> datetime:
        try:
            if self.timestamp_micro is not None:
                return datetime.fromtimestamp(self.timestamp_micro / 1_000_000, UTC)
            return datetime.fromtimestamp(self.timestamp, UTC)
        except (ValueError, OverflowError, OSError):
            raise Malformed("Pipedrive meta.timestamp is not a time") from None


def translate(body: bytes) -> tuple[list[Outgoing], int]:
    payload = parse_json(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("meta"), dict):
        raise Malformed("Pipedrive webhooks send an object with meta (v2: data, v1: current)")
    if "v" in payload:
        return _translate_v1(payload)
    try:
        meta = Meta.model_validate(payload["meta"])
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise Malformed(f"Pipedrive meta.{err['loc'][0]}: {err['msg']}") from None
    if not meta.version.startswith("2"):
        raise Malformed(f"Pipedrive webhook version {meta.version}; only 2.0 is read")
    if meta.entity != "deal":
        return [], 1
    data, previous = payload.get("data"), payload.get("previous")
    if not isinstance(data, dict | None) or not isinstance(previous, dict | None):
        raise Malformed("Pipedrive data and previous must be objects or null")
    event = deal_changed(
        crm="pipedrive",
        account=meta.company_id,
        event_id=meta.id,
        deal_id=meta.entity_id,
        occurred_at=_occurred_at(meta, data),
        change={"action": meta.action, "data": data, "previous": previous},
    )
    return [event], 0


def _translate_v1(payload: dict) -> tuple[list[Outgoing], int]:
    versions = (payload["v"], payload["meta"].get("v", 1))
    if any(v != 1 or isinstance(v, bool) for v in versions):
        raise Malformed(f"Pipedrive webhook v {str(payload['v'])[:20]}; only 1 and 2.0 are read")
    try:
        meta = MetaV1.model_validate(payload["meta"])
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise Malformed(f"Pipedrive meta.{err['loc'][0]}: {err['msg']}") from None
    if meta.object != "deal":
        return [], 1
    current, previous = payload.get("current"), payload.get("previous")
    if not isinstance(current, dict | None) or not isinstance(previous, dict | None):
        raise Malformed("Pipedrive current and previous must be objects or null")
    event = deal_changed(
        crm="pipedrive",
        account=meta.company_id,
        event_id=meta.event_id(),
        deal_id=meta.id,
        occurred_at=meta.occurred_at(),
        change={"version": "1.0", "action": meta.action, "data": current, "previous": previous},
    )
    return [event], 0
