"""The AsyncAPI document: generated from the code, committed up to date, valid for the official
parser, and every example in it one the worker (or a consumer of its events) accepts."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import ClassVar

import jsonschema
import pytest
import yaml

from schemas import examples
from schemas.envelope import CloudEvent
from schemas.errors import FailureCode, UnreadableCode
from schemas.inbound import INBOUND_TYPES, parse_inbound
from schemas.outbound import OUTBOUND_TYPES, Outbound
from worker.asyncapi import document
from worker.commands import main as cli
from worker.commands.asyncapi import REGENERATE, render

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"
VALIDATOR = ROOT / ".ci" / "asyncapi"
ALL_TYPES = [*INBOUND_TYPES, *OUTBOUND_TYPES]


def payload_validator(doc: dict, message: dict) -> jsonschema.Draft7Validator:
    # AsyncAPI schemas are a superset of JSON Schema draft 7; the references point into the
    # document's components, so they ride along at the root.
    schema = {**message["payload"], "components": {"schemas": doc["components"]["schemas"]}}
    return jsonschema.Draft7Validator(schema)


def test_the_committed_document_is_the_one_the_code_generates():
    assert COMMITTED.read_text(encoding="utf-8") == render("yaml"), (
        f"docs/asyncapi.yaml is stale: regenerate it with `{REGENERATE}`"
    )


def test_json_and_yaml_carry_the_same_document(tmp_path, capsys):
    assert cli.main(["asyncapi", "--format", "json"]) == 0
    from_json = json.loads(capsys.readouterr().out)
    assert cli.main(["asyncapi", "--output", str(tmp_path / "a.yaml")]) == 0
    assert yaml.safe_load((tmp_path / "a.yaml").read_text()) == from_json == document()


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_every_type_has_a_message_on_its_channel_with_an_example(event_type):
    doc = document()
    channel = "inbound" if event_type in INBOUND_TYPES else "events"
    assert event_type in doc["channels"][channel]["messages"]
    message = doc["components"]["messages"][event_type]
    assert message["bindings"]["amqp"]["messageType"] == event_type
    assert message["contentType"] == "application/cloudevents+json"
    assert message.get("examples"), f"add an example for {event_type} to schemas/examples.py"


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_each_example_validates_against_its_own_schema_and_model(event_type):
    doc = document()
    message = doc["components"]["messages"][event_type]
    [example] = message["examples"]
    event = example["payload"]

    payload_validator(doc, message).validate(event)
    if event_type in INBOUND_TYPES:  # the worker's own reading of a body
        parsed = parse_inbound(json.dumps(event).encode())
        assert parsed.type == event_type
    else:
        CloudEvent.model_validate(event)
        OUTBOUND_TYPES[event_type].model_validate(event["data"])


@pytest.mark.parametrize("event_type", ["deal.closed_won", "timesheet.provisioned"])
def test_the_schema_check_refuses_an_example_with_a_field_missing_or_of_another_type(event_type):
    doc = document()
    message = doc["components"]["messages"][event_type]
    validator = payload_validator(doc, message)
    event = copy.deepcopy(message["examples"][0]["payload"])
    other_type = {**event, "type": "timesheet.skipped"}
    no_project = {**event, "data": {k: v for k, v in event["data"].items() if k != "project_id"}}
    no_project["data"].pop("project", None)

    assert not validator.is_valid(other_type)
    assert not validator.is_valid(no_project)


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.json")), ids=lambda p: p.name)
def test_the_example_files_are_the_documents_examples(path):
    event = json.loads(path.read_text())
    if "specversion" not in event:  # project.json: a project for `rules check --project`
        return
    assert examples.INBOUND[event["type"]] == event["data"]


def test_a_type_added_to_the_outbound_registry_appears_without_touching_the_generator(
    monkeypatch,
):
    class DlqReplayed(Outbound):
        type: ClassVar[str] = "dlq.replayed"
        dead_letter_id: str

    monkeypatch.setitem(OUTBOUND_TYPES, DlqReplayed.type, DlqReplayed)
    monkeypatch.setitem(
        examples.OUTBOUND, "dlq.replayed", {"project_id": "P", "dead_letter_id": "d"}
    )

    doc = document()

    assert "dlq.replayed" in doc["channels"]["events"]["messages"]
    assert "DlqReplayed" in doc["components"]["schemas"]
    refs = [m["$ref"] for m in doc["operations"]["receiveEvents"]["messages"]]
    assert "#/channels/events/messages/dlq.replayed" in refs


def test_dead_letter_headers_name_every_code_the_worker_can_give():
    headers = document()["components"]["messages"]["deadLetter"]["headers"]
    codes = set(headers["properties"]["x-error-code"]["enum"])
    assert codes == {*map(str, FailureCode), *map(str, UnreadableCode)}
    assert {"x-error-message", "x-attempts", "x-first-failed-at"} <= set(headers["properties"])
    assert {"x-original-exchange", "x-original-routing-key"} <= set(headers["properties"])


def test_channels_are_the_topology_with_the_namespace_as_a_parameter():
    doc = document()
    addresses = {name: c["address"] for name, c in doc["channels"].items()}
    assert addresses == {
        "inbound": "{namespace}.inbound",
        "events": "{namespace}.events",
        "deadLetter": "{namespace}.dead-letter",
    }
    assert doc["components"]["parameters"]["namespace"]["default"] == "provisioning"
    exchange = doc["channels"]["inbound"]["bindings"]["amqp"]["exchange"]
    assert (exchange["type"], exchange["durable"]) == ("topic", True)


def validator_installed() -> Path:
    """The official parser, installed from the committed lock into the ignored node_modules
    the first time (what `.ci/run` does with `npm ci --prefix .ci/asyncapi`)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "the AsyncAPI check needs Node 20+ and npm on PATH"
    if not (VALIDATOR / "node_modules" / "@asyncapi" / "parser").is_dir():
        done = subprocess.run(
            [npm, "ci", "--prefix", str(VALIDATOR), "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, (
            f"`npm ci --prefix .ci/asyncapi` failed; run it by hand:\n{done.stderr[-2000:]}"
        )
    return Path(node)


def run_validator(path: Path) -> subprocess.CompletedProcess:
    node = validator_installed()
    return subprocess.run(
        [str(node), str(VALIDATOR / "validate.mjs"), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_official_parser_finds_no_error_in_the_document(tmp_path):
    path = tmp_path / "asyncapi.yaml"
    path.write_text(render("yaml"))

    done = run_validator(path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "\nError\t" not in "\n" + done.stdout


def test_the_official_parser_check_fails_on_a_broken_document(tmp_path):
    doc = document()
    doc["operations"]["sendEvents"]["action"] = "publish"  # AsyncAPI 2's word, not 3's
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(doc))

    done = run_validator(path)

    assert done.returncode == 1
    assert "Error\t" in done.stdout and "operations.sendEvents.action" in done.stdout
