"""The layout the code promises: the consumer runtime never imports the command line."""

import subprocess
import sys

RUNTIME = (
    "worker.bootstrap",
    "worker.consumer",
    "worker.processing",
    "worker.ingress.server",
    "handlers.dispatch",
    "adapters.store",
)


def test_the_runtime_imports_nothing_from_the_commands():
    probe = (
        "import importlib, sys\n"
        f"for name in {RUNTIME!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('worker.commands')))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert found == "[]"
