"""The Grafana dashboard (docs/grafana/provisioner.json) reads only metrics the code exports,
has a panel for every area an operator watches, parses as PromQL, and uses the data source
that compose provisions (deploy/grafana/provisioning).

The metric names come from the registries of ``worker.metrics`` as prometheus_client exposes
them (a counter ``x`` as ``x_total``, a histogram as ``x_bucket``, ``x_sum``, ``x_count``), so
a renamed metric or a typo in a query fails here, not on an empty graph in production."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from worker import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "provisioner.json"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}
# Words of PromQL that look like metric names but are not.
KEYWORDS = {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "offset"}
KEYWORDS |= {"group_left", "group_right", "inf", "nan"}

# Each area the dashboard must show: the metrics one panel reads together, and the labels its
# queries group by (issue 22, point 3).
AREAS = {
    "events received by type": ({"provisioner_events_received_total"}, {"type"}),
    "events finished by type and outcome": (
        {"provisioner_events_finished_total"},
        {"type", "outcome"},
    ),
    "vendor latency by vendor": (
        {"provisioner_vendor_request_duration_seconds_bucket"},
        {"vendor"},
    ),
    "throttles and pacer waits": (
        {"provisioner_vendor_throttled_total", "provisioner_pacer_waits_total"},
        {"vendor"},
    ),
    "dead letters by code": ({"provisioner_dead_letters_total"}, {"code"}),
    "retries": ({"provisioner_retries_scheduled_total"}, {"code"}),
    "lanes running and waiting": (
        {"provisioner_lane_jobs_running", "provisioner_lane_jobs_waiting"},
        set(),
    ),
    "prefetch window and held deliveries": (
        {"provisioner_prefetch_window", "provisioner_deliveries_held"},
        set(),
    ),
    "ingress requests by route and status": (
        {"provisioner_ingress_requests_total"},
        {"route", "status"},
    ),
    "ingress skipped events": ({"provisioner_ingress_skipped_total"}, {"crm", "reason"}),
    "CRM daily API usage": ({"provisioner_crm_daily_api_requests"}, {"crm"}),
    "reconcile sweep age per CRM": (
        {"provisioner_reconcile_last_success_timestamp_seconds"},
        {"crm"},
    ),
    "reconcile deals examined and published": (
        {
            "provisioner_reconcile_deals_examined_total",
            "provisioner_reconcile_deals_published_total",
        },
        {"crm"},
    ),
}


def exported_names() -> set[str]:
    names = set()
    registries = (metrics.WORKER, metrics.INGRESS, metrics.RECONCILE)
    for family in (family for registry in registries for family in registry.collect()):
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


def panels(dashboard: dict) -> list[dict]:
    """Every panel, those inside collapsed rows too (Grafana nests them there)."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panels(panel) if panel.get("panels") else [])
    return found


def expressions(panel: dict) -> list[str]:
    return [target["expr"] for target in panel.get("targets", []) if target.get("expr")]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings, label matchers,
    ranges, grouping clauses, numbers, Grafana variables and function calls are taken out."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\boffset\s+\S+", "", expr)
    expr = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][\w:]*", expr):
        called = expr[match.end() :].lstrip().startswith("(")
        if not called and match.group(0) not in KEYWORDS:
            names.add(match.group(0))
    return names


def grouping_labels(expr: str) -> set[str]:
    clauses = re.findall(r"\bby\s*\(([^)]*)\)", expr)
    return {label.strip() for clause in clauses for label in clause.split(",") if label.strip()}


def unknown_names(dashboard: dict) -> dict[str, set[str]]:
    exported = exported_names()
    unknown = {}
    for panel in panels(dashboard):
        for expr in expressions(panel):
            if missing := metric_names(expr) - exported:
                unknown[f"{panel['title']}: {expr}"] = missing
    return unknown


def load() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_every_metric_the_dashboard_queries_is_one_the_code_exports():
    dashboard = load()

    assert [expr for panel in panels(dashboard) for expr in expressions(panel)]
    assert unknown_names(dashboard) == {}


def test_a_misspelt_metric_name_in_a_query_is_reported():
    dashboard = load()
    right, wrong = "provisioner_events_received_total", "provisioner_events_recieved_total"
    target = next(
        t for p in panels(dashboard) for t in p.get("targets", []) if right in t.get("expr", "")
    )
    target["expr"] = target["expr"].replace(right, wrong)

    assert set().union(*unknown_names(dashboard).values()) == {wrong}


def test_the_name_extraction_keeps_metrics_and_drops_functions_labels_and_variables():
    expr = (
        'time() - max by (crm) (foo_seconds{instance=~"$instance", a="b(c)"}) '
        "> on (job) group_left 3 * sum without (x) (rate(bar_total[$__rate_interval] offset 1h))"
        " or histogram_quantile(0.95, baz_bucket) and 1e3"
    )

    assert metric_names(expr) == {"foo_seconds", "bar_total", "baz_bucket"}


def test_the_dashboard_has_a_panel_for_each_area_an_operator_watches():
    dashboard = load()
    by_panel = [
        (metric_names(" ".join(expressions(p))), grouping_labels(" ".join(expressions(p))))
        for p in panels(dashboard)
    ]

    missing = [
        area
        for area, (names, labels) in AREAS.items()
        if not any(names <= read and labels <= grouped for read, grouped in by_panel)
    ]

    assert missing == []


def test_vendor_latency_is_shown_as_quantiles_and_sweep_age_as_time_since_success():
    exprs = [expr for panel in panels(load()) for expr in expressions(panel)]

    latency = [e for e in exprs if "provisioner_vendor_request_duration_seconds_bucket" in e]
    age = [e for e in exprs if "provisioner_reconcile_last_success_timestamp_seconds" in e]
    assert latency and all(e.startswith("histogram_quantile(") for e in latency)
    assert any(re.match(r"time\(\)\s*-", e) for e in age)


def test_every_query_is_valid_promql(tmp_path):
    """promtool parses each query as a recording rule, Grafana's variables filled in."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (.ci/run installs it)"
    variables = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}
    variables |= {"$instance": ".*"}
    rules = []
    for number, expr in enumerate(e for p in panels(load()) for e in expressions(p)):
        for variable, value in variables.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{number}", "expr": expr})
    rule_file = tmp_path / "dashboard.rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    checked = subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60
    )

    assert "$" not in rule_file.read_text(), "a Grafana variable the test does not fill in"
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_panel_reads_the_provisioned_prometheus_through_the_datasource_variable():
    dashboard = load()
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")

    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    assert variable["current"]["value"] == provisioned["uid"]
    assert provisioned["type"] == "prometheus"
    for panel in (p for p in panels(dashboard) if p["type"] != "row"):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])


def test_the_salesforce_usage_and_sweep_age_queries_compute_what_their_panels_say(tmp_path):
    """promtool evaluates the two queries that join series, on samples of two replicas."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (.ci/run installs it)"
    exprs = [e.replace("$instance", ".*") for p in panels(load()) for e in expressions(p)]
    usage = next(e for e in exprs if 'count="used"' in e)
    age = next(e for e in exprs if e.startswith("time()") and "last_success" in e)
    api = "provisioner_crm_daily_api_requests"
    swept = "provisioner_reconcile_last_success_timestamp_seconds"
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'{api}{{crm="salesforce",count="used",instance="w1"}}',
                     "values": "4000x10"},
                    {"series": f'{api}{{crm="salesforce",count="allocation",instance="w1"}}',
                     "values": "100000x10"},
                    # Two reconcile replicas: the age is from the later success of either.
                    {"series": f'{swept}{{crm="hubspot",instance="r1"}}', "values": "0x10"},
                    {"series": f'{swept}{{crm="hubspot",instance="r2"}}', "values": "120x10"},
                ],
                "promql_expr_test": [
                    {"expr": usage, "eval_time": "5m",
                     "exp_samples": [{"labels": '{crm="salesforce"}', "value": 0.04}]},
                    {"expr": age, "eval_time": "10m",
                     "exp_samples": [{"labels": '{crm="hubspot"}', "value": 480}]},
                ],
            }
        ],
    }  # fmt: skip
    test_file = tmp_path / "dashboard_test.yml"
    test_file.write_text(yaml.safe_dump(tests))

    tested = subprocess.run(
        [promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60
    )

    assert tested.returncode == 0, tested.stdout + tested.stderr
