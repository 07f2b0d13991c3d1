"""The state store: project snapshots and status, offering links, the client map, and the
event journal that makes every event's effects happen once. SQLite by default (one worker),
PostgreSQL for several workers; SQLAlchemy Core speaks both.

Every write is one transaction. On SQLite a write transaction starts with BEGIN IMMEDIATE so
that two threads never both read-then-upgrade into a deadlock; on PostgreSQL the rows that a
read-compare-write depends on are locked with SELECT … FOR UPDATE.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from handlers.ports import ClientMapping, Link, ProjectState
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
processed = sa.Table(
    "processed_events",
    meta,
    sa.Column("source", Text, primary_key=True),
    sa.Column("event_id", Text, primary_key=True),
    sa.Column("processed_at", Stamp, nullable=False),
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
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_size=40, max_overflow=10, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

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
    sa.select(projects.c.snapshot_at, projects.c.active, projects.c.status_at)
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
Q_STEP = sa.select(steps.c.outcomes).where(_EVENT & (steps.c.step == _p("step")))
Q_STEPS = sa.select(steps.c.outcomes).where(_EVENT).order_by(steps.c.seq)
Q_PROCESSED = sa.select(processed.c.event_id).where(
    (processed.c.source == _p("source")) & (processed.c.event_id == _p("event_id"))
)
U_PROJECT = projects.update().where(projects.c.project_id == _p("key"))
D_LINK = links.delete().where(_OFFERING)


class SqlStore:
    """``handlers.ports.ProjectStore`` on SQLAlchemy Core.

    Two engines on SQLite: reads run in autocommit and take no lock (WAL lets them run beside
    a writer); writes start with BEGIN IMMEDIATE. On PostgreSQL both are one engine.
    """

    def __init__(self, engine: sa.Engine, reader: sa.Engine | None = None):
        self.engine = engine
        self.reader = reader or engine
        meta.create_all(engine)

    @classmethod
    def from_url(cls, url: str) -> SqlStore:
        if url.startswith("sqlite"):
            return cls(_engine(url, writer=True), _engine(url, writer=False))
        return cls(make_engine(url))

    def close(self) -> None:
        self.engine.dispose()
        self.reader.dispose()

    def _first(self, query, **params):
        with self.reader.connect() as conn:
            return conn.execute(query, params).first()

    def _all(self, query, **params) -> list:
        with self.reader.connect() as conn:
            return conn.execute(query, params).all()

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

    def save_snapshot(self, project: Project, at: datetime, *, activate: bool = False) -> bool:
        with self.engine.begin() as conn:
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
                return True
            newer = at >= _utc(row.snapshot_at)
            values = {"active": True} if activate and not row.active else {}
            if newer:
                values.update(snapshot=project.model_dump_json(), snapshot_at=at)
            if values:
                conn.execute(U_PROJECT.values(**values), {"key": project.id})
            return newer

    def set_status(self, project_id: str, status: Status, at: datetime) -> bool:
        with self.engine.begin() as conn:
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
            with self.engine.begin() as conn:
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
        with self.engine.begin() as conn:
            done = conn.execute(
                client_map.delete().where(
                    client_map.c.tool == tool, client_map.c.crm_client_id == crm_client_id
                )
            )
            return done.rowcount > 0

    def remap_client(self, mapping: ClientMapping) -> None:
        """A person's decision: ``mapping`` replaces whatever either side was mapped to."""
        with self.engine.begin() as conn:
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
            with self.engine.begin() as conn:
                conn.execute(intents.insert(), {**key, "started_at": _now()})
            return False
        except IntegrityError:
            return True

    # -- the event journal ----------------------------------------------------------------
    def step_outcomes(self, event_key: tuple[str, str], step: str) -> list[Outbound] | None:
        source, event_id = event_key
        row = self._first(Q_STEP, source=source, event_id=event_id, step=step)
        return None if row is None else _load(row.outcomes)

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
        with contextlib.suppress(IntegrityError), self.engine.begin() as conn:
            if link is not None:
                keys = {"project_id": link.project_id, "offering_id": link.offering_id}
                conn.execute(D_LINK, keys)
                conn.execute(links.insert(), link.__dict__)
            conn.execute(steps.insert(), row)

    def processed(self, event_key: tuple[str, str]) -> list[Outbound] | None:
        source, event_id = event_key
        if self._first(Q_PROCESSED, source=source, event_id=event_id) is None:
            return None
        rows = self._all(Q_STEPS, source=source, event_id=event_id)
        return [o for r in rows for o in _load(r.outcomes)]

    def mark_processed(self, event_key: tuple[str, str]) -> None:
        source, event_id = event_key
        row = dict(source=source, event_id=event_id, processed_at=_now())
        # IntegrityError: a redelivered copy finished first; the same facts are recorded.
        with contextlib.suppress(IntegrityError), self.engine.begin() as conn:
            conn.execute(processed.insert(), row)


def _mapping_row(mapping: ClientMapping) -> dict:
    return dict(
        tool=mapping.tool,
        crm_client_id=mapping.crm_client_id,
        tool_client_id=mapping.tool_client_id,
        crm_client_name=mapping.crm_client_name,
        mapped_at=_now(),
    )
