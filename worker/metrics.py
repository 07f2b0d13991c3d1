"""The Prometheus metrics of the worker, the ingress and the reconcile schedule: every metric
object, in one place.

Three registries, one per process kind, so that ``/metrics`` of each shows only what that
process does (plus the standard ``process_*`` and ``python_*`` collectors). Labels are
low-cardinality by construction: an event type a sender made up is folded into ``other``,
a route nobody configured into ``other``, a vendor's status code is a number below 600.
Never an id, a URL or a secret.

Updating a metric takes a lock and an add: cheap enough for the I/O loop and the lanes.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from schemas.inbound import INBOUND_TYPES

WORKER = CollectorRegistry()
INGRESS = CollectorRegistry()
RECONCILE = CollectorRegistry()
for _registry in (WORKER, INGRESS, RECONCILE):
    ProcessCollector(registry=_registry)
    PlatformCollector(registry=_registry)
    GCCollector(registry=_registry)

UNREADABLE = "unreadable"  # a message that is not one of our events at all
OTHER = "other"


def event_type_label(event_type: str | None) -> str:
    """An inbound type of the contract, ``unreadable``, or ``other``: a sender cannot add
    label values by inventing types."""
    if event_type is None:
        return UNREADABLE
    return event_type if event_type in INBOUND_TYPES else OTHER


# -- events ---------------------------------------------------------------------------------
"""Events the worker took from its queue and what became of them.

``outcome`` of a finished event is the decision made before its ack (``worker.processing``):
``done`` (processed, outcomes published), ``duplicate`` (already processed: outcomes published
again), ``retried`` (a retry is scheduled), ``parked`` (a retry copy came back before the
vendor's reset and waits again, the vendor not called), ``dead_lettered``, ``rejected`` (even the
dead-letter copy could not be written; the broker dead-letters the original). A decision
the broker then refuses to take is counted again as refused (``worker.consumer``)."""
EVENTS_RECEIVED = Counter(
    "provisioner_events_received",
    "Deliveries taken from the work queue, by event type (redeliveries count again).",
    ["type"],
    registry=WORKER,
)
EVENTS_FINISHED = Counter(
    "provisioner_events_finished",
    "Deliveries decided, by event type and outcome.",
    ["type", "outcome"],
    registry=WORKER,
)
RETRIES_SCHEDULED = Counter(
    "provisioner_retries_scheduled",
    "Failed deliveries sent to a retry queue, by failure code.",
    ["code"],
    registry=WORKER,
)
DEAD_LETTERS = Counter(
    "provisioner_dead_letters",
    "Deliveries sent to the dead-letter queue, by failure code.",
    ["code"],
    registry=WORKER,
)
DECISIONS_REFUSED = Counter(
    "provisioner_decisions_refused",
    "Decisions the broker refused to take (a publish nacked or unroutable): the delivery "
    "went back to its queue and is worked again.",
    registry=WORKER,
)

# Decision names (``worker.processing``) -> outcome label.
OUTCOMES = {
    "processed": "done",
    "duplicate_republished": "duplicate",
    "retry_scheduled": "retried",
    "retry_parked": "parked",  # back to wait for a vendor's reset: no call, no attempt
    "dead_lettered": "dead_lettered",
    "rejected_to_dead_letter": "rejected",
}

# -- vendors and CRMs -----------------------------------------------------------------------
"""Every HTTP call to a timesheet tool or a CRM (``adapters.http``), one sample per request
sent (a tenacity re-send is a second request). ``status`` is the HTTP status, or ``error``
when no answer came (refused, timed out, reset). Throttles are the vendor's refusals for
rate (429, and Toggl's 402 quota); pacer waits are the time our own pacing held a request
back so that no throttle is earned."""
VENDOR_REQUEST_SECONDS = Histogram(
    "provisioner_vendor_request_duration_seconds",
    "Time of one HTTP request to a tool or CRM, by vendor, method and status.",
    ["vendor", "method", "status"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=WORKER,
)
VENDOR_THROTTLED = Counter(
    "provisioner_vendor_throttled",
    "Answers refusing a request for rate (429, or a spent quota), by vendor.",
    ["vendor"],
    registry=WORKER,
)
PACER_WAITS = Counter(
    "provisioner_pacer_waits",
    "Requests our client-side pacing held back before sending, by vendor.",
    ["vendor"],
    registry=WORKER,
)
PACER_WAIT_SECONDS = Counter(
    "provisioner_pacer_wait_seconds",
    "Seconds requests spent held back by our client-side pacing, by vendor.",
    ["vendor"],
    registry=WORKER,
)


class VendorCalls:
    """``adapters.http.HttpObserver`` on the metrics above."""

    def answered(self, vendor: str, method: str, status: int | None, seconds: float) -> None:
        label = str(status) if status is not None and 100 <= status < 600 else "error"
        VENDOR_REQUEST_SECONDS.labels(vendor, method, label).observe(seconds)

    def throttled(self, vendor: str) -> None:
        VENDOR_THROTTLED.labels(vendor).inc()

    def paced(self, vendor: str, seconds: float) -> None:
        PACER_WAITS.labels(vendor).inc()
        PACER_WAIT_SECONDS.labels(vendor).inc(seconds)


VENDOR_CALLS = VendorCalls()

"""Salesforce counts an org's API requests over a rolling 24 hours and says where it stands
in every REST answer (``Sforce-Limit-Info: api-usage=N/M``, ``adapters.salesforce``): the
last answer's figures, so ``used / allocation`` can be alerted on before the 403s come."""
CRM_DAILY_API_REQUESTS = Gauge(
    "provisioner_crm_daily_api_requests",
    "A CRM org's API requests in its rolling 24-hour window as its last answer told: "
    "count=used, and count=allocation (the org's limit).",
    ["crm", "count"],
    registry=WORKER,
)


class SalesforceLimits:
    """``adapters.salesforce.LimitObserver`` on the gauge above."""

    def api_usage(self, used: int, allocation: int) -> None:
        CRM_DAILY_API_REQUESTS.labels("salesforce", "used").set(used)
        CRM_DAILY_API_REQUESTS.labels("salesforce", "allocation").set(allocation)


SALESFORCE_LIMITS = SalesforceLimits()

# -- work held by the worker ----------------------------------------------------------------
"""What the worker holds right now, read at scrape time from the lanes (``worker.lanes``)
and the prefetch window (``worker.window``): nothing is updated on the hot path. And its
readiness as a number, for alerting on what ``/readyz`` says (``worker.probes``)."""
LANE_JOBS_RUNNING = Gauge(
    "provisioner_lane_jobs_running",
    "Deliveries a lane is working on now.",
    registry=WORKER,
)
LANE_JOBS_WAITING = Gauge(
    "provisioner_lane_jobs_waiting",
    "Deliveries handed to the lanes and not started (their project's lane is busy, or "
    "every lane is).",
    registry=WORKER,
)
DELIVERIES_HELD = Gauge(
    "provisioner_deliveries_held",
    "Deliveries the worker holds unacked (worked, waiting, or awaiting confirms).",
    registry=WORKER,
)
PREFETCH_WINDOW = Gauge(
    "provisioner_prefetch_window",
    "The prefetch granted by the current subscription (0: not subscribed).",
    registry=WORKER,
)

READY = Gauge(
    "provisioner_ready",
    "1 when /readyz answers 200 (broker connected, store reachable), else 0.",
    registry=WORKER,
)


def watch_consumer(consumer) -> None:
    """The gauges above read this consumer's lanes and window from now on."""
    LANE_JOBS_RUNNING.set_function(lambda: consumer.lanes.running)
    LANE_JOBS_WAITING.set_function(lambda: consumer.lanes.pending - consumer.lanes.running)
    DELIVERIES_HELD.set_function(lambda: consumer.held)
    PREFETCH_WINDOW.set_function(lambda: consumer.granted)


def event_received(event_type: str | None) -> None:
    EVENTS_RECEIVED.labels(event_type_label(event_type)).inc()


def event_finished(event_type: str | None, decision: str, fields: dict) -> None:
    """Counts one decision (``worker.processing.Decision``: its log name and fields)."""
    outcome = OUTCOMES.get(decision, OTHER)
    EVENTS_FINISHED.labels(event_type_label(event_type), outcome).inc()
    if outcome == "retried":
        RETRIES_SCHEDULED.labels(str(fields.get("code", OTHER))).inc()
    elif outcome == "dead_lettered":
        DEAD_LETTERS.labels(str(fields.get("code", OTHER))).inc()
    elif outcome == "rejected":
        DEAD_LETTERS.labels("rejected").inc()


# -- ingress --------------------------------------------------------------------------------
"""The webhook ingress (``worker.ingress``): requests by route (a route the ingress does not
serve is ``other``) and status, and the events it published and had confirmed."""
INGRESS_REQUESTS = Counter(
    "provisioner_ingress_requests",
    "HTTP requests answered by the ingress, by route and status.",
    ["route", "status"],
    registry=INGRESS,
)
INGRESS_SKIPPED = Counter(
    "provisioner_ingress_skipped",
    "CRM notifications the ingress answered 2xx without publishing, by CRM and why: "
    "not_a_deal (another object) or malformed (one event of a batch that cannot be read).",
    ["crm", "reason"],
    registry=INGRESS,
)
INGRESS_PUBLISHED = Counter(
    "provisioner_ingress_published",
    "Events the ingress published and the broker confirmed, by route.",
    ["route"],
    registry=INGRESS,
)


# -- the reconcile schedule -------------------------------------------------------------------
"""``provisioner crm reconcile --every`` (``worker.reconcile_schedule``): per CRM, when a sweep
last succeeded, what the sweeps read and published, and how each interval's sweep ended:
``ok``, ``failed`` (the CRM, the broker or the store said no; retried next interval) or
``skipped_locked`` (another replica was sweeping). The interval is a gauge so that an alert
can say "three intervals" without a constant of its own (docs/prometheus-alerts.yml)."""
SWEEP_OUTCOMES = ("ok", "failed", "skipped_locked")
RECONCILE_LAST_SUCCESS = Gauge(
    "provisioner_reconcile_last_success_timestamp_seconds",
    "When this process last finished a sweep of a CRM with every publish confirmed "
    "(Unix time), by CRM.",
    ["crm"],
    registry=RECONCILE,
)
RECONCILE_EXAMINED = Counter(
    "provisioner_reconcile_deals_examined",
    "Deals the CRM listed as changed in a sweep's window, by CRM.",
    ["crm"],
    registry=RECONCILE,
)
RECONCILE_PUBLISHED = Counter(
    "provisioner_reconcile_deals_published",
    "crm.deal_changed events a sweep published and the broker confirmed, by CRM.",
    ["crm"],
    registry=RECONCILE,
)
RECONCILE_SWEEPS = Counter(
    "provisioner_reconcile_sweeps",
    "Scheduled sweeps of a CRM by outcome: ok, failed, skipped_locked.",
    ["crm", "outcome"],
    registry=RECONCILE,
)
RECONCILE_INTERVAL = Gauge(
    "provisioner_reconcile_interval_seconds",
    "The schedule's interval (--every), in seconds.",
    registry=RECONCILE,
)


def sweep_ended(crm: str, outcome: str, *, examined: int = 0, published: int = 0, at=None):
    """Counts one scheduled sweep of ``crm``; ``at`` (Unix time) is its success."""
    RECONCILE_SWEEPS.labels(crm, outcome).inc()
    RECONCILE_EXAMINED.labels(crm).inc(examined)
    RECONCILE_PUBLISHED.labels(crm).inc(published)
    if outcome == "ok" and at is not None:
        RECONCILE_LAST_SUCCESS.labels(crm).set(at)
