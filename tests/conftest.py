"""Session-wide checks: the real services the suite needs must be there. A missing broker is
a failure of the run, never a skipped test."""

from __future__ import annotations

import os

import pika
import pytest

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pytest_sessionstart(session):
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
