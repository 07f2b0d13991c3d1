"""Hypothesis strategies for inbound message bodies: the bad ones a producer (or an attacker,
or a broken bridge) can put on ``NS.inbound``, and good events of every type of the contract.

API (import from ``tests.strategies``):

``bad_bodies() -> SearchStrategy[bytes]``
    AMQP bodies that the worker must refuse: ``schemas.inbound.parse_inbound`` raises
    ``Unreadable`` for every one (never another exception), so each ends as a dead letter with
    an ``x-error-code`` on its first delivery. Kinds, each also available on its own in
    ``BAD_BODY_KINDS`` (name -> strategy) for a suite that wants to count them by kind:
    deep nesting (up to ~120 KB of ``[``/``{``, open or closed), huge numbers (thousands of
    digits, ``1e309``, ``NaN``, ``Infinity``), wrong types in known fields, unicode edge cases
    (NUL, lone surrogates as escapes and as raw bytes), invalid UTF-8, times in the future or
    before 1970 (year 1 included), huge/infinite/NaN hours, ``starts_on`` after ``ends_on``,
    truncated JSON, non-object JSON, unknown event types, bodies over 256 KiB, random bytes.
    RTL and zero-width characters are not bad on their own: they are drawn into bad bodies
    next to what makes them bad, and into good events' names.

``good_events(project_ids=None, *, types=None, clients=None) -> SearchStrategy[dict]``
    Valid inbound CloudEvents (dicts; ``body(event)`` gives the bytes) of the contract's
    types: ``deal.closed_won``, ``project.status_changed`` (with and without a snapshot and a
    selection), ``timesheet.provision_requested``, ``timesheet.connect_requested``.
    - ``project_ids``: draw the project from these ids (so a trial hits shared projects);
      default: a fresh random id. Offering ids are ``{project_id}-O1`` … ``-O3``, so a
      provision or connect request names an offering a snapshot of that project can have.
    - ``types``: restrict to these event types (default: all four).
    - ``clients``: ``(id, name)`` pairs; a project's client is picked from them by a stable
      hash of the project id, so every event about a project names the same client and
      several projects share one. Default: a client derived from the project id.
    Event ids are fresh ``uuid4`` values drawn at generation time (so events never collide
    on ``(source, id)`` across examples); ``time`` is the current UTC time minus up to an
    hour, always within the worker's clock-skew allowance.

``body(event: dict) -> bytes``: the JSON body of an event.

``EVENT_TYPES``: the four inbound types above.

``hostile_crm_text() -> SearchStrategy[str]``
    Strings a broken CRM or a forger puts into a CRM notification's fields, each of which
    the webhook ingress must answer with a 400 (never a 5xx) wherever it lands: NUL, lone
    surrogates, times that have no UTC equivalent (year 1 or 9999 with an offset) or lie
    outside the worker's range, ids that climb paths (``5/../7``), non-ASCII digits.
    ``crm.dumps`` writes the surrogates and NUL as JSON escapes, as a sender would.

``hostile_xml_declarations() -> SearchStrategy[bytes]``
    XML declarations naming encodings an XML reader cannot use (unknown names, codecs expat
    cannot drive, non-text codecs), to put in front of a Salesforce Outbound Message.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

EVENT_TYPES = (
    "deal.closed_won",
    "project.status_changed",
    "timesheet.provision_requested",
    "timesheet.connect_requested",
)
STATUSES = ("awaiting_start", "in_progress", "on_hold", "completed")
TOOLS = ("harvest", "toggl", "clockify")
MAX_BODY = 256 * 1024
RTL_AND_ZERO_WIDTH = "\u202e\u202d\u200f\u200e\u200b\u200c\u200d\u2060\ufeff"


def body(event: Any) -> bytes:
    return json.dumps(event).encode()


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


# -- good events ------------------------------------------------------------------------------
_names = st.text(
    alphabet=st.characters(categories=("Lu", "Ll", "Nd"), max_codepoint=0x2FF)
    | st.sampled_from(" -&.'"),
    min_size=1,
    max_size=30,
).filter(lambda s: s.strip() != "")
_decorated_names = st.tuples(_names, st.sampled_from(["", *RTL_AND_ZERO_WIDTH])).map(
    lambda p: p[0] + p[1] if p[1] else p[0]
)
_emails = st.sampled_from(["ana", "bo", "chen", "dee", "eli"]).map(lambda u: f"{u}@example.com")
_fresh_id = st.builds(lambda: str(uuid.uuid4()))


def _client_for(project_id: str, clients: Sequence[tuple[str, str]] | None) -> dict:
    if clients:
        cid, name = clients[zlib.crc32(project_id.encode()) % len(clients)]
        return {"id": cid, "name": name}
    return {"id": f"C-{project_id}", "name": f"Client of {project_id}"}


@st.composite
def _offering(draw, project_id: str, n: int) -> dict:
    starts = draw(st.none() | st.dates(date(2020, 1, 1), date(2030, 12, 31)))
    ends = None
    if starts is not None and draw(st.booleans()):
        ends = starts + timedelta(days=draw(st.integers(0, 400)))
    team = draw(st.lists(_emails, max_size=3, unique=True))
    return {
        "id": f"{project_id}-O{n}",
        "name": draw(_decorated_names),
        "sold": draw(st.booleans() | st.just(True)),
        "budget_hours": draw(st.none() | st.integers(0, 2000) | st.floats(0, 5000)),
        "starts_on": starts.isoformat() if starts else None,
        "ends_on": ends.isoformat() if ends else None,
        "billable": draw(st.booleans()),
        "kind": draw(st.sampled_from([None, "time_and_materials", "fixed_bid"])),
        "team": [
            {"email": e, "name": e.split("@")[0].title(), "hours": draw(st.integers(0, 100))}
            for e in team
        ],
    }


@st.composite
def _project(draw, project_id: str, clients) -> dict:
    count = draw(st.integers(1, 3))
    return {
        "id": project_id,
        "name": draw(_decorated_names),
        "client": _client_for(project_id, clients),
        "offerings": [draw(_offering(project_id, n)) for n in range(1, count + 1)],
    }


def _reference(tool: str) -> st.SearchStrategy[str]:
    if tool == "clockify":
        return st.text(alphabet="0123456789abcdef", min_size=24, max_size=24)
    digits = st.integers(1, 10**9).map(str)
    if tool == "harvest":
        return digits | digits.map(lambda d: f"https://acme.harvestapp.com/projects/{d}")
    return digits | digits.map(lambda d: f"https://track.toggl.com/1/projects/{d}")


@st.composite
def good_events(
    draw,
    project_ids: Sequence[str] | None = None,
    *,
    types: Sequence[str] | None = None,
    clients: Sequence[tuple[str, str]] | None = None,
) -> dict:
    type_ = draw(st.sampled_from(list(types or EVENT_TYPES)))
    if project_ids:
        project_id = draw(st.sampled_from(list(project_ids)))
    else:
        project_id = "P-" + uuid.uuid4().hex[:10]
    offering_id = f"{project_id}-O{draw(st.integers(1, 3))}"
    tool = draw(st.sampled_from(TOOLS))
    if type_ == "deal.closed_won":
        data: dict = {"project": draw(_project(project_id, clients))}
    elif type_ == "project.status_changed":
        data = {"project_id": project_id, "status": draw(st.sampled_from(STATUSES))}
        if draw(st.booleans()):
            ids = [f"{project_id}-O{n}" for n in (1, 2, 3)]
            data["selection"] = draw(st.dictionaries(st.sampled_from(ids), st.booleans()))
        if draw(st.booleans()):
            data["project"] = draw(_project(project_id, clients))
    elif type_ == "timesheet.provision_requested":
        data = {"project_id": project_id, "offering_id": offering_id}
        if draw(st.booleans()):
            data["tool"] = tool
    else:
        data = {
            "project_id": project_id,
            "offering_id": offering_id,
            "tool": tool,
            "timesheet_project": draw(_reference(tool)),
        }
    return {
        "specversion": "1.0",
        "id": draw(_fresh_id),
        "source": "crm-test",
        "type": type_,
        "time": _rfc3339(_now() - timedelta(seconds=draw(st.integers(0, 3600)))),
        "subject": project_id,
        "data": data,
    }


# -- bad bodies -------------------------------------------------------------------------------
_good_body = good_events().map(body)


def _set(event: dict, path: Sequence[Any], value: Any) -> dict:
    """A copy of ``event`` with the value at ``path`` replaced (every step but the last must
    exist; the generators below make sure of it)."""
    event = json.loads(json.dumps(event))
    node = event
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return event


def _closed_won(draw) -> dict:
    return draw(good_events(types=["deal.closed_won"]))


@st.composite
def _deep_nesting(draw) -> bytes:
    depth = draw(st.integers(1_100, 120_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    closed = draw(st.booleans())
    nest = opener * depth + ("1" + closer * depth if closed else "")
    where = draw(st.sampled_from(["top", "data", "name"]))
    if where == "top":
        return nest.encode()
    # Inside an otherwise valid event: the body is a JSON object, the parse still recurses.
    text = body(_closed_won(draw)).decode()
    marker = '"data": '
    if where == "name":
        marker = '"name": '
    head, _, tail = text.partition(marker)
    return (head + marker + nest + (", " if closed else "") + tail).encode()[: MAX_BODY - 1]


@st.composite
def _huge_numbers(draw) -> bytes:
    number = draw(
        st.sampled_from(["1e309", "-1e309", "NaN", "Infinity", "-Infinity", "1e400"])
        | st.integers(4_301, 7_000).map(lambda n: "9" * n)
        | st.integers(4_301, 7_000).map(lambda n: "-1" + "0" * n)
    )
    path = draw(
        st.sampled_from(
            [
                None,
                ("data", "project", "offerings", 0, "budget_hours"),
                ("data", "project", "offerings", 0, "team", 0, "hours"),
                ("data", "project", "id"),
                ("time",),
                ("specversion",),
                ("data",),
            ]
        )
    )
    if path is None:
        return number.encode()
    event = _closed_won(draw)
    if path[-1] == "hours":
        event = _set(event, path[:-2], [{"email": "ana@example.com"}])
    placeholder = "__HUGE_NUMBER__"
    return body(_set(event, path, placeholder)).replace(
        b'"' + placeholder.encode() + b'"', number.encode()
    )


_objects = st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
_numbers = st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False)
_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
_not_str = st.none() | _numbers | st.lists(st.integers(), max_size=2) | _objects
_not_object = st.none() | _numbers | _words | st.lists(st.integers(), max_size=2)
_not_list = (
    st.none() | _numbers | _words | st.dictionaries(_words, st.integers(), min_size=1, max_size=2)
)
_not_hours = _words | st.lists(st.integers(), max_size=2) | _objects | st.floats(-1e9, -0.001)
_not_date = _words | st.lists(st.integers(), max_size=2) | _objects
# Each known field with values of types it cannot take (pydantic's lax mode turns "12" into
# 12.0 and 0 into a date, so those are not drawn: they are not wrong).
_WRONG_TYPES: dict[tuple, st.SearchStrategy] = {
    ("specversion",): _not_str | st.sampled_from(["0.3", "1", "2.0"]),
    ("id",): _not_str | st.just(""),
    ("source",): _not_str | st.just(""),
    ("type",): _not_str,
    ("time",): _not_date | st.none(),
    ("data",): _not_object,
    ("data", "project"): _not_object,
    ("data", "project", "id"): _not_str | st.just(""),
    ("data", "project", "name"): _not_str,
    ("data", "project", "client"): _not_object,
    ("data", "project", "client", "id"): _not_str,
    ("data", "project", "client", "name"): _not_str,
    ("data", "project", "offerings"): _not_list,
    ("data", "project", "offerings", 0): _not_object,
    ("data", "project", "offerings", 0, "id"): _not_str,
    ("data", "project", "offerings", 0, "name"): _not_str,
    ("data", "project", "offerings", 0, "budget_hours"): _not_hours,
    ("data", "project", "offerings", 0, "starts_on"): _not_date,
    ("data", "project", "offerings", 0, "team"): _not_list,
    ("data", "project", "offerings", 0, "team", 0, "email"): _not_str | _words,
}


@st.composite
def _wrong_types(draw) -> bytes:
    """A known field of a deal.closed_won with a value of a type it cannot take."""
    path = draw(st.sampled_from(list(_WRONG_TYPES)))
    event = _closed_won(draw)
    if "team" in path:
        event = _set(event, ("data", "project", "offerings", 0, "team"), [{"email": "a@b.c"}])
    return body(_set(event, path, draw(_WRONG_TYPES[path])))


_STRING_FIELDS = [
    ("id",),
    ("source",),
    ("data", "project", "id"),
    ("data", "project", "name"),
    ("data", "project", "client", "id"),
    ("data", "project", "client", "name"),
    ("data", "project", "offerings", 0, "id"),
    ("data", "project", "offerings", 0, "name"),
    ("data", "project", "offerings", 0, "kind"),
]


@st.composite
def _unicode_edges(draw) -> bytes:
    """NUL or a lone surrogate in a string that can reach the store, as a JSON escape or as
    raw (surrogate-encoded) bytes; often next to RTL and zero-width characters."""
    path = draw(st.sampled_from(_STRING_FIELDS))
    bad = draw(st.sampled_from(["\x00", "\ud800", "\udfff", "\udc80", "\ud83d"]))
    decoration = draw(st.text(alphabet=RTL_AND_ZERO_WIDTH, max_size=3))
    placeholder = "__BAD_TEXT__"
    event = _set(_closed_won(draw), path, f"x{decoration}{placeholder}{decoration}")
    raw = body(event)
    if draw(st.booleans()):  # a JSON escape: \u0000, \ud800 …
        replacement = json.dumps(bad).strip('"').encode()
    else:  # raw bytes: json.loads decodes bytes with surrogatepass
        replacement = bad.encode("utf-8", "surrogatepass")
    return raw.replace(placeholder.encode(), replacement)


@st.composite
def _invalid_utf8(draw) -> bytes:
    raw = body(_closed_won(draw))
    junk = draw(
        st.sampled_from([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xf0\x28\x8c\xbc", b"\x80", b"\xfe"])
    )
    at = draw(st.integers(0, len(raw)))
    return raw[:at] + junk + raw[at:]


@st.composite
def _bad_times(draw) -> bytes:
    future = st.builds(lambda s: _rfc3339(_now() + timedelta(seconds=s)), st.integers(3600, 10**9))
    fixed = st.sampled_from(
        [
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00+14:00",
            "1969-12-31T23:59:59Z",
            "1900-01-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-01T00:00:00",  # no offset
            "yesterday",
        ]
    )
    ancient = st.datetimes(datetime(1, 1, 1), datetime(1969, 12, 31)).map(
        lambda d: _rfc3339(d.replace(tzinfo=UTC))
    )
    return body(_set(_closed_won(draw), ("time",), draw(future | fixed | ancient)))


@st.composite
def _bad_hours(draw) -> bytes:
    event = _closed_won(draw)
    value = draw(
        st.sampled_from(["1e309", "NaN", "Infinity", "-Infinity", "1e300", "-1"])
        | st.floats(1_000_001, 1e300).map(repr)
    )
    path = draw(
        st.sampled_from(
            [
                ("data", "project", "offerings", 0, "budget_hours"),
                ("data", "project", "offerings", 0, "team", 0, "hours"),
            ]
        )
    )
    if path[-1] == "hours":
        event = _set(event, path[:-2], [{"email": "ana@example.com"}])
    raw = body(_set(event, path, "__HOURS__"))
    return raw.replace(b'"__HOURS__"', value.encode())


@st.composite
def _reversed_dates(draw) -> bytes:
    starts = draw(st.dates(date(1971, 1, 1), date(2099, 1, 1)))
    ends = starts - timedelta(days=draw(st.integers(1, 3000)))
    event = _closed_won(draw)
    event = _set(event, ("data", "project", "offerings", 0, "starts_on"), starts.isoformat())
    return body(_set(event, ("data", "project", "offerings", 0, "ends_on"), ends.isoformat()))


@st.composite
def _truncated(draw) -> bytes:
    raw = draw(_good_body)
    return raw[: draw(st.integers(0, len(raw) - 1))]


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=5,
)
_non_object = _json_values.map(body)


@st.composite
def _unknown_type(draw) -> bytes:
    event = _closed_won(draw)
    known = set(EVENT_TYPES)
    type_ = draw(st.text(min_size=1, max_size=40).filter(lambda t: t not in known))
    return body(_set(event, ("type",), type_))


@st.composite
def _oversized(draw) -> bytes:
    event = _closed_won(draw)
    size = MAX_BODY + draw(st.integers(1, 4096))
    event["data"]["padding"] = "x" * size
    return body(event)


_random_bytes = st.binary(max_size=512)

BAD_BODY_KINDS: dict[str, st.SearchStrategy[bytes]] = {
    "deep_nesting": _deep_nesting(),
    "huge_numbers": _huge_numbers(),
    "wrong_types": _wrong_types(),
    "unicode_edges": _unicode_edges(),
    "invalid_utf8": _invalid_utf8(),
    "bad_times": _bad_times(),
    "bad_hours": _bad_hours(),
    "reversed_dates": _reversed_dates(),
    "truncated": _truncated(),
    "non_object": _non_object,
    "unknown_type": _unknown_type(),
    "oversized": _oversized(),
    "random_bytes": _random_bytes.filter(lambda b: not b.strip().startswith(b"{")),
}


def bad_bodies() -> st.SearchStrategy[bytes]:
    """Any kind of bad body; see the module docstring and ``BAD_BODY_KINDS``."""
    return st.one_of(*BAD_BODY_KINDS.values())


HOSTILE_TIMES = (
    "0001-01-01T00:00:00+14:00",  # no UTC equivalent: before year 1
    "0001-01-01T00:00:00+00:01",
    "9999-12-31T23:59:59-14:00",  # no UTC equivalent: after year 9999
    "9999-12-31T23:59:59-00:01",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "1969-12-31T23:59:59Z",
)
HOSTILE_IDS = ("5/../7", "../../v1/users/me", "7?x=1", "7#", "%2e%2e", "٣", "7\n8", " 7")


def hostile_crm_text() -> st.SearchStrategy[str]:
    """See the module docstring."""
    unstorable = st.sampled_from(["\x00", "\ud800", "\udfff", "\udc80"])
    return st.one_of(
        st.sampled_from(HOSTILE_TIMES),
        st.sampled_from(HOSTILE_IDS),
        st.builds(
            lambda a, bad, b: a + bad + b, st.text(max_size=5), unstorable, st.text(max_size=5)
        ),
    )


def hostile_xml_declarations() -> st.SearchStrategy[bytes]:
    """See the module docstring."""
    names = st.sampled_from(
        ["x-unknown", "UTF-32", "utf-7", "idna", "punycode", "rot13", "hex", "mbcs", "utf-16"]
    )
    return names.map(lambda name: f'<?xml version="1.0" encoding="{name}"?>'.encode())
