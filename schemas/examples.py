"""One example ``data`` per event type of the contract, inbound and outbound.

They go into the AsyncAPI document (``provisioner asyncapi``) and the tests hold each one to
its own model, so the examples a reader copies are always ones the worker accepts. A new
event type needs an example here; the tests say so. ``examples/*.json`` are the same
inbound events as whole files (a test keeps both alike)."""

from __future__ import annotations

from typing import Any

# The contract's deal, as in examples/closed_won.json.
_CLOSED_WON_PROJECT = {
    "id": "P-1001",
    "name": "Website Rebuild",
    "client": {"id": "C-77", "name": "Acme Corp"},
    "offerings": [
        {
            "id": "O-1",
            "name": "Discovery",
            "budget_hours": 40,
            "starts_on": "2026-12-01",
            "team": [
                {"email": "ana@example.com", "name": "Ana Lima", "role": "Designer", "hours": 20}
            ],
        },
        {"id": "O-2", "name": "Support retainer", "sold": False},
    ],
}
_HARVEST_PROJECT = {
    "project_id": "P-1001",
    "offering_id": "O-1",
    "tool": "harvest",
    "timesheet_project_id": "19258455",
    "timesheet_url": "https://acme.harvestapp.com/projects/19258455",
    "timesheet_client_id": "19258454",
    "team_assigned": ["ana@example.com"],
    "team_missing": [],
}

INBOUND: dict[str, dict[str, Any]] = {
    "deal.closed_won": {"project": _CLOSED_WON_PROJECT},
    "project.status_changed": {
        "project_id": "P-1001",
        "status": "in_progress",
        "selection": {"O-1": True},
    },
    "timesheet.provision_requested": {
        "project_id": "P-1001",
        "offering_id": "O-1",
        "tool": "harvest",
    },
    "timesheet.connect_requested": {
        "project_id": "P-1001",
        "offering_id": "O-1",
        "tool": "harvest",
        "timesheet_project": "https://acme.harvestapp.com/projects/12345678",
    },
    "crm.deal_changed": {
        "crm": "hubspot",
        "account": "62515",
        "deal_id": "18734562001",
        "occurred_at": "2026-11-29T10:00:00.000Z",
        "change": {
            "subscriptionType": "deal.propertyChange",
            "propertyName": "dealstage",
            "propertyValue": "closedwon",
        },
    },
}

OUTBOUND: dict[str, dict[str, Any]] = {
    "project.activated": {"project_id": "P-1001", "offering_ids": ["O-1", "O-2"]},
    "timesheet.provisioned": {
        **_HARVEST_PROJECT,
        "budget_hours": 40.0,
        "created": True,
        "warnings": [],
    },
    "timesheet.connected": _HARVEST_PROJECT,
    "timesheet.skipped": {"project_id": "P-1001", "offering_id": "O-2", "reason": "not_sold"},
    "timesheet.archived": {
        "project_id": "P-1001",
        "offering_id": "O-1",
        "tool": "harvest",
        "timesheet_project_id": "19258455",
    },
    "timesheet.restored": {
        "project_id": "P-1001",
        "offering_id": "O-1",
        "tool": "harvest",
        "timesheet_project_id": "19258455",
    },
    "timesheet.failed": {
        "project_id": "P-1001",
        "offering_id": "O-1",
        "tool": "harvest",
        "code": "vendor_unavailable",
        "message": "harvest: 503 Service Unavailable after 5 attempts",
        "retryable": True,
        "attempts": 5,
        "dead_lettered": True,
    },
    # One event names a batch of dead letters; ``provisioner dlq`` sends up to a few hundred.
    "dlq.replayed": {
        "by": "oncall",
        "at": "2026-11-30T09:15:00.000Z",
        "count": 2,
        "letters": [
            {
                "dead_letter_id": "3f2a9c0d1e4b4d6f8a7b2c1d0e9f8a7b",
                "event_id": "7b1e2c4d-0000-4000-8000-000000000001",
                "event_type": "timesheet.provision_requested",
                "error_code": "vendor_unavailable",
                "replays": 1,
                "routing_key": "timesheet.provision_requested",
            },
            {
                "dead_letter_id": "9c8b7a6f5e4d4c3b2a1f0e9d8c7b6a5f",
                "event_id": "7b1e2c4d-0000-4000-8000-000000000002",
                "event_type": "deal.closed_won",
                "error_code": "vendor_unavailable",
                "replays": 2,
                "routing_key": "deal.closed_won",
            },
        ],
    },
    "dlq.discarded": {
        "by": "oncall",
        "at": "2026-11-30T09:20:00.000Z",
        "count": 2,
        "letters": [
            {
                "dead_letter_id": "5d4c3b2a1f0e4d9c8b7a6f5e4d3c2b1a",
                "event_id": "7b1e2c4d-0000-4000-8000-000000000003",
                "event_type": "deal.closed_won",
                "error_code": "client_ambiguous",
                "replays": 0,
            },
            {
                "dead_letter_id": "not-json-0f1e2d3c",
                "event_id": None,
                "event_type": None,
                "error_code": "not_json",
                "replays": 0,
            },
        ],
    },
}
