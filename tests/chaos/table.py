"""The run's table: trials, faults of each kind, events, each invariant's failures, dead
letters by code; then every failure in detail, with the trial's seed to re-run it."""

from __future__ import annotations

from collections import Counter

from tests.chaos.trial import TrialResult
from worker.processing import RUN_LIMIT

FAULTS = [
    ("vendor 5xx", "server_error"),
    ("lost answers (done, then 504)", "lost_answer"),
    ("late answers (done, after the timeout)", "late_answer"),
    ("429 bursts", "throttle_burst"),
    ("SIGKILLs", "sigkill"),
    ("connection closes", "connection_close"),
    ("broker restarts", "broker_restart"),
]
EVENTS = [("good", "good"), ("bad bodies", "bad"), ("duplicates", "copies")]
INVARIANTS = [
    ("lost", ("lost",)),
    ("duplicated (vendor projects/clients twice, relinked)",
     ("duplicate_project", "duplicate_client", "relinked")),
    ("id changes", ("id_changed",)),
    ("reasonless dead letters", ("reasonless",)),
    ("dead-lettered by the broker (delivery limit, reject)", ("broker_dead_letter",)),
    ("bad bodies not refused on first delivery", ("bad_body",)),
    ("dead-lettered with a code no input here deserves", ("unexpected_code",)),
    ("dlq cannot read a dead letter", ("dlq_crash",)),
    ("links that disagree with the tool", ("dangling_link", "archive_mismatch")),
    ("exceptions escaped to pika", ("escaped_exception",)),
    ("worker exited, died or did not drain", ("worker_exited", "worker_dead", "not_drained")),
    ("trial errors, faults not done", ("trial_error", "fault_not_done")),
    ("should be provisioned, is not (no link, not live)", ("not_provisioned", "not_live")),
    ("should be active, is not", ("not_activated",)),
    ("linked, though nothing asked for it", ("unwanted_link",)),
]  # fmt: skip
LOST_WEBHOOKS = [
    ("deals (won, then moved to a delivery stage)", "deals"),
    ("  their offerings (line items)", "offerings"),
    ("webhooks delivered while the ingress was up", "webhooks_delivered"),
    ("webhooks lost (all tries refused in the retry window)", "webhooks_lost"),
    ("  tries refused (first try and retries)", "webhook_tries_refused"),
    ("  deals only those webhooks told", "lost_deals"),
    ("  their offerings linked before the sweep", "lost_linked_before_sweep"),
    ("events one crm reconcile published", "swept"),
    ("lost deals' offerings that should be live", "lost_expected"),
    ("  live after the sweep and the settle time", "lost_provisioned"),
]
LIVENESS = [
    ("offerings that should be live", "live_expected"),
    ("  live after the settle time", "live"),
    ("  not live, excused by a legitimate dead letter", "live_excused"),
]


def render(results: list[TrialResult], seed: int, events: int) -> str:
    counts: Counter = Counter()
    codes: Counter = Counter()
    kinds: Counter = Counter()
    for r in results:
        counts.update(r.counts)
        codes.update(r.dead_letters)
        kinds.update(f.kind for f in r.failures)
    failed = sum(1 for r in results if r.failures)
    lines = [f"chaos: seed {seed}, {events} events a trial", ""]
    lines.append(_row("trials", len(results), f"{failed} failed"))
    lines.append("faults injected")
    lines += [_row(f"  {label}", counts[key]) for label, key in FAULTS]
    lines.append("events published")
    lines += [_row(f"  {label}", counts[key]) for label, key in EVENTS]
    lines.append("invariants (failures)")
    lines += [_row(f"  {label}", sum(kinds[k] for k in keys)) for label, keys in INVARIANTS]
    lines.append("liveness (invariant e)")
    lines += [_row(f"  {label}", counts[key]) for label, key in LIVENESS]
    if any(r.kind == "lost webhooks" for r in results):
        lines.append("lost-webhooks trials")
        lines += [_row(f"  {label}", counts[key]) for label, key in LOST_WEBHOOKS]
    most = max((r.most_runs for r in results), default=0)
    lines.append("margins")
    lines.append(_row(f"  most runs of one event (worker_crashed past {RUN_LIMIT})", most))
    lines.append("dead letters by code")
    lines += [_row(f"  {code}", n) for code, n in codes.most_common()] or ["  (none)"]
    for r in results:
        if r.failures:
            lines += ["", f"trial seed {r.seed} ({r.seconds:.0f}s) failed; files: {r.directory}"]
            lines += [f"  {f.kind}: {f.detail}" for f in r.failures]
    return "\n".join(lines)


def trial_line(index: int, r: TrialResult) -> str:
    verdict = f"{len(r.failures)} failures" if r.failures else "ok"
    faults = sum(r.counts[key] for _, key in FAULTS)
    live = f"live {r.counts['live']}/{r.counts['live_expected']}"
    if r.counts["live_excused"]:
        live += f" ({r.counts['live_excused']} excused)"
    return (
        f"trial {index + 1} seed {r.seed} ({r.kind}): {verdict}, {faults} faults, {live}, "
        f"{r.seconds:.0f}s"
    )


def _row(label: str, value: int, note: str = "") -> str:
    return f"{label:<58}{value:>7}" + (f"  ({note})" if note else "")
