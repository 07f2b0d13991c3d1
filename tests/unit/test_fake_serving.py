"""``python -m fakes.<vendor>``: the loopback unless told ``--host`` (compose's demo profile
needs the fake Harvest reachable from the worker's container)."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request

import pytest


def serve(*args: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "fakes.harvest", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    return process, process.stdout.readline().strip()


@pytest.mark.parametrize(("args", "host"), [((), "127.0.0.1"), (("--host", "0.0.0.0"), "0.0.0.0")])
def test_the_fake_listens_where_it_is_told_and_answers_there(args, host):
    process, line = serve(*args)
    try:
        assert line.startswith(f"harvest fake listening on http://{host}:")
        port = int(line.rsplit(":", 1)[1])
        with pytest.raises(urllib.error.HTTPError) as refused:  # no credentials: Harvest's 401
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/company", timeout=10)
        assert refused.value.code in (401, 403)
    finally:
        process.terminate()
        process.wait(10)
