"""Which partition a message belongs to, and which worker owns a partition.

A project's events must be applied in the order they were published, also when several
worker processes share the work. Every message of a project goes to one partition (a hash of
its project id), each partition is consumed by one worker at a time (a single-active-consumer
queue), and each worker subscribes to the partitions that rendezvous hashing assigns it among
the live workers. Both functions are pure and stable across processes and releases: they use
CRC-32 and SHA-1, never Python's ``hash()``, which is salted per process.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable
from typing import Any

import structlog

from schemas.errors import Unreadable, UnreadableCode
from schemas.inbound import Inbound, parse_inbound

log = structlog.get_logger()

UNREADABLE_PARTITION = 0  # a body with no project id: the worker there dead-letters it


def read(body: bytes) -> tuple[Inbound | Unreadable, str | None]:
    """The parsed message and its project id (None for an unreadable body). The one place
    that says which project a message is about: the lanes and the partitions both use it."""
    try:
        parsed = parse_inbound(body)
        return parsed, parsed.project_id
    except Unreadable as exc:
        return exc, None
    except Exception as exc:  # parse_inbound raises only Unreadable; a bug must not loop
        log.exception("parse_crashed")
        return Unreadable(UnreadableCode.INVALID_DATA, f"unreadable ({type(exc).__name__})"), None


def partition_of(project_id: str | None, count: int) -> int:
    if project_id is None:
        return UNREADABLE_PARTITION
    return zlib.crc32(project_id.encode()) % count


def assigned(member: Any, members: Iterable[Any], count: int) -> set[int]:
    """The partitions ``member`` owns among ``members``: rendezvous (highest random weight)
    hashing with bounded loads. Each partition, in turn, goes to the member of highest
    weight for it that still has room; every member gets ``count // n`` or one more, so
    that n workers share the partitions evenly (plain rendezvous hashing leaves some with
    twice the average). A member joining or leaving moves few partitions: most keep the
    owner of highest weight. Every worker computes the same answer from the same members."""
    everyone = sorted(set(members) | {member})
    base, extra = divmod(count, len(everyone))
    load = dict.fromkeys(everyone, 0)
    owners = {}
    for partition in range(count):
        ranked = sorted(everyone, key=lambda m: _weight(partition, m), reverse=True)
        one_more = sum(1 for m in everyone if load[m] > base) < extra  # still one to give
        owner = next(m for m in ranked if load[m] < base or (load[m] == base and one_more))
        load[owner] += 1
        owners[partition] = owner
    return {p for p, owner in owners.items() if owner == member}


def _weight(partition: int, member: Any) -> bytes:
    return hashlib.sha1(f"{partition}:{member}".encode()).digest()
