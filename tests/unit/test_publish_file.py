"""``provisioner publish FILE`` refuses a file it cannot read as a CloudEvent with exit 2 and
one line, whatever the bytes: it never reaches the broker, and never ends in a traceback."""

from __future__ import annotations

import pytest

from schemas.json_body import MAX_DEPTH
from tests import builders as b
from worker.commands import main as cli


def huge_number_event() -> bytes:
    event = b.closed_won(b.project(b.offering(budget_hours="HUGE")))
    return b.body(event).replace(b'"HUGE"', b"9" * 6000)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"[" * 120_000, f"nested deeper than {MAX_DEPTH}"),
        (huge_number_event(), "too many digits"),
        (b'{"id": "\xed\xa0\x80"}', "not UTF-8"),
        (b.body(b.event("x\ud800", {})).replace(b"\\ud800", b"\\udc00"), "valid string"),
        (b.body(b.event("t" * 300, {})), "over 255 bytes"),
    ],
    ids=["nested", "huge-number", "not-utf8", "surrogate-type", "long-type"],
)
def test_a_file_that_is_no_event_exits_2_with_one_line(
    tmp_path, capsys, monkeypatch, content, reason
):
    monkeypatch.setenv("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/")  # never reached
    path = tmp_path / "event.json"
    path.write_bytes(content)

    status = cli.main(["publish", str(path)])

    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert err.count("\n") == 1 and reason in err and err.startswith(f"provisioner: {path}: ")
