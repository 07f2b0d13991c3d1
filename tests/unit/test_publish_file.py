"""``provisioner publish [--check] FILE`` judges a file exactly as the worker would judge the
body: what the worker would dead-letter is refused with exit 1 and the worker's own
``code: reason`` on one line, and never reaches the broker; what it accepts, ``--check``
passes. Whatever the bytes, never a traceback."""

from __future__ import annotations

import io
import json
import sys

import pytest
from hypothesis import HealthCheck, given, settings

from schemas.errors import Unreadable
from schemas.inbound import parse_inbound
from schemas.json_body import MAX_DEPTH
from tests import builders as b
from tests.strategies import bad_bodies, good_events
from tests.strategies import body as event_body
from worker.commands import main as cli

BOUNDED = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
# Port 1: nothing listens, so a publish that got as far as connecting would fail loudly
# with "broker refused or unreachable" instead of the refusal the tests expect.
NO_BROKER = "amqp://guest:guest@127.0.0.1:1/"


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setenv("AMQP_URL", NO_BROKER)


def run(capsys, *argv: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        status = cli.main(list(argv))
    finally:
        sys.stdin = saved
    out, err = capsys.readouterr()
    return status, out, err


def huge_number_event() -> bytes:
    event = b.closed_won(b.project(b.offering(budget_hours="HUGE")))
    return b.body(event).replace(b'"HUGE"', b"9" * 6000)


def without_project_id() -> bytes:
    event = b.closed_won(b.project())
    del event["data"]["project"]["id"]
    return b.body(event)


REFUSED = [
    (b"[" * 120_000, f"not_json: JSON nested deeper than {MAX_DEPTH}"),
    (huge_number_event(), "invalid_data: a number has too many digits"),
    (b'{"id": "\xed\xa0\x80"}', "not_json: body is not UTF-8"),
    (
        b.body(b.event("x\ud800", {})).replace(b"\\ud800", b"\\udc00"),
        "invalid_data: type: contains a lone surrogate",
    ),
    (b.body(b.event("t" * 300, {})), "unknown_type: unknown event type 'ttt"),
    (json.dumps({"type": "deal.closed_won"}).encode(), "invalid_envelope: specversion"),
    (without_project_id(), "invalid_data: data.project.id: Field required"),
    (b.body(b.event("deal.closed_won", {"project": 7})), "invalid_data: data.project"),
    (b.body(b.event("timesheet.teleported", {})), "unknown_type: unknown event type"),
    (b" " * (256 * 1024 + 1), "message_too_large"),
]
REFUSED_IDS = [
    "nested",
    "huge-number",
    "not-utf8",
    "surrogate-type",
    "long-type",
    "no-envelope",
    "no-project-id",
    "project-not-object",
    "unknown-type",
    "oversized",
]


@pytest.mark.parametrize(("content", "reason"), REFUSED, ids=REFUSED_IDS)
@pytest.mark.parametrize("check", [True, False], ids=["check", "publish"])
def test_what_the_worker_would_refuse_is_exit_1_with_its_reason_and_never_published(
    tmp_path, capsys, content, reason, check
):
    path = tmp_path / "event.json"
    path.write_bytes(content)

    status, out, err = run(capsys, "publish", *(["--check"] if check else []), str(path))

    assert (status, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith(f"provisioner: {path}: {reason}"), err


def test_the_reason_is_the_one_the_worker_dead_letters_with(tmp_path, capsys):
    body = without_project_id()
    with pytest.raises(Unreadable) as worker:
        parse_inbound(body)

    status, _, err = run(capsys, "publish", "--check", "-", stdin=body)

    assert status == 1
    assert err == f"provisioner: -: {worker.value.code}: {worker.value.message}\n"


@pytest.mark.parametrize("example", ["closed_won.json", "in_progress.json"])
def test_check_passes_the_examples_and_publishes_nothing(capsys, example):
    status, out, err = run(capsys, "publish", "--check", f"examples/{example}")

    assert (status, err) == (0, "")
    assert out.count("\n") == 1 and "valid " in out and "nothing published" in out


def test_an_id_too_long_for_amqp_is_refused_though_the_worker_would_read_it(tmp_path, capsys):
    path = tmp_path / "event.json"
    path.write_bytes(b.body(b.closed_won(b.project(), id="i" * 300)))

    status, _, err = run(capsys, "publish", "--check", str(path))

    assert status == 1 and "id: over 255 bytes, too long for AMQP" in err


def test_a_missing_file_is_a_usage_error(tmp_path, capsys):
    status, out, err = run(capsys, "publish", "--check", str(tmp_path / "nope.json"))

    assert (status, out) == (2, "")
    assert err == f"provisioner: {tmp_path / 'nope.json'}: No such file or directory\n"


@BOUNDED
@given(bad_bodies())
def test_every_body_the_worker_refuses_check_refuses(capsys, body):
    status, out, err = run(capsys, "publish", "--check", "-", stdin=body)

    assert (status, out) == (1, ""), f"accepted: {body[:200]!r}"
    assert err.count("\n") == 1 and err.startswith("provisioner: -: ")


@BOUNDED
@given(good_events())
def test_every_good_event_passes_check(capsys, event):
    status, out, err = run(capsys, "publish", "--check", "-", stdin=event_body(event))

    assert (status, err) == (0, "")
    assert out == f"-: valid {event['type']} {event['id']} (nothing published)\n"
