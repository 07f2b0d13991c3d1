"""What the worker counts (``worker.metrics``): label values stay few whatever senders and
vendors do, decisions map to outcomes, and the HTTP layer tells its observer every request,
throttle and pacing wait."""

from __future__ import annotations

import threading

import requests
import tenacity

from adapters.http import VendorHttp
from adapters.pacing import Pacer
from worker import metrics
from worker.lanes import Lanes


def sample(name: str, **labels: str) -> float:
    return metrics.WORKER.get_sample_value(name, labels) or 0.0


def test_event_types_a_sender_made_up_fold_into_one_label_value():
    assert metrics.event_type_label("deal.closed_won") == "deal.closed_won"
    assert metrics.event_type_label("deal.lost") == "other"
    assert metrics.event_type_label("x" * 1000) == "other"
    assert metrics.event_type_label(None) == "unreadable"


def test_a_dead_letter_counts_as_finished_and_by_its_code():
    finished = sample(
        "provisioner_events_finished_total", type="project.status_changed", outcome="dead_lettered"
    )
    letters = sample("provisioner_dead_letters_total", code="project_not_active")

    metrics.event_finished(
        "project.status_changed", "dead_lettered", {"code": "project_not_active", "attempts": 3}
    )

    assert (
        sample(
            "provisioner_events_finished_total",
            type="project.status_changed",
            outcome="dead_lettered",
        )
        == finished + 1
    )
    assert sample("provisioner_dead_letters_total", code="project_not_active") == letters + 1


def test_a_retry_counts_by_its_code_and_a_rejection_as_a_dead_letter():
    retried = sample("provisioner_retries_scheduled_total", code="vendor_unavailable")
    rejected = sample("provisioner_dead_letters_total", code="rejected")

    metrics.event_finished("deal.closed_won", "retry_scheduled", {"code": "vendor_unavailable"})
    metrics.event_finished(None, "rejected_to_dead_letter", {})

    assert sample("provisioner_retries_scheduled_total", code="vendor_unavailable") == retried + 1
    assert sample("provisioner_dead_letters_total", code="rejected") == rejected + 1
    assert sample("provisioner_events_finished_total", type="unreadable", outcome="rejected") >= 1


class Answers(requests.Session):
    """A session answering the statuses given, in turn."""

    def __init__(self, *answers: tuple[int, dict]):
        super().__init__()
        self.answers = list(answers)

    def request(self, *args, **kwargs):
        status, headers = self.answers.pop(0)
        response = requests.Response()
        response.status_code, response._content = status, b"{}"
        response.headers.update(headers)
        return response


class Recorder:
    def __init__(self):
        self.seen: list[tuple] = []

    def answered(self, vendor, method, status, seconds):
        self.seen.append(("answered", vendor, method, status))

    def throttled(self, vendor):
        self.seen.append(("throttled", vendor))

    def paced(self, vendor, seconds):
        self.seen.append(("paced", vendor, round(seconds, 1)))


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_http_layer_tells_its_observer_each_request_throttle_and_pacing_wait():
    observer, clock = Recorder(), Clock()
    http = VendorHttp(
        "toggl",
        "https://api.example.com",
        headers={},
        retrying=tenacity.Retrying(
            stop=tenacity.stop_after_attempt(2),
            retry=tenacity.retry_if_exception(lambda e: getattr(e, "safe_to_retry", False)),
            reraise=True,
        ),
        pacer=Pacer(10, 1.0, clock=clock, sleep=clock.sleep),
        session=Answers((429, {"Retry-After": "2"}), (201, {})),
        observer=observer,
    )

    http.request("POST", "/projects")

    assert observer.seen == [
        ("answered", "toggl", "POST", 429),
        ("throttled", "toggl"),
        ("paced", "toggl", 2.0),  # the Retry-After hold
        ("answered", "toggl", "POST", 201),
    ]


def test_a_request_without_an_answer_is_labelled_error():
    before = sample(
        "provisioner_vendor_request_duration_seconds_count",
        vendor="clockify",
        method="GET",
        status="error",
    )

    metrics.VENDOR_CALLS.answered("clockify", "GET", None, 0.2)

    assert (
        sample(
            "provisioner_vendor_request_duration_seconds_count",
            vendor="clockify",
            method="GET",
            status="error",
        )
        == before + 1
    )


class HeldConsumer:
    """What ``watch_consumer`` reads: lanes, and the deliveries held and granted."""

    def __init__(self, lanes: Lanes):
        self.lanes = lanes
        self.held, self.granted = 3, 8  # over every subscription


def test_gauges_read_the_lanes_running_and_waiting_at_scrape_time():
    lanes = Lanes(2, name="gauge-test")
    gate = threading.Event()
    started = threading.Semaphore(0)

    def blocked():
        started.release()
        gate.wait(10)

    try:
        metrics.watch_consumer(HeldConsumer(lanes))
        for key in ("a", "a", "b", "c"):  # a's second waits for its first; c for a lane
            lanes.submit(key, blocked)
        assert started.acquire(timeout=5) and started.acquire(timeout=5)

        assert sample("provisioner_lane_jobs_running") == 2
        assert sample("provisioner_lane_jobs_waiting") == 2
        assert sample("provisioner_deliveries_held") == 3
        assert sample("provisioner_prefetch_window") == 8
    finally:
        gate.set()
        assert lanes.wait_idle(10)
        lanes.close()
    assert sample("provisioner_lane_jobs_running") == 0
