"""The state store: project snapshots and status, offering links, the client map, and the
event journal that makes every event's effects happen once. SQLite by default (one worker),
PostgreSQL for several workers; ``adapters.sql`` holds what differs between them.

The tables are made and changed by the migrations in ``adapters/migrations/``, applied when
the store opens (``adapters.migrate``).

Every write is one transaction, and most are one statement: a snapshot is an upsert that
keeps the newer of the two, a status an update that refuses an older one. Reads run in
autocommit and take no lock.

The store is one class, ``SqlStore``, in rooms by job: this module holds the projects, the
offering links, the client map and the record of creations begun; the connections and
transactions are in ``adapters.store_session``, the event journal in
``adapters.store_journal``, the locks among worker processes in ``adapters.store_locks``,
the CRM sweep's cursor in ``adapters.store_sweep`` and a CRM's rotated refresh tokens in
``adapters.store_tokens``. Each room brings its own statements; the
names this module had before the split (``PROCESSED``, ``ADVISORY_SCOPE``, ...) are still
importable from here.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime

from adapters import migrate
from adapters.locks import KeyedLocks
from adapters.sql import Postgres, Sqlite, dialect_for
from adapters.store_journal import JOURNAL_SQL, StoreJournal
from adapters.store_journal import PROCESSED as PROCESSED
from adapters.store_journal import PROCESSED_SEQ as PROCESSED_SEQ
from adapters.store_locks import ADVISORY_SCOPE as ADVISORY_SCOPE
from adapters.store_locks import CLIENT_SCOPE as CLIENT_SCOPE
from adapters.store_locks import LOCK_SQL, LOCK_TIMEOUT, StoreLocks
from adapters.store_locks import _lock_key as _lock_key
from adapters.store_session import StoreSession
from adapters.store_sweep import SWEEP_SQL, StoreSweepCursor
from adapters.store_tokens import TOKEN_SQL, StoreRefreshTokens
from handlers.ports import ClientMapping, Link, ProjectState
from schemas.errors import FailureCode, Permanent
from schemas.inbound import Project, Status, Tool

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
    **JOURNAL_SQL,
    **LOCK_SQL,
    **SWEEP_SQL,
    **TOKEN_SQL,
}


class SqlStore(StoreSession, StoreLocks, StoreJournal, StoreSweepCursor, StoreRefreshTokens):
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


def _link(row) -> Link:
    project_id, offering_id, tool, project, url, client, archived, unsettled = row
    return Link(
        project_id, offering_id, tool, project, url, client, bool(archived), bool(unsettled)
    )
