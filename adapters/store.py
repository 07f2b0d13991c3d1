"""The state store: project snapshots and status, offering links, the client map, and the
event journal that makes every event's effects happen once. SQLite by default (one worker),
PostgreSQL for several workers; SQLAlchemy Core speaks both.

Every write is one transaction. On SQLite a write transaction starts with BEGIN IMMEDIATE so
that two threads never both read-then-upgrade into a deadlock; on PostgreSQL the rows that a
read-compare-write depends on are locked with SELECT … FOR UPDATE.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from handlers.ports import ClientMapping, Journal, Link, ProjectState, RecordedStep
from schemas.errors import FailureCode, Permanent
from schemas.inbound import Project, Status, Tool
from schemas.outbound import OUTBOUND_TYPES, Outbound

meta = sa.MetaData()
Text, Bool = sa.Text, sa.Boolean
Stamp = sa.DateTime(timezone=True)

projects = sa.Table(
    "projects",
    meta,
    sa.Column("project_id", Text, primary_key=True),
    sa.Column("snapshot", Text, nullable=False),
    sa.Column("snapshot_at", Stamp, nullable=False),
    sa.Column("active", Bool, nullable=False, default=False),
    sa.Column("status", Text),
    sa.Column("status_at", Stamp),
)
links = sa.Table(
    "offering_links",
    meta,
    sa.Column("project_id", Text, primary_key=True),
    sa.Column("offering_id", Text, primary_key=True),
    sa.Column("tool", Text, nullable=False),
    sa.Column("timesheet_project_id", Text, nullable=False),
    sa.Column("timesheet_url", Text, nullable=False),
    sa.Column("timesheet_client_id", Text, nullable=False),
    sa.Column("archived", Bool, nullable=False),
)
client_map = sa.Table(
    "client_map",
    meta,
    sa.Column("tool", Text, primary_key=True),
    sa.Column("crm_client_id", Text, primary_key=True),
    sa.Column("tool_client_id", Text, nullable=False),
    sa.Column("crm_client_name", Text),
    sa.Column("mapped_at", Stamp, nullable=False),
    sa.UniqueConstraint("tool", "tool_client_id", name="one_crm_client_per_tool_client"),
)
intents = sa.Table(
    "provision_intents",
    meta,
    sa.Column("project_id", Text, primary_key=True),
    sa.Column("offering_id", Text, primary_key=True),
    sa.Column("tool", Text, primary_key=True),
    sa.Column("started_at", Stamp, nullable=False),
)
steps = sa.Table(
    "event_steps",
    meta,
    sa.Column("source", Text, primary_key=True),
    sa.Column("event_id", Text, primary_key=True),
    sa.Column("step", Text, primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("outcomes", Text, nullable=False),
)


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _dump(outcomes: Sequence[Outbound]) -> str:
    return json.dumps([{"type": o.type, "data": o.model_dump(mode="json")} for o in outcomes])


def _load(text: str) -> list[Outbound]:
    return [OUTBOUND_TYPES[o["type"]].model_validate(o["data"]) for o in json.loads(text)]


def _engine(url: str, *, writer: bool) -> sa.Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # No pool: every thread holds its own connections for its life (see SqlStore).
    if not url.startswith("sqlite"):
        return sa.create_engine(url, poolclass=sa.pool.NullPool)
    engine = sa.create_engine(
        url,
        poolclass=sa.pool.NullPool,
        connect_args={"timeout": 30, "check_same_thread": False},
    )

    @sa.event.listens_for(engine, "connect")
    def _sqlite_setup(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # autocommit: reads take no lock; writes BEGIN below
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes

    if writer:

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_engine(url: str) -> sa.Engine:
    """The engine that writes (on SQLite every transaction is BEGIN IMMEDIATE)."""
    return _engine(url, writer=True)


# Statements are built once: building and cache-keying a statement per call cost more than
# running it on SQLite (bench/throughput.py).
_p = sa.bindparam
_EVENT = (steps.c.source == _p("source")) & (steps.c.event_id == _p("event_id"))
_OFFERING = (links.c.project_id == _p("project_id")) & (links.c.offering_id == _p("offering_id"))
Q_PROJECT = sa.select(projects).where(projects.c.project_id == _p("project_id"))
Q_PROJECT_LOCKED = (
    sa.select(projects.c.snapshot_at, projects.c.active, projects.c.status, projects.c.status_at)
    .where(projects.c.project_id == _p("project_id"))
    .with_for_update()
)
Q_LINK = sa.select(links).where(_OFFERING)
Q_LINKS = (
    sa.select(links).where(links.c.project_id == _p("project_id")).order_by(links.c.offering_id)
)
Q_TOOL_CLIENT = sa.select(client_map.c.tool_client_id).where(
    (client_map.c.tool == _p("tool")) & (client_map.c.crm_client_id == _p("crm_client_id"))
)
Q_CRM_CLIENT = sa.select(client_map.c.crm_client_id).where(
    (client_map.c.tool == _p("tool")) & (client_map.c.tool_client_id == _p("tool_client_id"))
)
Q_JOURNAL = sa.select(steps.c.step, steps.c.outcomes).where(_EVENT).order_by(steps.c.seq)
# The journal row that says an event is done; no real step has this name or position.
PROCESSED = "(processed)"
PROCESSED_SEQ = 1_000_000
U_PROJECT = projects.update().where(projects.c.project_id == _p("key"))
D_LINK = links.delete().where(_OFFERING)


# pg_advisory_lock(int4, int4): our own first key, so other applications' locks never clash.
ADVISORY_SCOPE = 0x7470  # "tp"
LOCK = sa.text("SELECT pg_advisory_lock(:scope, :project)")
UNLOCK = sa.text("SELECT pg_advisory_unlock(:scope, :project)")


def _lock_key(project_id: str) -> int:
    digest = hashlib.blake2b(project_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


class SqlStore:
    """``handlers.ports.ProjectStore`` on SQLAlchemy Core.

    Each thread keeps one reading and one writing connection for its life: checking a
    connection out of a pool for every call cost more than the SQL (bench/throughput.py).
    Reads run in autocommit and take no lock (on SQLite, WAL lets them run beside a
    writer); writes are one transaction each (BEGIN IMMEDIATE on SQLite).
    """

    def __init__(self, engine: sa.Engine, reader: sa.Engine | None = None):
        self.engine = engine
        self.reader = reader or engine
        meta.create_all(engine)
        self._local = threading.local()
        self._opened: list[sa.Connection] = []
        self._lock = threading.Lock()
        # SQLite has one writer at a time. Threads that queue here are woken the moment it is
        # free; queued in SQLite's busy handler instead, they sleep up to 100 ms a try.
        sqlite = engine.dialect.name == "sqlite"
        self._writers = threading.Lock() if sqlite else contextlib.nullcontext()
        insert = sqlite_insert if sqlite else postgresql_insert
        self._record_steps = insert(steps).on_conflict_do_nothing()

    @classmethod
    def from_url(cls, url: str) -> SqlStore:
        if url.startswith("sqlite"):
            return cls(_engine(url, writer=True), _engine(url, writer=False))
        return cls(make_engine(url))

    def close(self) -> None:
        with self._lock:
            for conn in self._opened:
                with contextlib.suppress(Exception):
                    conn.close()
            self._opened.clear()
        self._local = threading.local()
        self.engine.dispose()
        self.reader.dispose()

    def _connection(self, role: str) -> sa.Connection:
        conn = getattr(self._local, role, None)
        if conn is None or conn.closed or conn.invalidated:
            if role == "reader":
                conn = self.reader.connect().execution_options(isolation_level="AUTOCOMMIT")
            else:
                conn = self.engine.connect()
            setattr(self._local, role, conn)
            with self._lock:
                self._opened.append(conn)
        return conn

    @contextlib.contextmanager
    def _write(self):
        """One transaction on this thread's writing connection."""
        conn = self._connection("writer")
        try:
            with self._writers, conn.begin():
                yield conn
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                self._local.writer = None  # reconnect on the next call
            raise

    def _first(self, query, **params):
        return self._connection("reader").execute(query, params).first()

    def _all(self, query, **params) -> list:
        return self._connection("reader").execute(query, params).all()

    # -- projects -------------------------------------------------------------------------
    def project(self, project_id: str) -> ProjectState | None:
        row = self._first(Q_PROJECT, project_id=project_id)
        if row is None:
            return None
        return ProjectState(
            project=Project.model_validate_json(row.snapshot),
            snapshot_at=_utc(row.snapshot_at),
            active=row.active,
            status=row.status,
            status_at=_utc(row.status_at),
        )

    def save_snapshot(
        self, project: Project, at: datetime, *, activate: bool = False
    ) -> ProjectState:
        with self._write() as conn:
            row = conn.execute(Q_PROJECT_LOCKED, {"project_id": project.id}).first()
            if row is None:
                conn.execute(
                    projects.insert(),
                    dict(
                        project_id=project.id,
                        snapshot=project.model_dump_json(),
                        snapshot_at=at,
                        active=activate,
                    ),
                )
                return ProjectState(project, at, activate)
            stored_at = _utc(row.snapshot_at)
            values = {"active": True} if activate and not row.active else {}
            if at >= stored_at:
                values.update(snapshot=project.model_dump_json(), snapshot_at=at)
            if values:
                conn.execute(U_PROJECT.values(**values), {"key": project.id})
            if at >= stored_at:
                return ProjectState(
                    project, at, activate or row.active, row.status, _utc(row.status_at)
                )
        return self.project(project.id)  # an older snapshot: the stored one stands

    def set_status(self, project_id: str, status: Status, at: datetime) -> bool:
        with self._write() as conn:
            row = conn.execute(Q_PROJECT_LOCKED, {"project_id": project_id}).first()
            if row is None or (row.status_at is not None and _utc(row.status_at) > at):
                return False
            conn.execute(U_PROJECT.values(status=status, status_at=at), {"key": project_id})
            return True

    # -- links ----------------------------------------------------------------------------
    def link(self, project_id: str, offering_id: str) -> Link | None:
        row = self._first(Q_LINK, project_id=project_id, offering_id=offering_id)
        return Link(**row._mapping) if row else None

    def links(self, project_id: str) -> list[Link]:
        return [Link(**r._mapping) for r in self._all(Q_LINKS, project_id=project_id)]

    # -- client map -----------------------------------------------------------------------
    def tool_client(self, tool: Tool, crm_client_id: str) -> str | None:
        row = self._first(Q_TOOL_CLIENT, tool=tool, crm_client_id=crm_client_id)
        return row.tool_client_id if row else None

    def crm_client(self, tool: Tool, tool_client_id: str) -> str | None:
        row = self._first(Q_CRM_CLIENT, tool=tool, tool_client_id=tool_client_id)
        return row.crm_client_id if row else None

    def client_mappings(self, tool: Tool | None = None) -> list[ClientMapping]:
        query = sa.select(client_map).order_by(client_map.c.tool, client_map.c.crm_client_id)
        if tool:
            query = query.where(client_map.c.tool == tool)
        return [
            ClientMapping(r.tool, r.crm_client_id, r.tool_client_id, r.crm_client_name)
            for r in self._all(query)
        ]

    def map_client(self, mapping: ClientMapping) -> None:
        try:
            with self._write() as conn:
                conn.execute(client_map.insert(), _mapping_row(mapping))
        except IntegrityError:
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
        with self._write() as conn:
            done = conn.execute(
                client_map.delete().where(
                    client_map.c.tool == tool, client_map.c.crm_client_id == crm_client_id
                )
            )
            return done.rowcount > 0

    def remap_client(self, mapping: ClientMapping) -> None:
        """A person's decision: ``mapping`` replaces whatever either side was mapped to."""
        with self._write() as conn:
            conn.execute(
                client_map.delete().where(
                    client_map.c.tool == mapping.tool,
                    sa.or_(
                        client_map.c.crm_client_id == mapping.crm_client_id,
                        client_map.c.tool_client_id == mapping.tool_client_id,
                    ),
                )
            )
            conn.execute(client_map.insert(), _mapping_row(mapping))

    # -- crash-proof creation -------------------------------------------------------------
    def note_provision_started(self, project_id: str, offering_id: str, tool: Tool) -> bool:
        key = dict(project_id=project_id, offering_id=offering_id, tool=tool)
        try:
            with self._write() as conn:
                conn.execute(intents.insert(), {**key, "started_at": _now()})
            return False
        except IntegrityError:
            return True

    # -- several workers --------------------------------------------------------------------
    @contextlib.contextmanager
    def project_lock(self, project_id: str):
        """A PostgreSQL session advisory lock per project, so that two worker processes never
        work one project at once (two copies of an event could otherwise both create). SQLite
        serves one worker process, whose lanes already do this."""
        if self.engine.dialect.name != "postgresql":
            yield
            return
        conn = self._connection("reader")  # autocommit: the lock lives with the session
        key = {"scope": ADVISORY_SCOPE, "project": _lock_key(project_id)}
        conn.execute(LOCK, key)
        try:
            yield
        finally:
            conn.execute(UNLOCK, key)

    # -- the event journal ----------------------------------------------------------------
    def journal(self, event_key: tuple[str, str]) -> Journal:
        source, event_id = event_key
        rows = self._all(Q_JOURNAL, source=source, event_id=event_id)
        recorded = {r.step: _load(r.outcomes) for r in rows if r.step != PROCESSED}
        return Journal(recorded, processed=any(r.step == PROCESSED for r in rows))

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
        # IntegrityError: a concurrent copy of this event recorded the step first.
        with contextlib.suppress(IntegrityError), self._write() as conn:
            if link is not None:
                keys = {"project_id": link.project_id, "offering_id": link.offering_id}
                conn.execute(D_LINK, keys)
                conn.execute(links.insert(), link.__dict__)
            conn.execute(steps.insert(), row)

    def finish_run(
        self, event_key: tuple[str, str], steps: Sequence[RecordedStep], *, processed: bool
    ) -> None:
        source, event_id = event_key
        rows = [
            dict(
                source=source, event_id=event_id, step=s.name, seq=s.seq, outcomes=_dump(s.outcomes)
            )
            for s in steps
        ]
        if processed:
            rows.append(
                dict(
                    source=source,
                    event_id=event_id,
                    step=PROCESSED,
                    seq=PROCESSED_SEQ,
                    outcomes="[]",
                )
            )
        if not rows:
            return
        with self._write() as conn:
            # A redelivered copy may have recorded some of them first: the same facts.
            conn.execute(self._record_steps, rows)


def _mapping_row(mapping: ClientMapping) -> dict:
    return dict(
        tool=mapping.tool,
        crm_client_id=mapping.crm_client_id,
        tool_client_id=mapping.tool_client_id,
        crm_client_name=mapping.crm_client_name,
        mapped_at=_now(),
    )
