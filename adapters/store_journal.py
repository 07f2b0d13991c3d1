"""The event journal: how often an event ran, the steps it finished with their outcomes,
and the row that says it is done, so that every event's effects happen once.

A mixin of ``adapters.store.SqlStore``; a finished step writes its offering link in the same
transaction (the link's statements are the store's own).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence

from handlers.ports import Journal, Link, RecordedStep
from schemas.outbound import OUTBOUND_TYPES, Outbound

# The journal row that says an event is done; no real step has this name or position.
PROCESSED = "(processed)"
PROCESSED_SEQ = 1_000_000
JOURNAL_SQL = {
    # ``last_run_by`` names the process of a run under way, and is cleared when it ends
    # (``end_run``): found set by another process, it is a run the worker never ended.
    # That run counts one more, or starts the count again if the event recorded steps since
    # the one before began (``steps_seen``). The first redelivery counts the delivery before.
    "note_run": "INSERT INTO event_runs (source, event_id, runs, last_run_by, steps_seen) "
    "VALUES (:source, :event_id, 1, :run_by, :steps) "
    "ON CONFLICT (source, event_id) DO UPDATE SET runs = CASE "
    "WHEN event_runs.last_run_by IS NULL OR event_runs.last_run_by = excluded.last_run_by "
    "THEN event_runs.runs "
    "WHEN excluded.steps_seen > COALESCE(event_runs.steps_seen, -1) THEN 1 "
    "ELSE event_runs.runs + 1 END, "
    "last_run_by = excluded.last_run_by, steps_seen = excluded.steps_seen RETURNING runs",
    "end_run": "UPDATE event_runs SET last_run_by = NULL "
    "WHERE source = :source AND event_id = :event_id",
    "journal": "SELECT step, outcomes FROM event_steps "
    "WHERE source = :source AND event_id = :event_id ORDER BY seq",
    "record_step": "INSERT INTO event_steps (source, event_id, step, seq, outcomes) "
    "VALUES (:source, :event_id, :step, :seq, :outcomes)",
}


def _dump(outcomes: Sequence[Outbound]) -> str:
    return (
        "["
        + ", ".join(f'{{"type": "{o.type}", "data": {o.model_dump_json()}}}' for o in outcomes)
        + "]"
    )


def _load(text: str) -> list[Outbound]:
    return [OUTBOUND_TYPES[o["type"]].model_validate(o["data"]) for o in json.loads(text)]


class StoreJournal:
    # -- the event journal ----------------------------------------------------------------
    def note_run(self, event_key: tuple[str, str], run_by: str, steps: int) -> int:
        """A run of a redelivered event begins in the worker process ``run_by``, the event having
        recorded ``steps``; the runs the worker began and never ended since the event last
        got further."""
        source, event_id = event_key
        params = {"source": source, "event_id": event_id, "run_by": run_by, "steps": steps}
        _, [(runs,)] = self._write_one("note_run", params)
        return runs

    def end_run(self, event_key: tuple[str, str]) -> None:
        """The run ``note_run`` began has ended with a decision: it was not cut short."""
        source, event_id = event_key
        self._write_one("end_run", {"source": source, "event_id": event_id})

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
