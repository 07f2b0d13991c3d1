"""How many deliveries the worker lets the broker hand over ahead of their acks."""

from __future__ import annotations

import pytest

from worker.consumer import Consumer
from worker.settings import load_settings
from worker.topology import Topology


def consumer(monkeypatch, **env: str) -> Consumer:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    built = Consumer(
        amqp_url=settings.amqp_url,
        topology=Topology("t", (10.0,)),
        processor=None,
        concurrency=settings.concurrency,
        prefetch=settings.prefetch,
    )
    built.lanes.close()
    return built


@pytest.mark.parametrize(("concurrency", "prefetch"), [("1", 64), ("16", 512), ("64", 1000)])
def test_the_window_follows_the_concurrency_within_bounds(monkeypatch, concurrency, prefetch):
    assert consumer(monkeypatch, PROVISIONER_CONCURRENCY=concurrency).prefetch == prefetch


def test_an_operator_can_set_the_window(monkeypatch):
    assert consumer(monkeypatch, PROVISIONER_PREFETCH="20").prefetch == 20
