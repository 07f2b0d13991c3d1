"""The sample alert rules (docs/prometheus-alerts.yml) are valid Prometheus rules, every
``provisioner_`` metric they read is one the worker or the reconcile schedule exports, and
the reconcile alerts fire when they should (promtool's unit tests)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from worker import metrics

RULES = Path(__file__).resolve().parents[2] / "docs" / "prometheus-alerts.yml"
RECONCILE_ALERT_TESTS = Path(__file__).resolve().parent / "reconcile_alerts_test.yml"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def exported_names() -> set[str]:
    names = set()
    for family in [*metrics.WORKER.collect(), *metrics.RECONCILE.collect()]:
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


def test_promtool_accepts_the_rules():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (.ci/run installs it)"

    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_metric_the_rules_read_is_exported():
    used = set(re.findall(r"\bprovisioner_[a-z_]+", RULES.read_text()))

    assert used, "the rules read none of our metrics"
    assert used - exported_names() == set()


def test_the_reconcile_alerts_fire_after_three_intervals_without_a_success_and_not_before():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (.ci/run installs it)"

    tested = subprocess.run(
        [promtool, "test", "rules", str(RECONCILE_ALERT_TESTS)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert tested.returncode == 0, tested.stdout + tested.stderr
