"""Log lines never carry a configured secret, in any form it takes on the wire, tracebacks
included."""

from __future__ import annotations

import base64
import io
import json
import logging

import pytest
import requests
import structlog

from worker import logs
from worker.settings import Settings

HARVEST = "harvest-token-1a2b3c"
TOGGL = "toggl-token-4d5e6f"
CLOCKIFY = "clockify-key-7a8b9c"
TOGGL_BASIC = base64.b64encode(f"{TOGGL}:api_token".encode()).decode()


@pytest.fixture
def lines():
    """Configures logging as ``provisioner run`` does, into a buffer; yields its lines."""
    stream = io.StringIO()
    logs.configure(secrets=[HARVEST, f"{TOGGL}\n", CLOCKIFY], stream=stream)
    root_handlers = list(logging.getLogger().handlers)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    structlog.reset_defaults()
    for handler in root_handlers:
        for found in [f for f in handler.filters if isinstance(f, logs.Redactor)]:
            handler.removeFilter(found)


def test_secrets_in_any_field_are_redacted(lines):
    log = structlog.get_logger()

    log.info(
        "call",
        header=f"Authorization: Bearer {HARVEST}",
        nested={"basic": [f"Basic {TOGGL_BASIC}"], "key": CLOCKIFY.encode()},
        count=3,
    )

    [line] = lines()
    text = json.dumps(line)
    assert HARVEST not in text and TOGGL_BASIC not in text and CLOCKIFY not in text
    assert line["header"] == "Authorization: Bearer [redacted]"
    assert line["nested"] == {"basic": ["Basic [redacted]"], "key": "[redacted]"}
    assert line["count"] == 3


def test_a_traceback_quoting_a_token_with_a_newline_is_redacted(lines):
    log = structlog.get_logger()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOGGL}\n"  # as a mounted secret file gives it

    try:
        session.get("http://127.0.0.1:9/never", timeout=1)
    except requests.RequestException:
        log.exception("vendor_call_failed")

    [line] = lines()
    assert "InvalidHeader" in line["exception"]
    assert TOGGL not in json.dumps(line) and "[redacted]" in line["exception"]


def test_stdlib_log_records_are_redacted_too():
    handler = logging.StreamHandler(io.StringIO())
    handler.addFilter(logs.Redactor([HARVEST]))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    try:
        logger.warning("retrying with %s", f"Bearer {HARVEST}")
    finally:
        logger.removeHandler(handler)

    assert handler.stream.getvalue() == "retrying with Bearer [redacted]\n"


def test_short_values_are_not_treated_as_secrets():
    redactor = logs.Redactor(["abc", ""])

    assert redactor.redact("abc abcd") == "abc abcd"


def test_settings_name_every_secret_including_broker_and_database_passwords():
    settings = Settings(
        AMQP_URL="amqp://app:br%40ker-pass@mq:5672/",
        PROVISIONER_DATABASE_URL="postgresql://app:db-pass-9@db/prov",
        HARVEST_ACCOUNT_ID="1",
        HARVEST_ACCESS_TOKEN=HARVEST,
        CLOCKIFY_API_KEY=CLOCKIFY,
        CLOCKIFY_WORKSPACE_ID="5f0000000000000000000000",
    )

    found = set(settings.secrets())

    assert {HARVEST, CLOCKIFY, "br@ker-pass", "db-pass-9"} <= found
    assert "1" not in found  # an account id is not a secret
