"""Versioned migrations of the state store, on real SQLite files and a real PostgreSQL: a
database made by release 0.1.0 upgrades without loss, workers starting at once migrate
once, and a newer release's database is refused."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from adapters import migrate
from adapters.sql import Sqlite, dialect_for
from adapters.store import SqlStore
from tests import builders as b
from tests.unit.world import World

DATA = Path(__file__).resolve().parent.parent / "data"
RELEASE_0_1 = json.loads((DATA / "state-0.1.0.json").read_text())
TABLES = sorted(RELEASE_0_1["rows"])
# This release's migrations (the same on both databases), and one a newer release adds.
KNOWN = [m.id for m in migrate.known_migrations(Sqlite("unused.db"))]
LATEST = migrate.version_of(KNOWN[-1])
NEWER = f"{int(LATEST) + 1:04d}"
PROBE = f"{NEWER}_probe"
# A 0.1.0 database: recorded at 0001 without running it, every later one applied.
BASELINED = [("0001_initial", "mark"), *((m, "apply") for m in KNOWN[1:])]


def schema_of(url: str) -> str:
    return re.search(r"search_path%3D(\w+)", url).group(1)


@pytest.fixture
def fresh_url(request, tmp_path):
    """An empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture
def release_0_1_url(request, tmp_path, postgres_url):
    """A database as release 0.1.0 left it: tests/data, made by its own code."""
    if request.param == "sqlite":
        shutil.copy(DATA / "state-0.1.0.db", tmp_path / "state.db")
        return f"sqlite:///{tmp_path / 'state.db'}"
    url = request.getfixturevalue("pg_schema_url")
    dump = (DATA / "state-0.1.0.pg.sql").read_text().replace("__SCHEMA__", schema_of(url))
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(dump)
    return url


def rows(url: str, sql: str) -> list[tuple]:
    dialect = dialect_for(url)
    conn = dialect.connect()
    try:
        return [tuple(r) for r in conn.execute(sql).fetchall()]
    finally:
        conn.close()
        dialect.close()


def counts(url: str) -> dict[str, int]:
    return {t: rows(url, f"SELECT COUNT(*) FROM {t}")[0][0] for t in TABLES}


def bookkeeping(url: str) -> list[tuple[str, str]]:
    """(migration, operation) of each entry in yoyo's log, oldest first."""
    return rows(url, "SELECT migration_id, operation FROM _yoyo_log ORDER BY created_at_utc")


@pytest.mark.parametrize("release_0_1_url", ["sqlite", "postgresql"], indirect=True)
def test_a_release_0_1_database_is_baselined_and_keeps_every_row(release_0_1_url):
    url = release_0_1_url
    before = migrate.status(dialect_for(url))
    assert (before.current, before.unversioned) == (None, True)

    store = SqlStore.from_url(url)
    try:
        for project_id, expected in RELEASE_0_1["projects"].items():
            state = store.project(project_id)
            assert (state.status, state.active) == (expected["status"], expected["active"])
            assert [o.id for o in state.project.offerings] == expected["offerings"]
            links = [
                [lk.offering_id, lk.tool, lk.timesheet_project_id, lk.archived, lk.unsettled]
                for lk in store.links(project_id)
            ]
            assert links == expected["links"]
        mappings = [
            [m.tool, m.crm_client_id, m.tool_client_id, m.crm_client_name]
            for m in store.client_mappings()
        ]
        assert mappings == RELEASE_0_1["client_map"]
        journal = store.journal(("crm-test", "ev-2"))
        assert journal.processed and list(journal.steps) == RELEASE_0_1["journal_ev_2"]["steps"]
        assert [o.type for o in journal.outcomes] == RELEASE_0_1["journal_ev_2"]["outcomes"]
        assert store.provision_started_at("P-1", "O-1a", "harvest") is not None
    finally:
        store.close()

    assert counts(url) == RELEASE_0_1["rows"]
    after = migrate.status(dialect_for(url))
    assert (after.current, after.pending, after.unversioned) == (LATEST, (), False)
    assert sorted(rows(url, "SELECT migration_id FROM _yoyo_migration")) == [(m,) for m in KNOWN]
    assert bookkeeping(url) == BASELINED  # 0001 recorded, not run again


@pytest.mark.parametrize("release_0_1_url", ["sqlite", "postgresql"], indirect=True)
def test_the_worker_carries_on_with_a_release_0_1_database(release_0_1_url, tmp_path):
    world = World(tmp_path, url=release_0_1_url)
    for name in ("Initech", "Umbrella", "Hooli"):  # the tool's own ids pass those on record
        world.tool.add_client(name)
    linked = {"id": "P-1"}

    again = world.send(b.provision_requested(linked, "O-1a"))
    fresh = world.send(b.provision_requested({"id": "P-3"}, "O-3a"))

    [skipped] = again.of("timesheet.skipped")
    assert (skipped["offering_id"], skipped["reason"]) == ("O-1a", "already_linked")
    [provisioned] = fresh.of("timesheet.provisioned")
    assert provisioned["offering_id"] == "O-3a"
    assert world.store.link("P-3", "O-3a") is not None
    assert world.tool.projects and not again.copy and not fresh.copy
    world.store.close()


@pytest.mark.parametrize("release_0_1_url", ["sqlite", "postgresql"], indirect=True)
def test_later_migrations_apply_after_the_baseline_and_older_code_refuses(
    release_0_1_url, tmp_path
):
    url = release_0_1_url
    dialect = dialect_for(url)
    newer = tmp_path / "newer"
    shutil.copytree(migrate.MIGRATIONS / dialect.name, newer)
    (newer / f"{PROBE}.sql").write_text("ALTER TABLE projects ADD COLUMN probe TEXT;\n")

    versions = migrate.upgrade(dialect, source=newer)

    assert (versions.current, versions.latest, versions.pending) == (NEWER, NEWER, ())
    assert bookkeeping(url) == [*BASELINED, (PROBE, "apply")]
    assert rows(url, "SELECT COUNT(probe) FROM projects") == [(0,)]
    assert counts(url) == RELEASE_0_1["rows"]
    with pytest.raises(migrate.DatabaseTooNew, match=rf"version {NEWER}.*latest {LATEST}.*{PROBE}"):
        SqlStore.from_url(url)
    assert bookkeeping(url) == [*BASELINED, (PROBE, "apply")]


@pytest.mark.parametrize("release_0_1_url", ["sqlite", "postgresql"], indirect=True)
def test_a_migration_killed_mid_way_does_not_block_the_next_start(release_0_1_url):
    backend = migrate._backend(dialect_for(release_0_1_url))
    backend.init_database()
    with backend.transaction():  # yoyo's lock row, as a process killed while holding it left it
        backend.execute("INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, NULL, 999999)")
    backend.connection.close()

    SqlStore.from_url(release_0_1_url).close()  # yoyo alone would wait 10 s, then refuse

    assert bookkeeping(release_0_1_url) == BASELINED
    assert rows(release_0_1_url, "SELECT COUNT(*) FROM yoyo_lock") == [(0,)]


def open_at_once(url: str, barrier, results) -> None:
    barrier.wait(timeout=120)
    try:
        SqlStore.from_url(url).close()
        results.put("ok")
    except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails on it
        results.put(repr(exc))


@pytest.mark.parametrize(
    ("fresh_url", "workers"), [("sqlite", 4), ("postgresql", 6)], indirect=["fresh_url"]
)
def test_workers_starting_at_once_migrate_once(fresh_url, workers):
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(workers), spawn.Queue()
    processes = [
        spawn.Process(target=open_at_once, args=(fresh_url, barrier, results))
        for _ in range(workers)
    ]
    for p in processes:
        p.start()
    outcomes = [results.get(timeout=180) for _ in processes]
    for p in processes:
        p.join(timeout=60)

    assert outcomes == ["ok"] * workers
    applied = rows(fresh_url, "SELECT migration_id FROM _yoyo_migration")
    assert sorted(applied) == [(m,) for m in KNOWN]
    assert bookkeeping(fresh_url) == [(m, "apply") for m in KNOWN]
    assert counts(fresh_url) == dict.fromkeys(TABLES, 0)


@pytest.mark.parametrize("release_0_1_url", ["sqlite", "postgresql"], indirect=True)
def test_a_newer_release_database_stops_the_worker_with_exit_2(release_0_1_url, tmp_path):
    dialect = dialect_for(release_0_1_url)
    newer = tmp_path / "newer"
    shutil.copytree(migrate.MIGRATIONS / dialect.name, newer)
    (newer / f"{PROBE}.sql").write_text("CREATE TABLE probe (id INTEGER PRIMARY KEY);\n")
    migrate.upgrade(dialect, source=newer)
    env = {
        **os.environ,
        "PROVISIONER_DATABASE_URL": release_0_1_url,
        "PROVISIONER_NAMESPACE": f"mig-{uuid.uuid4().hex[:8]}",
        "HARVEST_ACCOUNT_ID": "1",  # never called: the worker stops before it connects
        "HARVEST_ACCESS_TOKEN": "unused",
    }

    worker = subprocess.run(
        [sys.executable, "-m", "worker.commands", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert worker.returncode == 2, worker.stderr
    [line] = worker.stderr.splitlines()
    assert line.startswith("provisioner: PROVISIONER_DATABASE_URL (")
    assert f"schema version {NEWER}, newer than this release knows (latest {LATEST}" in line
    assert bookkeeping(release_0_1_url) == [*BASELINED, (PROBE, "apply")]


@pytest.mark.parametrize("release_0_1_url", ["sqlite", "postgresql"], indirect=True)
def test_db_status_and_upgrade_show_the_versions(release_0_1_url, monkeypatch, capsys):
    from worker.commands.main import main

    monkeypatch.setenv("PROVISIONER_DATABASE_URL", release_0_1_url)

    assert main(["db", "status"]) == 0
    before = capsys.readouterr().out.splitlines()
    assert main(["db", "upgrade"]) == 0
    upgraded = capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    again = capsys.readouterr().out
    assert main(["db", "status", "--json"]) == 0
    after = json.loads(capsys.readouterr().out)

    assert before[1:] == [
        "current  none (made by release 0.1.0; baselined at the next start)",
        f"latest   {LATEST}",
        f"pending  {','.join(KNOWN)}",
    ]
    done = ", ".join([f"{KNOWN[0]} (baselined)", *KNOWN[1:]])
    assert upgraded == f"schema version none -> {LATEST}: {done}\n"
    assert again == f"already at schema version {LATEST}\n"
    assert (after["current"], after["latest"], after["pending"]) == (LATEST, LATEST, [])
    assert bookkeeping(release_0_1_url) == BASELINED
