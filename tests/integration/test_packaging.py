"""The wheel as pip builds it: the product packages and nothing else (no tests, no
benchmarks), the fakes included (the demo and compose run them), the licence and the
console script. Built from a copy of the tree, so that no stale build/ directory counts."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = {"schemas", "handlers", "adapters", "worker", "fakes"}
NOT_COPIED = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__")


def test_the_wheel_holds_the_product_packages_and_nothing_else(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=NOT_COPIED)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path, source]
    subprocess.run(command, check=True, capture_output=True, timeout=600)

    [wheel] = tmp_path.glob("timesheet_provisioner-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
    tops = {n.split("/")[0] for n in names} - {info}

    assert tops == PRODUCT
    assert not [n for n in names if "/tests/" in n or n.startswith(("tests/", "bench/"))]
    assert {"fakes/harvest.py", "fakes/base.py", "worker/commands/demo.py"} <= set(names)
    assert any(n.startswith(f"{info}/licenses/LICENSE") for n in names)
    entry_points = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    assert "provisioner = worker.commands.main:main" in entry_points
