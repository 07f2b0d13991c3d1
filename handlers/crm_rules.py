"""The rules file's ``[crm.<name>]`` tables: which CRM stage is which transition, and which
CRM property holds each piece of an offering.

```toml
[crm.hubspot.stages]        # stage id (any pipeline) -> transition
"1385066797" = "in_progress"
[crm.hubspot.fields]        # CRM property names; every key is optional
budget_hours = "hours_sold" # line item property (default: quantity)
team_emails = "delivery_team"  # deal property of e-mails (the owner is always in)
price = "amount"            # line item: its total (default: amount / sum / TotalPrice)
unit_price = "price"        # line item: an hour's rate (default: price / item_price / UnitPrice)
currency = "hs_line_item_currency_code"  # line item: ISO 4217 (else the deal's, the account's)
```

Defaults (contract): HubSpot's won stages (``closedwon``, and a custom pipeline's stage that
HubSpot marks closed with probability 1), Pipedrive ``status`` won and Salesforce ``IsWon``
are ``closed_won``; an entry in ``stages`` wins over that default. A lost deal is nothing,
whatever its stage: Pipedrive keeps a lost deal's ``stage_id``, and a lost deal never
becomes a project.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from handlers.ports import CrmFields, StageFacts, Transition

_SALESFORCE_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?$")
PropertyName = Annotated[str, Field(min_length=1, max_length=200)]

# The contract's default mapping: offering name, hours, price, rate and currency from the
# line item's own fields. The quantity is hours, so the unit price is an hour's rate.
# Salesforce has CurrencyIsoCode only on multi-currency orgs (the reader asks for it there).
DEFAULT_FIELDS = {
    "hubspot": CrmFields(
        offering_name="name", budget_hours="quantity", price="amount", unit_price="price",
        currency="hs_line_item_currency_code",
    ),
    "pipedrive": CrmFields(
        offering_name="name", budget_hours="quantity", price="sum", unit_price="item_price",
        currency="currency",
    ),
    "salesforce": CrmFields(
        offering_name="Name", budget_hours="Quantity", price="TotalPrice",
        unit_price="UnitPrice", currency="CurrencyIsoCode",
    ),
}  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldOverrides(_Strict):
    offering_name: PropertyName | None = None
    budget_hours: PropertyName | None = None
    team_emails: PropertyName | None = None
    sold: PropertyName | None = None
    kind: PropertyName | None = None
    price: PropertyName | None = None
    unit_price: PropertyName | None = None
    currency: PropertyName | None = None


class CrmTable(_Strict):
    stages: dict[Annotated[str, Field(min_length=1)], Transition] = Field(default_factory=dict)
    fields: FieldOverrides = Field(default_factory=FieldOverrides)


class PipedriveTable(CrmTable):
    @model_validator(mode="after")
    def _stage_ids(self) -> PipedriveTable:
        bad = [k for k in self.stages if not k.isdigit()]
        if bad:
            raise ValueError(f"Pipedrive stages are stage_id numbers, not {bad[0]!r}")
        return self


class SalesforceTable(CrmTable):
    @model_validator(mode="after")
    def _field_names(self) -> SalesforceTable:
        # They go into SOQL: an API name (``Hours__c``, ``Product2.Name``), nothing else.
        for key, name in self.fields.model_dump(exclude_none=True).items():
            if not _SALESFORCE_FIELD.match(name):
                raise ValueError(f"fields.{key}: {name!r} is not a Salesforce field name")
        return self


class CrmRules(_Strict):
    hubspot: CrmTable = Field(default_factory=CrmTable)
    pipedrive: PipedriveTable = Field(default_factory=PipedriveTable)
    salesforce: SalesforceTable = Field(default_factory=SalesforceTable)

    def table(self, crm: str) -> CrmTable:
        return getattr(self, crm)

    def fields(self, crm: str) -> CrmFields:
        overrides = self.table(crm).fields.model_dump(exclude_none=True)
        default = DEFAULT_FIELDS[crm]
        return CrmFields(**{**default.__dict__, **overrides})

    def transition(self, crm: str, facts: StageFacts) -> Transition | None:
        """What the deal's stage means for its project, or None (nothing to do)."""
        if facts.lost:
            return None
        mapped = self.table(crm).stages.get(facts.stage) if facts.stage is not None else None
        if mapped is not None:
            return mapped
        return "closed_won" if facts.won else None

    def describe(self) -> list[str]:
        """One line a mapped stage, for ``rules check``."""
        lines = []
        for crm in ("hubspot", "pipedrive", "salesforce"):
            default = {"hubspot": "won stages", "pipedrive": "status won"}.get(crm, "IsWon")
            lines.append(f"  {crm}: {default} -> closed_won (default)")
            lines += [f"  {crm}: {k} -> {v}" for k, v in self.table(crm).stages.items()]
        return lines
