"""A vendor budget spent for longer than every retry delay (issue 19: Pipedrive's daily token
budget, Salesforce's daily API total), on the real broker: the message waits for the reset
the vendor named, parked on the longest retry queue, and the vendor hears nothing from us
until then. Delays are scaled down: retries of 1 and 2 s, a budget back in 6 s, and a worker
that sits out at most 0.5 s of a throttle in-process."""

from __future__ import annotations

import math
import time

import pytest

from fakes.base import Response
from fakes.harvest import FakeHarvest
from tests import builders as b
from tests.e2e.bus import wait_until
from worker import metrics


class HarvestWithABudget(FakeHarvest):
    """Harvest whose budget can be spent until a given time: until then every request is
    refused 429 with the seconds left in Retry-After. Notes when each request came."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.spent_until = 0.0  # time.monotonic() when the budget comes back
        self.arrivals: list[tuple[float, int]] = []  # (time.monotonic(), status answered)

    def spend_budget(self, seconds: float) -> None:
        with self.lock:
            self.spent_until = time.monotonic() + seconds

    def handle(self, request) -> Response:
        arrived = time.monotonic()
        with self.lock:
            left = self.spent_until - arrived
        if left > 0:
            self.throttled += 1
            response = self.throttle_response(math.ceil(left))
        else:
            response = super().handle(request)
        with self.lock:
            self.arrivals.append((arrived, response.status))
        return response


@pytest.fixture
def harvest():
    with HarvestWithABudget(rate_limit=(1000, 1.0)) as fake:
        yield fake


def parked() -> float:
    labels = {"type": "project.status_changed", "outcome": "parked"}
    return metrics.WORKER.get_sample_value("provisioner_events_finished_total", labels) or 0.0


def test_a_budget_spent_past_every_retry_is_waited_for_and_the_event_then_provisions(
    bus, harvest, start_worker
):
    project, other = b.project(), b.project()
    start_worker(PROVISIONER_RETRY_DELAYS="1,2", PROVISIONER_HOLD_OFF_CEILING="0.5")
    bus.publish(b.closed_won(project))
    bus.wait_for(1, project_id=project["id"])
    before = parked()

    harvest.spend_budget(6.0)  # three times the longest retry delay
    bus.publish(b.status_changed(project, "in_progress"))
    wait_until(lambda: parked() > before, "the message was parked", timeout=60)
    bus.publish(b.closed_won(other))  # needs no vendor: never held by the parked one
    [done] = bus.wait_for(1, type="timesheet.provisioned", project_id=project["id"], timeout=60)

    throttles = [at for at, status in harvest.arrivals if status == 429]
    answered = [at for at, status in harvest.arrivals if status != 429 and at > throttles[0]]
    assert len(throttles) == 1  # asked once while spent, never again before the reset
    assert answered and min(answered) >= harvest.spent_until
    assert done["data"]["created"] is True and len(harvest.projects) == 1
    kinds = [(o["type"], o["data"]["project_id"]) for o in bus.outcomes]
    assert kinds.index(("project.activated", other["id"])) < kinds.index(
        ("timesheet.provisioned", project["id"])
    )
    assert not [o for o in bus.settle() if o["type"] == "timesheet.failed"]
    assert bus.dead_letters() == []
