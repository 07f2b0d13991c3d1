"""Makes the state stores of release 0.1.0 that the migration tests upgrade: run once, commit
the output. ``python tests/data/make_previous_release_fixtures.py`` from the repository root,
with PostgreSQL at TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test).

Release 0.1.0 (commit 0d8a446) is exported with ``git archive`` and run from that copy (its
dependencies are a subset of this release's, so this venv serves). It processes a few events
through its own Processor with an in-memory tool, and writes directly what events alone
leave no trace of at rest, so that every table has rows:

- ``state-0.1.0.db``: the SQLite file it made.
- ``state-0.1.0.pg.sql``: ``pg_dump --inserts`` of the PostgreSQL schema it made (schema and
  data as plain SQL), with the schema's name replaced by ``__SCHEMA__`` and without
  ``CREATE SCHEMA`` and psql's meta-commands, so a test loads it into a schema of its own.
- ``state-0.1.0.json``: what 0.1.0 read back from its store, for the tests to compare.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import uuid
from pathlib import Path

RELEASE = "0d8a446"
HERE = Path(__file__).resolve().parent
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TABLES = (
    "projects",
    "offering_links",
    "client_map",
    "provision_intents",
    "event_steps",
    "event_runs",
    "archive_intents",
)


def populate(url: str, manifest: Path) -> None:
    """Runs inside release 0.1.0's code (PYTHONPATH): fills its store at ``url``."""
    import json as _json

    import pika

    import adapters.store
    from adapters.store import SqlStore
    from handlers.ports import ClientMapping
    from handlers.rules import Rules
    from handlers.run import Deps
    from schemas.inbound import parse_inbound
    from tests import builders as b
    from tests.unit.memory_tool import MemoryTool
    from worker.messages import Delivery
    from worker.processing import Processor
    from worker.topology import Topology

    assert hasattr(adapters.store, "SCHEMA"), "not release 0.1.0's store"
    store = SqlStore.from_url(url)
    tool = MemoryTool("harvest")
    processor = Processor(
        Deps(store, {"harvest": tool}, Rules()), Topology("fx", (1.0,)), source="fx"
    )

    def send(event: dict, attempts_before: int = 0) -> None:
        body = _json.dumps(event).encode()
        props = pika.BasicProperties(headers={"x-attempts": attempts_before})
        decision = processor.process(
            Delivery(body, props, "fx.inbound", event["type"]), parse_inbound(body)
        )
        assert not [p for p in decision.publishes if not p.exchange], decision  # no retry

    acme = {"id": "C-acme", "name": "Acme Fixtures Ltd"}
    first = b.project(
        b.offering("Discovery", id="O-1a"),
        b.offering("Build", id="O-1b"),
        id="P-1",
        client=acme,
    )
    second = b.project(b.offering("Support", id="O-2a"), id="P-2", client=acme)
    third = b.project(
        b.offering("Audit", id="O-3a"), id="P-3", client={"id": "C-globex", "name": "Globex"}
    )
    send(b.closed_won(first, id="ev-1"))
    send(b.status_changed(first, "in_progress", id="ev-2"))  # provisions O-1a, O-1b
    send(b.closed_won(second, id="ev-3"))
    send(b.status_changed(second, "in_progress", id="ev-4"))
    send(b.status_changed(second, "on_hold", id="ev-5"), attempts_before=1)  # archived, rerun
    send(b.closed_won(third, id="ev-6"))  # a snapshot, no status yet
    # At rest only after a crash: an archive begun and not recorded, an event run twice.
    store.note_archive_intent("P-1", "O-1b", True)
    store.note_run(("crm-test", "ev-7"))
    store.map_client(ClientMapping("toggl", "C-globex", "tg-77", "Globex"))

    projects = {}
    for pid in ("P-1", "P-2", "P-3"):
        state = store.project(pid)
        projects[pid] = {
            "status": state.status,
            "active": state.active,
            "offerings": [o.id for o in state.project.offerings],
            "links": [
                [lk.offering_id, lk.tool, lk.timesheet_project_id, lk.archived, lk.unsettled]
                for lk in store.links(pid)
            ],
        }
    journal = store.journal(("crm-test", "ev-2"))
    conn = store._conn()
    counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
    store.close()
    assert all(counts.values()), counts
    manifest.write_text(
        _json.dumps(
            {
                "release": "0.1.0",
                "commit": RELEASE,
                "projects": projects,
                "client_map": [
                    [m.tool, m.crm_client_id, m.tool_client_id, m.crm_client_name]
                    for m in SqlStore.from_url(url).client_mappings()
                ],
                "journal_ev_2": {
                    "processed": journal.processed,
                    "steps": list(journal.steps),
                    "outcomes": [o.type for o in journal.outcomes],
                },
                "rows": counts,
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )


def run_release(tree: Path, url: str, manifest: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import {Path(__file__).stem} as m; "
    code += f"m.populate({url!r}, __import__('pathlib').Path({str(manifest)!r}))"
    subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True)


def dump(schema: str) -> str:
    text = subprocess.run(
        [
            "pg_dump",
            "--inserts",
            "--no-owner",
            "--no-privileges",
            f"--schema={schema}",
            POSTGRES_URL,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = [
        line
        for line in text.splitlines()
        if not line.startswith("\\") and not line.startswith(f"CREATE SCHEMA {schema};")
    ]
    return re.sub(rf"\b{schema}\b", "__SCHEMA__", "\n".join(lines)) + "\n"


def main() -> None:
    import psycopg

    repo = HERE.parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "release"
        tree.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", RELEASE], check=True, capture_output=True
        ).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")

        db = HERE / "state-0.1.0.db"
        db.unlink(missing_ok=True)
        run_release(tree, f"sqlite:///{db}", HERE / "state-0.1.0.json")

        schema = f"fixture_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            pg_manifest = Path(tmp) / "pg.json"
            run_release(tree, f"{POSTGRES_URL}?options=-csearch_path%3D{schema}", pg_manifest)
            (HERE / "state-0.1.0.pg.sql").write_text(dump(schema))
            # One manifest serves both: the release read back the same from either store.
            sqlite_read = json.loads((HERE / "state-0.1.0.json").read_text())
            assert json.loads(pg_manifest.read_text()) == sqlite_read
        finally:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
                admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
