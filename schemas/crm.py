"""``crm.deal_changed``: what the webhook ingress puts on ``NS.inbound`` for one CRM
notification. Thin on purpose: the worker reads the deal itself (contract, "From a CRM deal
to a project"); this says only which deal, in which CRM account, when, and what the CRM
said about the change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer

CRM_DEAL_CHANGED = "crm.deal_changed"

Crm = Literal["hubspot", "pipedrive", "salesforce"]
Identifier = Annotated[str, Field(min_length=1, max_length=200)]


class CrmDealChanged(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    crm: Crm
    account: Identifier  # HubSpot portalId, Pipedrive company_id, Salesforce OrganizationId
    deal_id: Identifier
    occurred_at: AwareDatetime
    # What the CRM sent about the change, as it sent it (HubSpot subscriptionType,
    # propertyName, propertyValue; Pipedrive action, data, previous; Salesforce the fields).
    change: dict[str, Any] = Field(default_factory=dict)

    @field_serializer("occurred_at")
    def _rfc3339(self, value: datetime) -> str:
        return rfc3339(value)


def rfc3339(value: datetime) -> str:
    """UTC with milliseconds and a ``Z``: one spelling, so a retry serialises identically."""
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")
