"""The messages of the bus's AsyncAPI document (``worker.asyncapi``): every model as a
component schema, one message per event type with its example, and the dead letter with the
headers the worker adds.

AMQP bindings follow the AMQP bindings 0.3.0. Every schema is a component, with pydantic's
references rewritten to ``#/components/schemas/…`` so that they resolve inside this document.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from schemas import examples
from schemas.envelope import CONTENT_TYPE, CloudEvent
from schemas.errors import FailureCode, UnreadableCode
from schemas.inbound import INBOUND_TYPES
from schemas.outbound import OUTBOUND_TYPES, DeadLetterAudit
from worker import messages
from worker.topology import Topology

AMQP_BINDINGS = "0.3.0"
DEFAULT_NAMESPACE = "provisioning"  # the contract's default PROVISIONER_NAMESPACE
# The topology's own names, with the namespace left as the channels' address parameter.
_NAMES = Topology("{namespace}", ())
_REFS = "#/components/schemas/{model}"
# Fixed in examples, so the committed document does not change with the clock.
_EXAMPLE_TIME = "2026-11-29T10:00:00Z"
_FAILED_AT = "2026-11-29T10:00:01.204000+00:00"


def _schemas() -> dict[str, Any]:
    """Every model as a component: inbound ``data`` as the worker validates it, outbound
    ``data`` as the worker serialises it, and the two envelopes."""
    models = [(m, "validation") for m in INBOUND_TYPES.values()]
    models += [(m, "serialization") for m in OUTBOUND_TYPES.values()]
    models.append((CloudEvent, "validation"))
    _, top = models_json_schema(models, ref_template=_REFS)
    defs = top["$defs"]
    defs["OutboundCloudEvent"] = {
        "title": "OutboundCloudEvent",
        "description": (
            "What the worker adds to every event it publishes: subject (the project id), "
            "datacontenttype and causationid (the id of the inbound event behind it)."
        ),
        "allOf": [
            {"$ref": _REFS.format(model="CloudEvent")},
            {
                "type": "object",
                "required": ["subject", "datacontenttype", "causationid"],
                "properties": {
                    "subject": {"type": "string"},
                    "datacontenttype": {"const": "application/json"},
                    "causationid": {"type": "string", "minLength": 1},
                },
            },
        ],
    }
    defs["AuditCloudEvent"] = {
        "title": "AuditCloudEvent",
        "description": (
            "What `provisioner dlq` adds to its audit events, each naming a batch of dead "
            "letters: datacontenttype; subject (the dead letter's id) and causationid (its "
            "event's id) only when the batch holds a single letter."
        ),
        "allOf": [
            {"$ref": _REFS.format(model="CloudEvent")},
            {
                "type": "object",
                "required": ["datacontenttype"],
                "properties": {
                    "subject": {"type": "string"},
                    "datacontenttype": {"const": "application/json"},
                    "causationid": {"type": "string", "minLength": 1},
                },
            },
        ],
    }
    return dict(sorted(defs.items()))


def _event_message(event_type: str, direction: str) -> dict[str, Any]:
    model = INBOUND_TYPES.get(event_type) or OUTBOUND_TYPES[event_type]
    envelope = "CloudEvent" if direction == "inbound" else "OutboundCloudEvent"
    if isinstance(model, type) and issubclass(model, DeadLetterAudit):
        envelope = "AuditCloudEvent"
    message: dict[str, Any] = {
        "name": event_type,
        "title": event_type,
        "summary": _summary(model),
        "contentType": CONTENT_TYPE,
        "payload": {
            "allOf": [
                {"$ref": _REFS.format(model=envelope)},
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": event_type},
                        "data": {"$ref": _REFS.format(model=model.__name__)},
                    },
                },
            ]
        },
        "bindings": {"amqp": {"messageType": event_type, "bindingVersion": AMQP_BINDINGS}},
    }
    if example := example_event(event_type):
        message["examples"] = [{"name": event_type.replace(".", "_"), "payload": example}]
    return message


def example_event(event_type: str) -> dict[str, Any] | None:
    """The whole CloudEvent of ``schemas.examples`` for ``event_type``, or None if it has none."""
    if event_type in INBOUND_TYPES:
        data = examples.INBOUND.get(event_type)
        envelope = {"source": "crm/hubspot", "id": f"example-{event_type}"}
    else:
        data = examples.OUTBOUND.get(event_type)
        envelope = {
            "source": "timesheet-provisioner",
            "id": f"example-{event_type}",
            "datacontenttype": "application/json",
            "causationid": "example-deal.closed_won",
        }
    if data is None:
        return None
    subject = data.get("project_id") or data.get("project", {}).get("id")
    if event_type == "crm.deal_changed":  # the ingress's subject is the CRM's deal id
        subject = data["deal_id"]
    if "letters" in data:  # a dlq audit event of several letters: no one subject or cause
        subject = None
        del envelope["causationid"]
    source, event_id = envelope.pop("source"), envelope.pop("id")
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "time": _EXAMPLE_TIME,
        "subject": subject,
        **envelope,
        "data": data,
    }
    return {k: v for k, v in event.items() if k != "subject" or v is not None}


def _summary(model: type) -> str:
    """The first paragraph of the model's docstring, else the model's name."""
    doc = (model.__doc__ or "").strip()
    if not doc:
        return f"data: {model.__name__}"
    return " ".join(doc.split("\n\n")[0].split())


def _dead_letter_message() -> dict[str, Any]:
    codes = [str(c) for c in (*FailureCode, *UnreadableCode)]
    headers = {
        "type": "object",
        "description": (
            "The producer's headers, kept, plus the worker's. A message the worker could not "
            "even copy (a header it cannot read back) is dead-lettered by the broker "
            "instead: it carries `x-death` and none of these."
        ),
        "properties": {
            messages.ERROR_CODE: {"type": "string", "enum": codes},
            messages.ERROR_MESSAGE: {"type": "string", "maxLength": 1000},
            messages.ATTEMPTS: {"type": "integer", "minimum": 1},
            messages.FIRST_FAILED_AT: {"type": "string", "format": "date-time"},
            messages.LAST_FAILED_AT: {"type": "string", "format": "date-time"},
            messages.ORIGINAL_EXCHANGE: {"type": "string"},
            messages.ORIGINAL_ROUTING_KEY: {"type": "string"},
            messages.FAILURES: {
                "type": "array",
                "maxItems": 10,
                "items": {"type": "string"},
                "description": "the last ten failures, one line each",
            },
            messages.REPLAYS: {
                "type": "integer",
                "description": "how often `provisioner dlq replay` sent it back",
            },
        },
    }
    example_headers = {
        messages.ERROR_CODE: str(UnreadableCode.INVALID_DATA),
        messages.ERROR_MESSAGE: "data.project.id: Field required (1 error(s))",
        messages.ATTEMPTS: 1,
        messages.FIRST_FAILED_AT: _FAILED_AT,
        messages.LAST_FAILED_AT: _FAILED_AT,
        messages.ORIGINAL_EXCHANGE: _NAMES.inbound.format(namespace=DEFAULT_NAMESPACE),
        messages.ORIGINAL_ROUTING_KEY: "deal.closed_won",
        messages.FAILURES: [
            f"{_FAILED_AT} attempt 1: invalid_data: data.project.id: Field required (1 error(s))"
        ],
    }
    return {
        "name": "dead-letter",
        "title": "A dead letter",
        "summary": "The original message, untouched, with headers that say why it is here.",
        "description": (
            "The body is the original body as it came (it may not be JSON at all: that can "
            "be why it is here). `x-error-code` is one of the failure codes of the contract "
            "or the reasons a message cannot be read."
        ),
        "headers": headers,
        "payload": {"description": "the original body, any bytes"},
        "bindings": {"amqp": {"bindingVersion": AMQP_BINDINGS}},
        "examples": [
            {
                "name": "invalid_data",
                "headers": example_headers,
                "payload": {
                    "specversion": "1.0",
                    "id": "b1f0c7e2-0009",
                    "source": "crm/hubspot",
                    "type": "deal.closed_won",
                    "time": _EXAMPLE_TIME,
                    "data": {"project": {"name": "Website Rebuild"}},
                },
            }
        ],
    }
