"""The deployment files agree with each other and with the worker: what compose reads is in
.env.example, the live worker gets a rules file it accepts with Harvest alone, and the
image's defaults are the ones the README describes. (``docker-compose config`` validates the
file itself in .ci/run.)"""

from __future__ import annotations

import re
from pathlib import Path

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
