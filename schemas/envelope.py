"""The CloudEvents 1.0 envelope (structured mode) shared by every message on the bus."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

CONTENT_TYPE = "application/cloudevents+json"
MAX_BODY_BYTES = 256 * 1024


class CloudEvent(BaseModel):
    """Required: specversion, id, source, type, time. Extensions (``causationid`` …) are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"]
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: AwareDatetime
    subject: str | None = None
    datacontenttype: str | None = None
    data: dict[str, Any]

    @field_validator("time", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        # pydantic would read a number as Unix seconds or milliseconds, a guess the contract
        # (and CloudEvents' JSON format) does not make: time is an RFC 3339 string.
        if not isinstance(value, str | datetime):
            raise ValueError("must be an RFC 3339 string")
        return value

    @property
    def key(self) -> tuple[str, str]:
        """(source, id): the identity of an event; a re-sent pair has no second effect."""
        return (self.source, self.id)
