"""The deployment files agree with each other and with the worker: what compose reads is in
.env.example, the live worker gets a rules file it accepts with Harvest alone, and the
image's defaults are the ones the README describes. (``docker-compose config`` validates the
file itself in .ci/run.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import yaml

from worker.commands.main import main

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = (ROOT / "docker-compose.yml").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()
ENV_EXAMPLE = (ROOT / ".env.example").read_text()


def test_every_variable_compose_reads_is_in_env_example_and_nothing_else_is():
    read = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE))
    listed = set(re.findall(r"^([A-Z0-9_]+)=", ENV_EXAMPLE, re.MULTILINE))

    assert read == listed


def test_the_live_worker_reads_a_mounted_rules_file_not_an_empty_string():
    assert "PROVISIONER_RULES: /etc/provisioner/rules.toml" in COMPOSE
    assert ":/etc/provisioner/rules.toml:ro" in COMPOSE
    assert "PROVISIONER_RULES: ${" not in COMPOSE


def test_the_default_rules_file_of_compose_needs_harvest_only(monkeypatch, capsys):
    default = re.search(r"\$\{PROVISIONER_RULES_FILE:-\./([^}]+)\}", COMPOSE).group(1)
    monkeypatch.setenv("HARVEST_ACCOUNT_ID", "123456")
    monkeypatch.setenv("HARVEST_ACCESS_TOKEN", "token")
    for name in ("TOGGL_API_TOKEN", "CLOCKIFY_API_KEY", "PROVISIONER_RULES"):
        monkeypatch.delenv(name, raising=False)

    assert main(["rules", "check", str(ROOT / default)]) == 0
    assert "note:" not in capsys.readouterr().out


def test_the_demo_fake_listens_beyond_its_own_container():
    assert '"fakes.harvest", "--host", "0.0.0.0"' in COMPOSE


def test_the_image_keeps_state_in_a_volume_it_may_write_and_checks_its_health():
    assert "PROVISIONER_DATABASE_URL=sqlite:////var/lib/provisioner/" in DOCKERFILE
    assert "install -d -o provisioner -g provisioner" in DOCKERFILE
    assert 'VOLUME ["/var/lib/provisioner"]' in DOCKERFILE
    assert "MALLOC_ARENA_MAX=2" in DOCKERFILE
    assert "PROVISIONER_METRICS_BIND=0.0.0.0:9464" in DOCKERFILE and "EXPOSE 9464" in DOCKERFILE
    assert "HEALTHCHECK" in DOCKERFILE and "/healthz" in DOCKERFILE
    assert "COPY tests" not in DOCKERFILE and "COPY bench" not in DOCKERFILE


def test_the_live_deployment_runs_the_reconcile_schedule_on_the_workers_store_and_budgets():
    service = re.search(r"\n  reconcile:\n(.*?)\n\n", COMPOSE, re.DOTALL).group(1)
    worker = re.search(r"\n  worker:\n(.*?)\n\n", COMPOSE, re.DOTALL).group(1)

    assert 'profiles: ["live"]' in service
    command = '["crm", "reconcile", "--every", "${PROVISIONER_RECONCILE_EVERY:-15m}"]'
    assert f"command: {command}" in service
    for dependency in ("rabbitmq", "postgres", "redis"):
        assert f"{dependency}: {{ condition: service_healthy }}" in service
    shared = ("PROVISIONER_DATABASE_URL", "PROVISIONER_PACING_URL", "PROVISIONER_NAMESPACE",
              "PROVISIONER_RULES", "HUBSPOT_ACCESS_TOKEN", "PIPEDRIVE_API_TOKEN",
              "SALESFORCE_CLIENT_ID", "SALESFORCE_ACCESS_TOKEN")  # fmt: skip
    for name in shared:
        line = re.search(rf"^\s+{name}: .*$", worker, re.MULTILINE).group(0)
        assert line in service, name


# -- metrics in the live profile: Prometheus and Grafana ---------------------------------------
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA_PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"


def compose_services() -> dict:
    return yaml.safe_load(COMPOSE)["services"]


def mounts(service: dict) -> dict[str, str]:
    """Host path (relative to the repository) -> path in the container, of bind mounts."""
    binds = [v.split(":") for v in service.get("volumes", []) if v.startswith("./")]
    return {host.removeprefix("./"): container for host, container, *_ in binds}


def test_the_live_prometheus_reads_the_repository_config_and_its_alert_rules_as_promtool_does():
    service = compose_services()["prometheus"]
    mounted = mounts(service)
    config = PurePosixPath(mounted["deploy/prometheus/prometheus.yml"])
    rules = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["rule_files"]

    assert service["profiles"] == ["live"]
    assert f"--config.file={config}" in service["command"]
    # The rule path is relative to the config: the same file in the container and on a checkout.
    in_container = {os.path.normpath(config.parent / rule) for rule in rules}
    on_checkout = {(PROMETHEUS_CONFIG.parent / rule).resolve() for rule in rules}
    assert in_container == {mounted["docs/prometheus-alerts.yml"]}
    assert on_checkout == {ROOT / "docs" / "prometheus-alerts.yml"}


def test_promtool_accepts_the_prometheus_config_with_its_rules():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (.ci/run installs it)"

    checked = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout


def test_prometheus_scrapes_every_live_process_on_the_port_it_serves_metrics_on():
    services = compose_services()
    jobs = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    targets = set()
    for job in jobs:
        for found in job.get("dns_sd_configs", []):
            targets |= {f"{name}:{found['port']}" for name in found["names"]}
        for static in job.get("static_configs", []):
            targets |= set(static["targets"])
    ingress_bind = services["ingress"]["environment"]["PROVISIONER_INGRESS_BIND"]

    for name in ("worker", "reconcile"):
        port = services[name]["environment"]["PROVISIONER_METRICS_BIND"].rsplit(":", 1)[1]
        assert f"{name}:{port}" in targets
    assert f"ingress:{ingress_bind.rsplit(':', 1)[1]}" in targets
    # Replicas are found by DNS, each one a target; a static name would reach one of them.
    assert {n for job in jobs for sd in job.get("dns_sd_configs", []) for n in sd["names"]} >= {
        "worker",
        "reconcile",
    }
    # The alert rules name the workers' job (ProvisionerNotReady: up{job="..."}).
    alerts_job = re.search(
        r'up\{job="([^"]+)"\}', (ROOT / "docs/prometheus-alerts.yml").read_text()
    )
    worker_job = next(j for j in jobs if "worker" in str(j.get("dns_sd_configs")))
    assert worker_job["job_name"] == alerts_job.group(1)


def test_the_live_grafana_is_provisioned_with_the_prometheus_and_the_dashboards_of_docs():
    services = compose_services()
    service = services["grafana"]
    mounted = mounts(service)
    provider = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards" / "provisioner.yml").read_text())
    source = yaml.safe_load((GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text())
    prometheus_port = services["prometheus"]["ports"][0].rsplit(":", 1)[1]

    assert service["profiles"] == ["live"] and services["prometheus"]["profiles"] == ["live"]
    assert mounted["deploy/grafana/provisioning"].startswith("/etc/grafana/provisioning")
    assert [p["options"]["path"] for p in provider["providers"]] == [mounted["docs/grafana"]]
    assert [s["url"] for s in source["datasources"]] == [f"http://prometheus:{prometheus_port}"]
    home = service["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{mounted['docs/grafana']}/provisioner.json"
    assert (ROOT / "docs" / "grafana" / "provisioner.json").is_file()
