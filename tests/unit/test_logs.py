"""Log lines never carry a configured secret, in any form it takes on the wire, tracebacks
included."""

from __future__ import annotations

import base64
import io
import json
import logging
import sys
import threading

import pika
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
def configured(restore_logging):
    """``configured(**kwargs)`` sets logging up as ``provisioner run`` does, into a buffer;
    returns a function giving the text written so far."""

    def configure(**kwargs):
        stream = io.StringIO()
        logs.configure(stream=stream, **kwargs)
        return stream.getvalue

    return configure


@pytest.fixture
def lines(configured):
    text = configured(secrets=[HARVEST, f"{TOGGL}\n", CLOCKIFY])
    return lambda: [json.loads(line) for line in text().splitlines()]


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


def test_library_lines_are_json_through_the_same_pipeline_and_redacted(lines):
    structlog.contextvars.bind_contextvars(event_id="ev-1", project_id="pr-1")
    try:
        logging.getLogger("urllib3.connectionpool").warning("retrying with %s", f"Bearer {HARVEST}")
        try:
            raise ValueError(f"bad header {CLOCKIFY}")
        except ValueError:
            logging.getLogger("uvicorn.error").exception("server failed")
    finally:
        structlog.contextvars.clear_contextvars()

    retry, failed = lines()
    assert retry["event"] == "retrying with Bearer [redacted]"
    assert retry["logger"] == "urllib3.connectionpool" and retry["level"] == "warning"
    assert (retry["event_id"], retry["project_id"]) == ("ev-1", "pr-1")
    assert failed["logger"] == "uvicorn.error" and "ValueError" in failed["exception"]
    assert CLOCKIFY not in json.dumps(failed) and "[redacted]" in failed["exception"]


def test_a_failed_connect_is_quiet_but_a_lost_connection_is_not(lines):
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(pika.URLParameters(f"amqp://u:{HARVEST}@127.0.0.1:9/"))
    logging.getLogger("pika.adapters.base_connection").error("Transport indicated EOF.")

    assert [(line["logger"], line["event"]) for line in lines()] == [
        ("pika.adapters.base_connection", "Transport indicated EOF.")
    ]


def test_level_filters_our_lines_and_the_libraries(configured):
    text = configured(level="WARNING")
    structlog.get_logger().info("routine")
    logging.getLogger("some.library").info("routine too")
    structlog.get_logger().warning("worth_reading")

    assert [json.loads(line)["event"] for line in text().splitlines()] == ["worth_reading"]


def test_pika_info_lines_are_quiet_unless_debugging(configured):
    text = configured(level="INFO")
    logging.getLogger("pika.channel").info("Received <Channel.OpenOk>")
    assert text() == ""


def test_console_form_is_one_readable_line_with_its_fields(configured):
    text = configured(form="console", secrets=[HARVEST])
    structlog.get_logger().info("event_done", event_id="ev-9", token=HARVEST)

    [line] = text().splitlines()
    assert "event_done" in line and "event_id=ev-9" in line and HARVEST not in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_unset_form_is_json_when_stderr_is_not_a_terminal(configured):
    text = configured()
    structlog.get_logger().info("hello")
    assert json.loads(text())["event"] == "hello"


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


def test_lines_from_many_threads_and_both_apis_never_interleave(lines):
    def chatter(n: int) -> None:
        for i in range(300):
            structlog.get_logger().info("ours", thread=n, i=i, pad="x" * 200)
            logging.getLogger("some.library").warning("theirs %d %d %s", n, i, "y" * 200)

    threads = [threading.Thread(target=chatter, args=(n,)) for n in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between any two writes
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)

    written = lines()  # each parses as JSON, or this raises
    assert len(written) == 4 * 300 * 2


def test_an_exception_nothing_caught_in_a_thread_is_one_redacted_json_line(lines):
    def crash():
        raise KeyError(f"token {HARVEST}")

    thread = threading.Thread(target=crash, name="lane-7")
    thread.start()
    thread.join()

    [line] = lines()
    assert (line["event"], line["level"], line["thread"]) == (
        "uncaught_exception",
        "critical",
        "lane-7",
    )
    assert "KeyError" in line["exception"] and HARVEST not in json.dumps(line)
