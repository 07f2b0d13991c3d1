"""Pipedrive webhooks v2: HTTP Basic credentials and the ``meta`` / ``data`` / ``previous``
body (Pipedrive, "Guide for Webhooks v2"; reference §3).

Pipedrive signs nothing; the credentials it was given when the webhook was made arrive in
``Authorization: Basic`` on every request and are compared in constant time. Only deal
events are published; any other entity is answered 2xx and counted, because every failed
first try counts towards Pipedrive banning the webhook for 30 minutes (events lost). The
id is ``meta.id``, Pipedrive's id of the event, which its retries keep.
"""

from __future__ import annotations

import base64
import binascii
import hmac
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


def translate(body: bytes) -> tuple[list[Outgoing], int]:
    payload = parse_json(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("meta"), dict):
        raise Malformed("Pipedrive webhooks v2 send an object with meta, data and previous")
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
