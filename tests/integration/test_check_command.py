"""``provisioner check`` against the in-repo fakes over HTTP and the real broker and store:
what it prints, its exit status, and that no configured secret is ever shown."""

from __future__ import annotations

import json
import uuid

import pytest

from fakes.harvest import FakeHarvest
from fakes.hubspot import FakeHubSpot
from fakes.pipedrive import FakePipedrive
from fakes.salesforce import FakeSalesforce
from worker.commands.main import main

CLIENT_SECRET = "sf-client-secret-" + uuid.uuid4().hex
HARVEST_TOKEN = "harvest-" + uuid.uuid4().hex
HUBSPOT_TOKEN = "pat-na1-" + uuid.uuid4().hex
PIPEDRIVE_TOKEN = "pd-" + uuid.uuid4().hex
WEBHOOK_TOKEN = "sf-webhook-" + uuid.uuid4().hex
AMQP_PASSWORD = "guest"  # the test broker's; shown as *** all the same


@pytest.fixture
def stack(tmp_path, monkeypatch, restore_logging):
    """A Harvest account and the three CRMs, their settings in the environment, and a rules
    file whose stage map and task the fakes have."""
    harvest = FakeHarvest(token=HARVEST_TOKEN).start()
    harvest.add_task("Design")
    hubspot = FakeHubSpot(token=HUBSPOT_TOKEN).start()
    pipedrive = FakePipedrive(token=PIPEDRIVE_TOKEN).start()
    salesforce = FakeSalesforce().start()
    salesforce.add_connected_app("check-app", CLIENT_SECRET, run_as_user=True)
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[harvest]\ntasks = ["Design"]\n'
        '[crm.hubspot.stages]\nclosedwon = "in_progress"\n'
        '[crm.pipedrive.stages]\n"3" = "in_progress"\n'
        '[crm.salesforce.stages]\n"Negotiation/Review" = "in_progress"\n'
    )
    env = {
        "AMQP_URL": f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:5672/",
        "PROVISIONER_NAMESPACE": f"check-{uuid.uuid4().hex[:8]}",
        "PROVISIONER_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "PROVISIONER_RULES": str(rules),
        "HARVEST_ACCOUNT_ID": harvest.account_id,
        "HARVEST_ACCESS_TOKEN": HARVEST_TOKEN,
        "HARVEST_BASE_URL": f"{harvest.origin}/v2",
        "HUBSPOT_ACCESS_TOKEN": HUBSPOT_TOKEN,
        "HUBSPOT_BASE_URL": hubspot.origin,
        "PIPEDRIVE_API_TOKEN": PIPEDRIVE_TOKEN,
        "PIPEDRIVE_BASE_URL": pipedrive.origin,
        "SALESFORCE_CLIENT_ID": "check-app",
        "SALESFORCE_CLIENT_SECRET": CLIENT_SECRET,
        "SALESFORCE_LOGIN_URL": salesforce.origin,
        "SALESFORCE_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "SALESFORCE_ORGANIZATION_ID": "00D000000000001",
        "PROVISIONER_PUBLIC_URL": "https://hooks.example.com",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield {"harvest": harvest, "hubspot": hubspot, "pipedrive": pipedrive,
           "salesforce": salesforce, "env": env}  # fmt: skip
    for fake in (harvest, hubspot, pipedrive, salesforce):
        fake.stop()


def run(capsys, *args: str) -> tuple[int, list[str], str]:
    status = main(["check", *args])
    out, err = capsys.readouterr()
    for secret in (CLIENT_SECRET, HARVEST_TOKEN, HUBSPOT_TOKEN, PIPEDRIVE_TOKEN, WEBHOOK_TOKEN):
        assert secret not in out and secret not in err
    return status, out.splitlines(), err


def failing(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("FAIL")]


def test_everything_configured_and_working_passes_with_exit_0(stack, capsys):
    status, lines, err = run(capsys)
    assert "Channel.Close" not in err  # the passive declares' 404s are answers, not noise
    assert failing(lines) == [], lines
    assert status == 0
    shown = "\n".join(lines)
    for expected in (
        "ok   broker: connected",
        "ok   harvest: task 'Design'",
        "ok   hubspot: reads line items (crm.objects.line_items.read)",
        "ok   hubspot: stage 'closedwon'",
        "ok   pipedrive: stage '3'",
        "ok   salesforce: reads OpportunityLineItem",
        "ok   salesforce: stage 'Negotiation/Review'",
        "ok   ingress: PROVISIONER_PUBLIC_URL https://hooks.example.com",
    ):
        assert expected in shown, shown
    # A fresh namespace: the topology is not there yet, which the worker mends at start.
    assert any(line.startswith("warn broker: queue") for line in lines)


def test_a_wrong_token_fails_naming_its_setting(stack, capsys, monkeypatch):
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-na1-not-the-token")
    status, lines, _ = run(capsys)
    assert status == 1
    (line,) = failing(lines)
    assert line.startswith("FAIL hubspot: the token is refused (401)")
    assert "HUBSPOT_ACCESS_TOKEN" in line


def test_a_missing_scope_fails_naming_the_scope(stack, capsys):
    stack["hubspot"].refuse_scope("crm.objects.line_items.read")
    status, lines, _ = run(capsys)
    assert status == 1
    (line,) = failing(lines)
    assert "cannot read line items (403" in line and "crm.objects.line_items.read" in line


def test_a_pipedrive_resource_the_user_may_not_read_fails(stack, capsys):
    stack["pipedrive"].forbid("organizations")
    status, lines, _ = run(capsys)
    assert status == 1
    (line,) = failing(lines)
    assert line.startswith("FAIL pipedrive: cannot read organizations (403)")


def test_a_salesforce_object_the_user_cannot_see_fails_naming_it(stack, capsys):
    stack["salesforce"].hide("OpportunityLineItem")
    status, lines, _ = run(capsys)
    assert status == 1
    (line,) = failing(lines)
    assert "cannot read OpportunityLineItem" in line and "Read on OpportunityLineItem" in line


def test_a_stage_the_crm_does_not_have_fails_naming_the_rules_entry(stack, capsys, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text(rules.read_text().replace("closedwon", '"9999"'))
    status, lines, _ = run(capsys)
    assert status == 1
    (line,) = failing(lines)
    assert "stage '9999' ([crm.hubspot.stages] in PROVISIONER_RULES) is in no pipeline" in line


def test_a_harvest_task_that_does_not_exist_fails_naming_the_rules_entry(stack, capsys, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text(rules.read_text().replace('"Design"', '"Desgin"'))
    status, lines, _ = run(capsys)
    assert status == 1
    (line,) = failing(lines)
    assert "task 'Desgin' ([harvest] tasks in PROVISIONER_RULES) does not exist" in line


def test_a_work_queue_of_another_type_fails_naming_it(stack, capsys):
    import pika

    queue = f"{stack['env']['PROVISIONER_NAMESPACE']}.worker"
    connection = pika.BlockingConnection(pika.URLParameters(stack["env"]["AMQP_URL"]))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "classic"})
    try:
        status, lines, _ = run(capsys)
    finally:
        channel.queue_delete(queue)
        connection.close()
    assert status == 1
    (line,) = failing(lines)
    assert line.startswith(f"FAIL broker: queue {queue} is not a durable quorum queue")


def test_json_is_one_object_a_line_with_no_secret(stack, capsys, monkeypatch):
    monkeypatch.setenv("PIPEDRIVE_API_TOKEN", "pd-wrong")
    status, lines, _ = run(capsys, "--json")
    rows = [json.loads(line) for line in lines]
    assert status == 1
    assert {tuple(sorted(r)) for r in rows} == {("area", "fix", "status", "what")}
    (bad,) = [r for r in rows if r["status"] == "FAIL"]
    assert bad["area"] == "pipedrive" and "PIPEDRIVE_API_TOKEN" in bad["fix"]


def test_a_log_line_goes_to_stderr_and_stdout_holds_only_the_report(stack, capsys, monkeypatch):
    # A static Salesforce token makes the worker's wiring warn that it will expire.
    for name in ("SALESFORCE_CLIENT_ID", "SALESFORCE_CLIENT_SECRET", "SALESFORCE_LOGIN_URL"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("SALESFORCE_ACCESS_TOKEN", stack["salesforce"].token)
    monkeypatch.setenv("SALESFORCE_INSTANCE_URL", stack["salesforce"].origin)
    monkeypatch.setenv("LOG_FORMAT", "json")

    status, lines, err = run(capsys, "--json")

    assert status == 0, lines
    assert all(json.loads(line)["area"] for line in lines)  # every stdout line is a check
    assert "salesforce_static_token" in err


def test_settings_it_cannot_use_exit_2_as_run_would(stack, capsys, monkeypatch):
    monkeypatch.setenv("PROVISIONER_CONCURRENCY", "0")
    status, lines, err = run(capsys)
    assert status == 2 and lines == []
    assert err.startswith("provisioner: PROVISIONER_CONCURRENCY")


def test_the_association_reads_are_tried_on_a_deal_there_is(stack, capsys):
    hubspot = stack["hubspot"]
    hubspot.add_deal("Any", "closedwon", company=hubspot.add_company("Acme"))
    status, lines, _ = run(capsys)
    assert status == 0
    assert "ok   hubspot: reads a deal's companies (crm.objects.companies.read)" in lines
    assert "ok   hubspot: reads a deal's line items (crm.objects.line_items.read)" in lines


def test_an_association_the_app_may_not_read_fails_naming_the_scope(stack, capsys):
    hubspot = stack["hubspot"]
    hubspot.add_deal("Any", "closedwon", company=hubspot.add_company("Acme"))
    hubspot.refuse_scope("crm.objects.companies.read")
    status, lines, _ = run(capsys)
    assert status == 1
    assert [line.split(" (")[0] for line in failing(lines)] == [
        "FAIL hubspot: cannot read companies",
        "FAIL hubspot: cannot read a deal's companies",
    ]


def test_without_a_deal_the_association_reads_are_a_warning_not_a_pass(stack, capsys):
    status, lines, _ = run(capsys)
    assert status == 0
    assert "warn hubspot: no deal to try reading a deal's companies with" in lines
