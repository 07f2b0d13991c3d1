"""``crm.deal_changed``: what the webhook ingress puts on ``NS.inbound`` for one CRM
notification. Thin on purpose: the worker reads the deal itself (contract, "From a CRM deal
to a project"); this says only which deal, in which CRM account, when, and what the CRM
said about the change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer

CRM_DEAL_CHANGED = "crm.deal_changed"

Crm = Literal["hubspot", "pipedrive", "salesforce"]
Identifier = Annotated[str, Field(min_length=1, max_length=200)]


class CrmDealChanged(BaseModel):
    """A CRM says a deal changed; the worker reads the deal and acts on its stage."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    crm: Crm
    account: Identifier  # HubSpot portalId, Pipedrive company_id, Salesforce OrganizationId
    deal_id: Identifier
    occurred_at: AwareDatetime
    # What the CRM sent about the change, as it sent it (HubSpot subscriptionType,
    # propertyName, propertyValue; Pipedrive action, data, previous; Salesforce the fields).
    change: dict[str, Any] = Field(default_factory=dict)

    @property
    def project_id(self) -> str:
        """The project this deal becomes. Also the consumer's lane key and the store's lock,
        so every event of one deal runs in order with every event of its project."""
        return crm_project_id(self.crm, self.deal_id)

    @field_serializer("occurred_at")
    def _rfc3339(self, value: datetime) -> str:
        return rfc3339(value)


def crm_project_id(crm: str, deal_id: str) -> str:
    """``hubspot:18734562001``: a deal id is unique only within its CRM."""
    return f"{crm}:{deal_id}"


def crm_client_id(crm: str, record_id: str) -> str:
    """The CRM client id a deal's company / organization / account maps tools' clients by."""
    return f"{crm}:{record_id}"


def rfc3339(value: datetime) -> str:
    """UTC with milliseconds and a ``Z``: one spelling, so a retry serialises identically."""
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def whole_second(value: datetime, *, up: bool) -> str:
    """``value`` in UTC on the whole second below it (``up``: above it, unless it is whole
    already), as ``2026-01-01T00:00:00Z``: a sweep window's bound for a CRM that keeps its
    modification times to the second (Pipedrive's ``updated_since``, a SOQL ``dateTime``
    literal), which keeps the window inside the query; the exact window is then checked on
    each deal."""
    floor = value.astimezone(UTC).replace(microsecond=0)
    if up and floor < value:
        floor += timedelta(seconds=1)
    return floor.strftime("%Y-%m-%dT%H:%M:%SZ")
