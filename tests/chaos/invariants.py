"""The invariants a trial must keep, as pure functions of what was gathered after it settled.

(a) none lost: every good event is processed (journal row ``(processed)``) or dead-lettered
    with a reason; every bad body is dead-lettered by the worker with its reason; no dead
    letter lacks a reason; none was made by the broker (its delivery limit, a reject).
(b) none twice: one vendor project per offering marker, one tool client per CRM client,
    no offering linked to two projects, every link points at a project in the tool, and
    the link's archived flag agrees with the tool.
(c) an outcome re-sent after a crash keeps its id: per (causationid, type, offering) one id.
(d) the worker is alive, did not exit by itself, no exception escaped to pika (a raw
    traceback in its log), and its queues drained.
(e) everything that should have happened did (``tests.chaos.expectation``): every offering
    that should be live has one link, not archived, to a project its tool holds unarchived;
    every project that should be active is; no offering that nothing could link is linked.
    An offering missing (or a project inactive) is excused, not failed, when an event that
    could have linked it (or activated it) was dead-lettered with a code in
    ``EXPECTED_CODES``: that dead letter is the evidence, and the table counts the excused.

Each violation is a ``Failure`` naming the invariant, the event or offering, and what was seen.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from tests.chaos.broker import Letter
from tests.chaos.expectation import Expectation, Offered
from tests.chaos.scenario import Publication

# Dead-letter codes a good event may end with in a trial: the faults make them legitimate.
EXPECTED_CODES = frozenset({"vendor_unavailable", "project_not_active"})
# What a bad body must end as: the worker's own verdict on its first delivery.
UNREADABLE_CODES = frozenset(
    {"not_json", "invalid_envelope", "unknown_type", "invalid_data", "message_too_large"}
)


@dataclass(frozen=True)
class VendorProject:
    tool: str
    id: str
    marker: str | None  # "P/O" from Harvest code, Clockify note, Toggl name; None if ours not
    archived: bool


@dataclass(frozen=True)
class VendorClient:
    tool: str
    id: str
    name: str


@dataclass(frozen=True)
class StoredLink:
    project_id: str
    offering_id: str
    tool: str
    timesheet_project_id: str
    archived: bool


@dataclass
class Facts:
    publications: list[Publication]
    processed: set[tuple[str, str]]
    dead_letters: list[Letter]
    outcomes: list[dict]
    projects: list[VendorProject]
    clients: list[VendorClient]
    links: list[StoredLink]
    worker_alive: bool = True
    unexpected_exits: list[int] = field(default_factory=list)
    undrained: dict[str, int] = field(default_factory=dict)  # queue -> messages left
    escaped: list[str] = field(default_factory=list)  # exceptions that escaped to pika
    expectation: Expectation | None = None  # None: invariant (e) is not checked
    active_projects: set[str] = field(default_factory=set)  # the store's projects marked active


@dataclass(frozen=True)
class Failure:
    kind: str  # lost, reasonless, broker_dead_letter, bad_body, unexpected_code, dlq_crash,
    # duplicate_project, duplicate_client, relinked, dangling_link, archive_mismatch,
    # id_changed, worker_exited, escaped_exception, worker_dead, not_drained,
    # not_provisioned, not_live, not_activated, unwanted_link
    detail: str


def check(facts: Facts) -> list[Failure]:
    return [
        *none_lost(facts),
        *none_twice(facts),
        *ids_kept(facts.outcomes),
        *worker_healthy(facts),
        *liveness(facts).failures,
    ]


def none_lost(facts: Facts) -> list[Failure]:
    failures = []
    letters_by_key: dict[tuple[str, str], list[Letter]] = defaultdict(list)
    letters_by_publication: dict[int, list[Letter]] = defaultdict(list)
    for letter in facts.dead_letters:
        if letter.key:
            letters_by_key[letter.key].append(letter)
        if letter.publication is not None:
            letters_by_publication[letter.publication].append(letter)
    for letter in facts.dead_letters:
        what = _name(facts, letter)
        if letter.code == "unknown":
            failures.append(Failure("reasonless", f"{what}: dead letter without a reason"))
        elif letter.broker_made:
            ran = "processed before" if letter.key in facts.processed else "never processed"
            failures.append(
                Failure(
                    "broker_dead_letter",
                    f"{what}: dead-lettered by the broker ({letter.code}), {ran}",
                )
            )
        if letter.dlq_error:
            failures.append(Failure("dlq_crash", f"{what}: dlq cannot read it: {letter.dlq_error}"))
    seen: set[tuple[str, str]] = set()
    for index, p in enumerate(facts.publications):
        if p.key is None:
            letters = letters_by_publication.get(index, [])
            if not any(not lt.broker_made and lt.code in UNREADABLE_CODES for lt in letters):
                got = ", ".join(sorted({lt.code for lt in letters})) or "nothing"
                failures.append(
                    Failure(
                        "bad_body",
                        f"{p.label} (publication {index}): got {got}, not the "
                        "worker's unreadable verdict",
                    )
                )
            continue
        if p.key in seen:
            continue
        seen.add(p.key)
        letters = letters_by_key.get(p.key, [])
        if p.key not in facts.processed and not any(lt.code != "unknown" for lt in letters):
            failures.append(
                Failure(
                    "lost", f"{p.label} (event {p.key[1]}): neither processed nor dead-lettered"
                )
            )
        for code in sorted({lt.code for lt in letters if not lt.broker_made}):
            if code not in EXPECTED_CODES | {"unknown"}:
                failures.append(
                    Failure(
                        "unexpected_code", f"{p.label} (event {p.key[1]}): dead-lettered as {code}"
                    )
                )
    return failures


def none_twice(facts: Facts) -> list[Failure]:
    failures = []
    by_marker: dict[tuple[str, str], list[str]] = defaultdict(list)
    for project in facts.projects:
        if project.marker:
            by_marker[(project.tool, project.marker)].append(project.id)
    for (tool, marker), ids in sorted(by_marker.items()):
        if len(ids) > 1:
            failures.append(
                Failure(
                    "duplicate_project",
                    f"offering {marker}: {len(ids)} {tool} projects {', '.join(ids)}",
                )
            )
    by_name: dict[tuple[str, str], list[str]] = defaultdict(list)
    for client in facts.clients:
        by_name[(client.tool, " ".join(client.name.split()).casefold())].append(client.id)
    for (tool, name), ids in sorted(by_name.items()):
        if len(ids) > 1:
            failures.append(
                Failure("duplicate_client", f"{tool} has {len(ids)} clients named {name!r}")
            )
    linked: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for o in facts.outcomes:
        if o.get("type") in ("timesheet.provisioned", "timesheet.connected"):
            d = o["data"]
            linked[(d["project_id"], d["offering_id"])].add((d["tool"], d["timesheet_project_id"]))
    for (pid, oid), targets in sorted(linked.items()):
        if len(targets) > 1:
            shown = ", ".join(f"{t} {i}" for t, i in sorted(targets))
            failures.append(Failure("relinked", f"offering {pid}/{oid} linked to {shown}"))
    in_tool = {(p.tool, p.id): p for p in facts.projects}
    troubled = {lt.key for lt in facts.dead_letters if lt.key}
    troubled_projects = {p.project for p in facts.publications if p.key in troubled}
    for link in facts.links:
        where = f"offering {link.project_id}/{link.offering_id}"
        found = in_tool.get((link.tool, link.timesheet_project_id))
        if found is None:
            failures.append(
                Failure(
                    "dangling_link",
                    f"{where}: {link.tool} project {link.timesheet_project_id} is not in the tool",
                )
            )
        elif found.archived != link.archived and link.project_id not in troubled_projects:
            failures.append(
                Failure(
                    "archive_mismatch",
                    f"{where}: stored archived="
                    f"{link.archived}, {link.tool} says archived={found.archived}",
                )
            )
    return failures


def ids_kept(outcomes: list[dict]) -> list[Failure]:
    ids: dict[tuple[str, str, str | None], set[str]] = defaultdict(set)
    for o in outcomes:
        ids[(o.get("causationid"), o.get("type"), o["data"].get("offering_id"))].add(o["id"])
    return [
        Failure(
            "id_changed",
            f"{kind} of offering {offering} caused by {cause}: "
            f"{len(found)} ids {', '.join(sorted(found))}",
        )
        for (cause, kind, offering), found in sorted(ids.items(), key=str)
        if len(found) > 1
    ]


def worker_healthy(facts: Facts) -> list[Failure]:
    failures = [
        Failure("worker_exited", f"the worker exited by itself with status {code}")
        for code in facts.unexpected_exits
    ]
    for exception in sorted(set(facts.escaped)):
        times = facts.escaped.count(exception)
        failures.append(Failure("escaped_exception", f"{times}x escaped the worker: {exception}"))
    if not facts.worker_alive:
        failures.append(Failure("worker_dead", "the worker is not running after the trial"))
    if facts.undrained:
        left = ", ".join(f"{q}: {n}" for q, n in sorted(facts.undrained.items()))
        failures.append(Failure("not_drained", f"queues did not drain: {left}"))
    return failures


@dataclass
class Liveness:
    """Invariant (e) of one trial: its failures and the figures the table shows."""

    expected: int = 0  # offerings that should be live
    live: int = 0  # of those, live
    excused: int = 0  # of those, not live, with a legitimate dead letter as the evidence
    failures: list[Failure] = field(default_factory=list)


def liveness(facts: Facts) -> Liveness:
    expectation = facts.expectation
    found = Liveness()
    if expectation is None:
        return found
    excused_offerings: set[Offered] = set()
    excused_projects: set[str] = set()
    for letter in facts.dead_letters:
        concern = expectation.concerns.get(letter.key) if letter.key else None
        if concern is not None and not letter.broker_made and letter.code in EXPECTED_CODES:
            excused_offerings |= concern.offerings
            if concern.activates:
                excused_projects.add(concern.activates)
    links: dict[Offered, list[StoredLink]] = defaultdict(list)
    for link in facts.links:
        links[(link.project_id, link.offering_id)].append(link)
    in_tool = {(p.tool, p.id): p for p in facts.projects}
    found.expected = len(expectation.live)
    for pid, oid in sorted(expectation.live):
        problem = _not_live(links.get((pid, oid), []), in_tool)
        if problem is None:
            found.live += 1
        elif (pid, oid) in excused_offerings:
            found.excused += 1
        else:
            kind = "not_provisioned" if problem == "no link" else "not_live"
            found.failures.append(Failure(kind, f"offering {pid}/{oid}: {problem}"))
    for pid in sorted(expectation.active - facts.active_projects - excused_projects):
        found.failures.append(Failure("not_activated", f"project {pid} is not active"))
    for pid, oid in sorted(expectation.unlinked & links.keys()):
        made = ", ".join(f"{lk.tool} {lk.timesheet_project_id}" for lk in links[(pid, oid)])
        found.failures.append(
            Failure("unwanted_link", f"offering {pid}/{oid}: nothing asked for it, linked {made}")
        )
    return found


def _not_live(links: list[StoredLink], in_tool: dict[tuple[str, str], VendorProject]):
    """What keeps an offering's links from being one live project; None when nothing."""
    if not links:
        return "no link"
    if len(links) > 1:
        return f"{len(links)} links"
    [link] = links
    project = in_tool.get((link.tool, link.timesheet_project_id))
    if link.archived:
        return f"its link to {link.tool} {link.timesheet_project_id} is archived"
    if project is None or project.archived:
        state = "missing" if project is None else "archived"
        return f"{link.tool} project {link.timesheet_project_id} is {state} in the tool"
    return None


def _name(facts: Facts, letter: Letter) -> str:
    if letter.publication is not None and letter.publication < len(facts.publications):
        p = facts.publications[letter.publication]
        return f"{p.label} (publication {letter.publication})"
    return f"event {letter.key[1]}" if letter.key else "an unknown message"
