"""The state store: project snapshots and status, offering links, the client map, and the
event journal that makes every event's effects happen once. SQLite by default (one worker),
PostgreSQL for several workers; ``adapters.sql`` holds what differs between them.

The tables are made and changed by the migrations in ``adapters/migrations/``, applied when
the store opens (``adapters.migrate``).

Every write is one transaction, and most are one statement: a snapshot is an upsert that
keeps the newer of the two, a status an update that refuses an older one. Reads run in
autocommit and take no lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

from adapters import migrate
from adapters.locks import KeyedLocks, busy, take_advisory_lock
from adapters.sql import Postgres, Sqlite, dialect_for
from handlers.ports import (
    ClientMapping,
    Journal,
    Link,
    ProjectState,
    RecordedStep,
    client_name_key,
)
from schemas.errors import FailureCode, Permanent, Transient
from schemas.inbound import Project, Status, Tool
from schemas.outbound import OUTBOUND_TYPES, Outbound

LINK_COLUMNS = (
    "project_id, offering_id, tool, timesheet_project_id, timesheet_url, "
    "timesheet_client_id, archived"
)
# A link, and whether an archive or restore of it is unsettled.
LINK_READ = (
    "l.project_id, l.offering_id, l.tool, l.timesheet_project_id, l.timesheet_url, "
    "l.timesheet_client_id, l.archived, i.archived IS NOT NULL FROM offering_links l "
    "LEFT JOIN archive_intents i "
    "ON i.project_id = l.project_id AND i.offering_id = l.offering_id"
)
# Written with :name parameters; the dialect translates them once, at start-up.
SQL = {
    "project": "SELECT snapshot, snapshot_at, active, status, status_at FROM projects "
    "WHERE project_id = :project_id",
    # The newer snapshot stands (a tie goes to the one arriving); activation only ever sets.
    # SET expressions see the row as it was, on both databases.
    "save_snapshot": """INSERT INTO projects (project_id, snapshot, snapshot_at, active)
        VALUES (:project_id, :snapshot, :at, :activate)
        ON CONFLICT (project_id) DO UPDATE SET
            snapshot = CASE WHEN excluded.snapshot_at >= projects.snapshot_at
                THEN excluded.snapshot ELSE projects.snapshot END,
            snapshot_at = CASE WHEN excluded.snapshot_at >= projects.snapshot_at
                THEN excluded.snapshot_at ELSE projects.snapshot_at END,
            active = projects.active OR excluded.active
        RETURNING snapshot_at, active, status, status_at""",
    "set_status": "UPDATE projects SET status = :status, status_at = :at "
    "WHERE project_id = :project_id AND (status_at IS NULL OR status_at <= :at)",
    "link": f"SELECT {LINK_READ} WHERE l.project_id = :project_id AND l.offering_id = :offering_id",
    "links": f"SELECT {LINK_READ} WHERE l.project_id = :project_id ORDER BY l.offering_id",
    "note_archive_intent": "INSERT INTO archive_intents (project_id, offering_id, archived) "
    "VALUES (:project_id, :offering_id, :archived) ON CONFLICT (project_id, offering_id) "
    "DO UPDATE SET archived = excluded.archived",
    "settle_archive_intent": "DELETE FROM archive_intents "
    "WHERE project_id = :project_id AND offering_id = :offering_id",
    "save_link": f"""INSERT INTO offering_links ({LINK_COLUMNS}) VALUES (:project_id,
            :offering_id, :tool, :timesheet_project_id, :timesheet_url, :timesheet_client_id,
            :archived)
        ON CONFLICT (project_id, offering_id) DO UPDATE SET tool = excluded.tool,
            timesheet_project_id = excluded.timesheet_project_id,
            timesheet_url = excluded.timesheet_url,
            timesheet_client_id = excluded.timesheet_client_id,
            archived = excluded.archived""",
    "tool_client": "SELECT tool_client_id FROM client_map "
    "WHERE tool = :tool AND crm_client_id = :crm_client_id",
    "crm_client": "SELECT crm_client_id FROM client_map "
    "WHERE tool = :tool AND tool_client_id = :tool_client_id",
    "mappings": "SELECT tool, crm_client_id, tool_client_id, crm_client_name FROM client_map "
    "ORDER BY tool, crm_client_id",
    "tool_mappings": "SELECT tool, crm_client_id, tool_client_id, crm_client_name "
    "FROM client_map WHERE tool = :tool ORDER BY crm_client_id",
    "map_client": "INSERT INTO client_map "
    "(tool, crm_client_id, tool_client_id, crm_client_name, mapped_at) "
    "VALUES (:tool, :crm_client_id, :tool_client_id, :crm_client_name, :mapped_at)",
    "unmap_client": "DELETE FROM client_map WHERE tool = :tool AND crm_client_id = :crm_client_id",
    "unmap_either": "DELETE FROM client_map WHERE tool = :tool "
    "AND (crm_client_id = :crm_client_id OR tool_client_id = :tool_client_id)",
    "note_intent": "INSERT INTO provision_intents (project_id, offering_id, tool, started_at) "
    "VALUES (:project_id, :offering_id, :tool, :started_at) ON CONFLICT DO NOTHING",
    "intent_started": "SELECT started_at FROM provision_intents "
    "WHERE project_id = :project_id AND offering_id = :offering_id AND tool = :tool",
    "note_run": "INSERT INTO event_runs (source, event_id, runs) VALUES (:source, :event_id, 1) "
    "ON CONFLICT (source, event_id) DO UPDATE SET runs = event_runs.runs + 1 RETURNING runs",
    "journal": "SELECT step, outcomes FROM event_steps "
    "WHERE source = :source AND event_id = :event_id ORDER BY seq",
    "record_step": "INSERT INTO event_steps (source, event_id, step, seq, outcomes) "
    "VALUES (:source, :event_id, :step, :seq, :outcomes)",
    "unlock": "SELECT pg_advisory_unlock(:scope, :key)",
    "sweep_cursor": "SELECT swept_until FROM sweep_cursors WHERE crm = :crm AND account = :account",
    # A sweep that ends earlier than the one stored (begun earlier, confirmed later) never
    # moves the cursor back.
    "save_sweep_cursor": """INSERT INTO sweep_cursors (crm, account, swept_until)
        VALUES (:crm, :account, :until)
        ON CONFLICT (crm, account) DO UPDATE SET swept_until = CASE
            WHEN excluded.swept_until > sweep_cursors.swept_until
            THEN excluded.swept_until ELSE sweep_cursors.swept_until END""",
}

# The journal row that says an event is done; no real step has this name or position.
PROCESSED = "(processed)"
PROCESSED_SEQ = 1_000_000
# pg_advisory_lock(int4, int4): our own first keys, so other applications' locks never clash.
ADVISORY_SCOPE = 0x7470  # "tp": a project
CLIENT_SCOPE = 0x7472  # a client name in one tool
# How long a lock is awaited before the event is given back to be retried later: far above
# any one event's work on a project, far below the broker's consumer timeout.
LOCK_TIMEOUT = 30.0


def _lock_key(text: str) -> int:
    # Two texts of one key only share a lock: they wait for each other, nothing worse.
    digest = hashlib.blake2b(text.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def _dump(outcomes: Sequence[Outbound]) -> str:
    return (
        "["
        + ", ".join(f'{{"type": "{o.type}", "data": {o.model_dump_json()}}}' for o in outcomes)
        + "]"
    )


def _load(text: str) -> list[Outbound]:
    return [OUTBOUND_TYPES[o["type"]].model_validate(o["data"]) for o in json.loads(text)]


class SqlStore:
    """``handlers.ports.ProjectStore`` on SQLite or PostgreSQL.

    Each thread keeps one connection for its life: opening one, or checking one out of a
    pool, for every call cost more than the SQL. Connections run in autocommit; a write of
    several statements is an explicit transaction (``_write``).
    """

    def __init__(self, dialect: Sqlite | Postgres, *, lock_timeout: float = LOCK_TIMEOUT):
        self.dialect = dialect
        self.lock_timeout = lock_timeout
        self.sql = {name: dialect.sql(text) for name, text in SQL.items()}
        self._local = threading.local()
        self._opened: list = []
        self._lock = threading.Lock()
        self._client_locks = KeyedLocks()
        try:  # before anything reads or writes: DatabaseTooNew for a newer release's database
            migrate.upgrade(dialect)
        except BaseException:
            dialect.close()
            raise

    @classmethod
    def from_url(cls, url: str, *, lock_timeout: float = LOCK_TIMEOUT) -> SqlStore:
        return cls(dialect_for(url), lock_timeout=lock_timeout)

    def close(self) -> None:
        with self._lock:
            for conn in self._opened:
                with contextlib.suppress(Exception):
                    conn.close()
            self._opened.clear()
        self._local = threading.local()
        self.dialect.close()

    # -- connections and transactions -------------------------------------------------------
    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or not self.dialect.usable(conn):
            if self._held():
                # The session that held our lock is gone, and the lock with it: a new session
                # would let the rest of the event run unlocked, beside another worker.
                raise self._lock_lost()
            conn = self.dialect.connect()
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    @contextlib.contextmanager
    def _session(self):
        """This thread's connection, for one statement or transaction."""
        conn = self._conn()
        try:
            yield conn
        except Exception as exc:
            if self._held() and not self.dialect.usable(conn):
                raise self._lock_lost() from exc
            raise

    def _held(self) -> list[str]:
        """What this thread holds session locks on (PostgreSQL), innermost last."""
        return self._local.__dict__.setdefault("held", [])

    def _lock_lost(self) -> Transient:
        return Transient(
            FailureCode.INTERNAL_ERROR,
            f"the database session holding the lock on {self._held()[0]} broke; "
            "the event is retried",
        )

    def _one(self, query: str, params: dict):
        with self._session() as conn:
            return conn.execute(self.sql[query], params).fetchone()

    def _all(self, query: str, params: dict) -> list:
        with self._session() as conn:
            return conn.execute(self.sql[query], params).fetchall()

    def _write_one(self, query: str, params: dict) -> tuple[int, list]:
        """One statement, which is its own transaction: (rows changed, rows returned).

        The rows are fetched inside: SQLite commits a RETURNING statement only once it has
        been stepped to the end."""
        with self.dialect.writers, self._session() as conn:
            cursor = conn.execute(self.sql[query], params)
            returned = cursor.fetchall() if cursor.description else []
            self.dialect.committed()
            return cursor.rowcount, returned

    @contextlib.contextmanager
    def _write(self):
        """A transaction of several statements on this thread's connection."""
        with self.dialect.writers, self._session() as conn:
            conn.execute(self.dialect.begin)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:  # a failed COMMIT too: never leave the transaction open
                with contextlib.suppress(Exception):  # the connection may be the failure
                    conn.execute("ROLLBACK")
                raise
            self.dialect.committed()

    def make_durable(self) -> None:
        self.dialect.make_durable()

    def reachable(self) -> bool:
        """The database answers a trivial query on this thread's connection (readiness)."""
        with self._session() as conn:
            conn.execute("SELECT 1").fetchone()
        return True

    # -- projects -------------------------------------------------------------------------
    def project(self, project_id: str) -> ProjectState | None:
        row = self._one("project", {"project_id": project_id})
        if row is None:
            return None
        snapshot, snapshot_at, active, status, status_at = row
        unstamp = self.dialect.unstamp
        return ProjectState(
            Project.model_validate_json(snapshot),
            unstamp(snapshot_at),
            bool(active),
            status,
            unstamp(status_at),
        )

    def save_snapshot(
        self, project: Project, at: datetime, *, activate: bool = False
    ) -> ProjectState:
        stamp, unstamp = self.dialect.stamp, self.dialect.unstamp
        params = {
            "project_id": project.id,
            "snapshot": project.model_dump_json(),
            "at": stamp(at),
            "activate": activate,
        }
        _, [(snapshot_at, active, status, status_at)] = self._write_one("save_snapshot", params)
        if snapshot_at != params["at"]:
            return self.project(project.id)  # a newer snapshot was stored: it stands
        return ProjectState(project, unstamp(snapshot_at), bool(active), status, unstamp(status_at))

    def set_status(self, project_id: str, status: Status, at: datetime) -> bool:
        params = {"project_id": project_id, "status": status, "at": self.dialect.stamp(at)}
        changed, _ = self._write_one("set_status", params)
        return changed == 1

    # -- links ----------------------------------------------------------------------------
    def link(self, project_id: str, offering_id: str) -> Link | None:
        row = self._one("link", {"project_id": project_id, "offering_id": offering_id})
        return _link(row) if row else None

    def links(self, project_id: str) -> list[Link]:
        return [_link(row) for row in self._all("links", {"project_id": project_id})]

    # -- client map -----------------------------------------------------------------------
    def tool_client(self, tool: Tool, crm_client_id: str) -> str | None:
        row = self._one("tool_client", {"tool": tool, "crm_client_id": crm_client_id})
        return row[0] if row else None

    def crm_client(self, tool: Tool, tool_client_id: str) -> str | None:
        row = self._one("crm_client", {"tool": tool, "tool_client_id": tool_client_id})
        return row[0] if row else None

    def client_mappings(self, tool: Tool | None = None) -> list[ClientMapping]:
        rows = self._all("tool_mappings", {"tool": tool}) if tool else self._all("mappings", {})
        return [ClientMapping(*row) for row in rows]

    def map_client(self, mapping: ClientMapping) -> None:
        try:
            self._write_one("map_client", self._mapping_row(mapping))
        except self.dialect.integrity_errors:
            # Another worker mapped one side first. The same mapping is fine; any other is not.
            if self.tool_client(mapping.tool, mapping.crm_client_id) == mapping.tool_client_id:
                return
            holder = self.crm_client(mapping.tool, mapping.tool_client_id)
            raise Permanent(
                FailureCode.CLIENT_AMBIGUOUS,
                f"CRM clients {holder} and {mapping.crm_client_id} both claim {mapping.tool} "
                f"client {mapping.tool_client_id}",
            ) from None

    def unmap_client(self, tool: Tool, crm_client_id: str) -> bool:
        params = {"tool": tool, "crm_client_id": crm_client_id}
        changed, _ = self._write_one("unmap_client", params)
        return changed > 0

    def remap_client(self, mapping: ClientMapping) -> None:
        """A person's decision: ``mapping`` replaces whatever either side was mapped to."""
        row = self._mapping_row(mapping)
        with self._write() as conn:
            conn.execute(self.sql["unmap_either"], row)
            conn.execute(self.sql["map_client"], row)

    def _mapping_row(self, mapping: ClientMapping) -> dict:
        return dict(
            tool=mapping.tool,
            crm_client_id=mapping.crm_client_id,
            tool_client_id=mapping.tool_client_id,
            crm_client_name=mapping.crm_client_name,
            mapped_at=self.dialect.stamp(datetime.now(UTC)),
        )

    # -- the CRM sweep's cursor (``provisioner crm reconcile``) -----------------------------
    def sweep_cursor(self, crm: str, account: str) -> datetime | None:
        """Where the last successful sweep of this CRM account ended (None: never swept)."""
        row = self._one("sweep_cursor", {"crm": crm, "account": account})
        return self.dialect.unstamp(row[0]) if row else None

    def save_sweep_cursor(self, crm: str, account: str, until: datetime) -> None:
        """A sweep up to ``until`` is done (every publish confirmed); a later end stands."""
        params = {"crm": crm, "account": account, "until": self.dialect.stamp(until)}
        self._write_one("save_sweep_cursor", params)

    # -- crash-proof creation -------------------------------------------------------------
    def note_provision_started(self, project_id: str, offering_id: str, tool: Tool) -> bool:
        params = dict(
            project_id=project_id,
            offering_id=offering_id,
            tool=tool,
            started_at=self.dialect.stamp(datetime.now(UTC)),
        )
        changed, _ = self._write_one("note_intent", params)
        return changed == 0

    def provision_started_at(
        self, project_id: str, offering_id: str, tool: Tool
    ) -> datetime | None:
        """When the first attempt recorded its intent to create: what it made is newer."""
        params = dict(project_id=project_id, offering_id=offering_id, tool=tool)
        row = self._one("intent_started", params)
        return self.dialect.unstamp(row[0]) if row else None

    # -- several workers --------------------------------------------------------------------
    @contextlib.contextmanager
    def project_lock(self, project_id: str):
        """A PostgreSQL session advisory lock per project, so that two worker processes never
        work one project at once (two copies of an event could otherwise both create). SQLite
        serves one worker process, whose lanes already do this."""
        if not isinstance(self.dialect, Postgres):
            yield
            return
        with self._session_lock(ADVISORY_SCOPE, project_id, f"project {project_id}"):
            yield

    @contextlib.contextmanager
    def client_lock(self, tool: Tool, name: str):
        """One resolution of a client name per tool at a time: among this process's lanes by
        a lock in memory, and among worker processes on PostgreSQL by an advisory lock."""
        folded = client_name_key(name)
        what = f"{tool} client {name.strip()!r}"
        with self._client_locks.hold((tool, folded), self.lock_timeout, what):
            if not isinstance(self.dialect, Postgres):
                yield
                return
            with self._session_lock(CLIENT_SCOPE, f"{tool}\n{folded}", what):
                yield

    @contextlib.contextmanager
    def _session_lock(self, scope: int, name: str, what: str):
        key = {"scope": scope, "key": _lock_key(name)}
        with self._session() as conn:  # the lock lives with this thread's session
            taken = take_advisory_lock(conn, scope, key["key"], self.lock_timeout)
        if not taken:
            raise busy(what, self.lock_timeout)
        held = self._held()
        held.append(what)
        try:
            yield
        finally:
            held.remove(what)
            try:
                conn.execute(self.sql["unlock"], key)
            except Exception:
                # A session that broke took its locks with it; one that failed otherwise is
                # closed so that it cannot keep the lock (the next call opens another).
                with contextlib.suppress(Exception):
                    conn.close()

    # -- the event journal ----------------------------------------------------------------
    def note_run(self, event_key: tuple[str, str]) -> int:
        source, event_id = event_key
        _, [(runs,)] = self._write_one("note_run", {"source": source, "event_id": event_id})
        return runs

    def journal(self, event_key: tuple[str, str]) -> Journal:
        source, event_id = event_key
        rows = self._all("journal", {"source": source, "event_id": event_id})
        recorded = {step: _load(outcomes) for step, outcomes in rows if step != PROCESSED}
        return Journal(recorded, processed=any(step == PROCESSED for step, _ in rows))

    def finish_step(
        self,
        event_key: tuple[str, str],
        step: str,
        outcomes: Sequence[Outbound],
        link: Link | None = None,
        seq: int = 0,
    ) -> None:
        source, event_id = event_key
        row = dict(source=source, event_id=event_id, step=step, seq=seq, outcomes=_dump(outcomes))
        # IntegrityError: a concurrent copy of this event recorded the step (and link) first.
        with contextlib.suppress(*self.dialect.integrity_errors), self._write() as conn:
            if link is not None:
                conn.execute(self.sql["save_link"], link.__dict__)
                conn.execute(self.sql["settle_archive_intent"], link.__dict__)
            conn.execute(self.sql["record_step"], row)

    def note_archive_intent(self, project_id: str, offering_id: str, archived: bool) -> None:
        params = dict(project_id=project_id, offering_id=offering_id, archived=archived)
        self._write_one("note_archive_intent", params)

    def finish_run(
        self, event_key: tuple[str, str], steps: Sequence[RecordedStep], *, processed: bool
    ) -> None:
        recorded = [(s.name, s.seq, _dump(s.outcomes)) for s in steps]
        if processed:
            recorded.append((PROCESSED, PROCESSED_SEQ, "[]"))
        if not recorded:
            return
        source, event_id = event_key
        params = {"source": source, "event_id": event_id}
        for i, (step, seq, outcomes) in enumerate(recorded):
            params.update({f"step{i}": step, f"seq{i}": seq, f"outcomes{i}": outcomes})
        # One statement, so one commit. A redelivered copy may have recorded some of these
        # first: the same facts, kept as they are.
        self._write_one(self._record_steps(len(recorded)), params)

    def _record_steps(self, count: int) -> str:
        name = f"record_steps_{count}"
        if name not in self.sql:
            rows = ", ".join(
                f"(:source, :event_id, :step{i}, :seq{i}, :outcomes{i})" for i in range(count)
            )
            self.sql[name] = self.dialect.sql(
                f"INSERT INTO event_steps (source, event_id, step, seq, outcomes) VALUES {rows} "
                "ON CONFLICT DO NOTHING"
            )
        return name


def _link(row) -> Link:
    project_id, offering_id, tool, project, url, client, archived, unsettled = row
    return Link(
        project_id, offering_id, tool, project, url, client, bool(archived), bool(unsettled)
    )
