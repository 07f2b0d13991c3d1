"""The bus contract as an AsyncAPI 3.0.0 document, generated from the code that speaks it.

``document()`` reads the type registries (``schemas.inbound.INBOUND_TYPES``,
``schemas.outbound.OUTBOUND_TYPES``), their pydantic models, the envelope, the failure codes,
the topology's names and the dead-letter headers, so a type, field or code added there is in
the document without touching this module. ``docs/asyncapi.yaml`` is its output, committed; a
unit test fails when the two differ (``provisioner asyncapi --output docs/asyncapi.yaml``).

It lives in ``worker`` rather than ``schemas`` because the names of the exchanges and the
dead-letter headers are the worker's (``worker.topology``, ``worker.messages``), and
``schemas`` imports nothing of ours. The runtime never imports it.

This module draws the servers, channels and operations; the messages and their schemas (with
the examples) are ``worker.asyncapi_messages``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from schemas.envelope import CONTENT_TYPE
from schemas.inbound import INBOUND_TYPES
from schemas.outbound import OUTBOUND_TYPES
from worker.asyncapi_messages import (
    _NAMES,
    AMQP_BINDINGS,
    DEFAULT_NAMESPACE,
    _dead_letter_message,
    _event_message,
    _schemas,
)
from worker.asyncapi_messages import example_event as example_event


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of the bus, as plain JSON-ready values."""
    schemas = _schemas()
    inbound = {t: _event_message(t, "inbound") for t in INBOUND_TYPES}
    outbound = {t: _event_message(t, "outbound") for t in OUTBOUND_TYPES}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "timesheet-provisioner bus",
            "version": _version(),
            "description": (
                "CloudEvents 1.0 in structured mode on RabbitMQ: producers put inbound events "
                "on `{namespace}.inbound`, the worker publishes outcomes on "
                "`{namespace}.events`, and what needs a person waits in "
                "`{namespace}.dead-letter`. The prose contract is docs/contract.md; this "
                "document is generated from the code by `provisioner asyncapi`."
            ),
            "license": {"name": "MIT"},
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "broker": {
                "host": "{host}:{port}",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "pathname": "/",
                "title": "RabbitMQ",
                "description": (
                    "The broker of `AMQP_URL` (default `amqp://guest:guest@localhost:5672/`)."
                ),
                "variables": {
                    "host": {"default": "localhost", "description": "host of AMQP_URL"},
                    "port": {"default": "5672", "description": "port of AMQP_URL"},
                },
                "security": [{"$ref": "#/components/securitySchemes/userPassword"}],
            }
        },
        "channels": {
            "inbound": _exchange_channel(
                _NAMES.inbound,
                inbound,
                "Inbound events, routing key = event `type`. The worker's quorum queue "
                f"`{_NAMES.work_queue}` is bound to it with `#`, so an unknown type is "
                "dead-lettered, never dropped.",
            ),
            "events": _exchange_channel(
                _NAMES.events,
                outbound,
                "Outcome events of the worker, routing key = event `type`. Bind your own "
                "queue with the types (or `#`) you need.",
            ),
            "deadLetter": {
                "address": _NAMES.dead_letter,
                "title": "Dead letters",
                "description": (
                    "Messages that need a person, body and properties untouched, with headers "
                    "that say why. Worked with `provisioner dlq`."
                ),
                "parameters": {"namespace": {"$ref": "#/components/parameters/namespace"}},
                "messages": {"deadLetter": {"$ref": "#/components/messages/deadLetter"}},
                "bindings": {
                    "amqp": {
                        "is": "queue",
                        "queue": {
                            "name": _NAMES.dead_letter,
                            "durable": True,
                            "exclusive": False,
                            "autoDelete": False,
                            "vhost": "/",
                        },
                        "bindingVersion": AMQP_BINDINGS,
                    }
                },
            },
        },
        "operations": {
            "sendInbound": _operation(
                "send",
                "inbound",
                inbound,
                "Producers (CRM bridges, `provisioner ingress`, `provisioner publish`) send "
                "an inbound event, with publisher confirms.",
            ),
            "receiveInbound": _operation(
                "receive",
                "inbound",
                inbound,
                f"The worker consumes the events through `{_NAMES.work_queue}` and acks each "
                "one only once its outcome events (or its dead letter) are confirmed.",
            ),
            "sendEvents": _operation(
                "send", "events", outbound, "The worker publishes the outcome of each event."
            ),
            "receiveEvents": _operation(
                "receive",
                "events",
                outbound,
                "Downstream services receive outcome events; `provisioner events tail` "
                "prints them.",
            ),
            "sendDeadLetter": _operation(
                "send",
                "deadLetter",
                {"deadLetter": None},
                "The worker dead-letters what it cannot read, and failures that need a "
                "person once their retries are spent.",
            ),
            "receiveDeadLetter": _operation(
                "receive",
                "deadLetter",
                {"deadLetter": None},
                "On-call engineers list, show, replay and discard dead letters "
                "(`provisioner dlq`).",
            ),
        },
        "components": {
            "schemas": schemas,
            "messages": {**inbound, **outbound, "deadLetter": _dead_letter_message()},
            "parameters": {
                "namespace": {
                    "default": DEFAULT_NAMESPACE,
                    "description": (
                        "PROVISIONER_NAMESPACE: the prefix of every exchange and queue, so "
                        "several installations can share one broker."
                    ),
                }
            },
            "securitySchemes": {
                "userPassword": {
                    "type": "userPassword",
                    "description": "The user and password of AMQP_URL.",
                }
            },
        },
    }


def _exchange_channel(address: str, messages_: dict, description: str) -> dict[str, Any]:
    return {
        "address": address,
        "description": description,
        "parameters": {"namespace": {"$ref": "#/components/parameters/namespace"}},
        "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in messages_},
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {
                    "name": address,
                    "type": "topic",
                    "durable": True,
                    "autoDelete": False,
                    "vhost": "/",
                },
                "bindingVersion": AMQP_BINDINGS,
            }
        },
    }


def _operation(action: str, channel: str, messages_: dict, description: str) -> dict:
    # Every message on the bus is persistent; a consumer acks only what it has dealt with.
    binding = {"deliveryMode": 2} if action == "send" else {"ack": True}
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "description": description,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{t}"} for t in messages_],
        "bindings": {"amqp": {**binding, "bindingVersion": AMQP_BINDINGS}},
    }


def _version() -> str:
    try:
        return version("timesheet-provisioner")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0.0.0"
