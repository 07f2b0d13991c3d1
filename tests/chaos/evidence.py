"""What the invariants read, gathered after a trial settled: the vendor fakes' state and the
worker's SQLite journal and links, reduced to the plain values of ``tests.chaos.invariants``.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from adapters.clockify import NOTE_TAG
from adapters.store import PROCESSED
from fakes.clockify import FakeClockify
from fakes.harvest import FakeHarvest
from fakes.toggl import FakeToggl
from tests.chaos.invariants import StoredLink, VendorClient, VendorProject

PIKA_CONNECT_FAILED = "Error in _create_connection()"
TOGGL_MARKER = re.compile(r"\[([^\]]+)\]$")  # the rules' name template ends in [P/O]
# Harvest's marker line in the notes (adapters.harvest.MARKER_LINE); older projects: the code.
HARVEST_MARKER = re.compile(r"^timesheet-provisioner: (\S+)$", re.MULTILINE)


def vendor_projects(harvest: FakeHarvest, toggl: FakeToggl, clockify: FakeClockify):
    with harvest.lock, toggl.lock, clockify.lock:
        found = [
            VendorProject("harvest", str(p["id"]), harvest_marker(p), not p["is_active"])
            for p in harvest.projects.values()
        ]
        for p in toggl.projects.values():
            marker = TOGGL_MARKER.search(p["name"])
            found.append(
                VendorProject("toggl", str(p["id"]), marker and marker[1], not p["active"])
            )
        for p in clockify.projects.values():
            note = p.get("note") or ""
            marker = note.removeprefix(NOTE_TAG) if note.startswith(NOTE_TAG) else None
            found.append(VendorProject("clockify", p["id"], marker, bool(p["archived"])))
    return found


def harvest_marker(project: dict) -> str | None:
    """The "project/offering" a Harvest project was made for, as the adapter marks it."""
    found = HARVEST_MARKER.search(project.get("notes") or "")
    return found[1] if found else project.get("code")


def vendor_clients(harvest: FakeHarvest, toggl: FakeToggl, clockify: FakeClockify):
    with harvest.lock, toggl.lock, clockify.lock:
        return [
            VendorClient(tool, str(c["id"]), c["name"])
            for tool, fake in (("harvest", harvest), ("toggl", toggl), ("clockify", clockify))
            for c in fake.clients.values()
        ]


def escaped_exceptions(log: Path) -> list[str]:
    """The last line of every traceback of an exception that escaped to pika or the
    interpreter: logged by pika or as ``uncaught_exception`` (``worker.logs``), or printed
    raw. Not the one pika logs itself before it raises a failed connection attempt to its
    caller (the worker handles that: broker_connect_failed)."""
    if not log.exists():
        return []
    found, in_traceback, last = [], False, ""
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            if escaped := _escaped_in_json(line):
                found.append(escaped)
        elif line.startswith("Traceback (most recent call last)"):
            in_traceback = not last.startswith(PIKA_CONNECT_FAILED)
        elif in_traceback and not line.startswith((" ", "\t")):
            found.append(line.strip()[:200])
            in_traceback = False
        last = line
    if in_traceback:
        found.append(last.strip()[:200])
    return found


def _escaped_in_json(line: str) -> str | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    traceback = entry.get("exception") if isinstance(entry, dict) else None
    if not isinstance(traceback, str) or not traceback.strip():
        return None
    by_pika = str(entry.get("logger", "")).startswith("pika")
    if by_pika or entry.get("event") == "uncaught_exception":
        return traceback.strip().splitlines()[-1].strip()[:200]
    return None


def journal(db: Path) -> tuple[set[tuple[str, str]], list[StoredLink]]:
    """(events the journal says are processed, the offering links) from the worker's file."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        processed = {
            (source, event_id)
            for source, event_id in conn.execute(
                "SELECT source, event_id FROM event_steps WHERE step = ?", (PROCESSED,)
            )
        }
        links = [
            StoredLink(pid, oid, tool, tsp, bool(archived))
            for pid, oid, tool, tsp, archived in conn.execute(
                "SELECT project_id, offering_id, tool, timesheet_project_id, archived "
                "FROM offering_links"
            )
        ]
    return processed, links


def most_runs(db: Path) -> int:
    """The most runs the worker began for one event on redeliveries (``event_runs``): how
    close a restart storm came to its ``worker_crashed`` limit. 0 where the table is not."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            return conn.execute("SELECT COALESCE(MAX(runs), 0) FROM event_runs").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def active_projects(db: Path) -> set[str]:
    """The projects the worker's store marks active (a Closed Won was applied)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return {pid for (pid,) in conn.execute("SELECT project_id FROM projects WHERE active")}
