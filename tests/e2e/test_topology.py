"""The topology on the real broker: whoever connects first declares it, idempotently, with
the safety arguments the failure handling relies on."""

from __future__ import annotations

import json

from tests import builders as b
from tests.e2e.bus import rabbitmqctl
from tests.e2e.test_resilience import run_cli
from worker.topology import DELIVERY_LIMIT


def queue_arguments(namespace: str) -> dict[str, str]:
    listing = rabbitmqctl("list_queues", "name", "arguments")
    return {
        line.split("\t")[0]: line.split("\t", 1)[1]
        for line in listing.splitlines()
        if line.startswith(f"{namespace}.")
    }


def test_publish_declares_everything_and_the_worker_agrees(
    namespace, worker_env, tmp_path, bus, start_worker
):
    event = tmp_path / "event.json"
    project = b.project()
    event.write_text(json.dumps(b.closed_won(project)))

    published = run_cli("publish", str(event), **worker_env)
    start_worker()  # declares the same names again: no PRECONDITION_FAILED

    assert published.returncode == 0, published.stderr
    assert bus.wait_for(1, project_id=project["id"])[0]["type"] == "project.activated"
    queues = queue_arguments(namespace)
    work = queues[f"{namespace}.worker"]
    for expected in (
        '"x-queue-type","quorum"',
        f'"x-delivery-limit",{DELIVERY_LIMIT}',
        '"x-dead-letter-strategy","at-least-once"',
        '"x-overflow","reject-publish"',
    ):
        assert expected in work
    retry = queues[f"{namespace}.retry.200ms"]
    assert '"x-message-ttl",200' in retry and '"x-dead-letter-strategy","at-least-once"' in retry
    # A classic queue, even on a broker whose default type is quorum: nothing expires or
    # meets a delivery limit, however often a person browses it.
    assert queues[f"{namespace}.dead-letter"] == '[{"x-queue-type","classic"}]'


def test_publish_refuses_a_file_that_is_not_a_cloudevent(worker_env, tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"type": "deal.closed_won"}))

    done = run_cli("publish", str(event), **worker_env)

    assert done.returncode == 1  # what the worker would dead-letter, never published
    assert "invalid_envelope: specversion" in done.stderr and done.stderr.count("\n") == 1
