"""Session-wide checks: the real services the suite needs must be there. A missing broker is
a failure of the run, never a skipped test; tests/unit alone needs none."""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

import pika
import pytest
import structlog

from tests.postgres import fresh_schema

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


UNIT = Path(__file__).parent / "unit"


def pytest_collection_finish(session):
    """Only tests/unit runs without services (``make unit``); once any other test is
    collected, the broker must be there."""
    if all(Path(item.path).is_relative_to(UNIT) for item in session.items):
        return
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_URL)).close()
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing here
        pytest.exit(f"RabbitMQ is not reachable at {AMQP_URL}: {exc!r}", returncode=3)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return AMQP_URL


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return POSTGRES_URL


@pytest.fixture
def pg_schema_url(postgres_url):
    """A PostgreSQL URL whose connections work in a schema of their own, dropped afterwards."""
    with fresh_schema(postgres_url) as url:
        yield url


@pytest.fixture
def restore_logging():
    """Puts structlog and the root logger back as they were after the test: a test that
    configures logging as a process does (``worker.logs.configure``) must not leave later
    tests' loggers cached on its pipeline, where ``capture_logs`` no longer sees them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hooks = sys.excepthook, threading.excepthook
    yield
    sys.excepthook, threading.excepthook = hooks
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("pika").setLevel(logging.NOTSET)
    logging.captureWarnings(False)
