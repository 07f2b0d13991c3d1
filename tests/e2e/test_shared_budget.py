"""Workers built by the real composition root, with ``PROVISIONER_PACING_URL`` set, count
every vendor request on one budget in Redis (the rest is proven in
``tests/integration/test_shared_pacing.py`` and shown by ``bench.shared_budget``)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import redis

from tests import builders as b

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def test_every_request_of_two_workers_counts_on_one_budget_in_redis(bus, harvest, start_worker):
    # A window longer than the test: every start made stays in the shared window.
    env = {"PROVISIONER_PACING_URL": REDIS_URL, "HARVEST_RATE_LIMIT": "1000/120"}
    workers = [start_worker(**env), start_worker(**env)]
    projects = [b.project(b.offering()) for _ in range(4)]

    for project in projects:
        bus.publish(b.closed_won(project))
        bus.publish(b.status_changed(project, "in_progress"))
    bus.wait_for(len(projects), type="timesheet.provisioned", timeout=60)

    pacers = [w.deps.tools["harvest"].http.pacer for w in workers]
    budget = pacers[0].budget
    assert (
        budget
        == pacers[1].budget
        == f"harvest:{urlsplit(harvest.origin).netloc}:{harvest.account_id}"
    )
    keys = pacers[0].store.keys(budget, "starts", "paused", "workers")
    direct = redis.Redis.from_url(REDIS_URL)
    try:
        with harvest.lock:
            sent = len(harvest.log)
        assert direct.zcard(keys[0]) == sent > 0
        assert not any(p.store.times_away for p in pacers)
    finally:
        direct.delete(*keys)
