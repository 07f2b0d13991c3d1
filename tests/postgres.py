"""A PostgreSQL schema of one's own: for tests, the scale-out show and the benchmarks, which
share one server and must never see each other's tables."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg


@contextlib.contextmanager
def fresh_schema(url: str, prefix: str = "t") -> Iterator[str]:
    """A URL whose connections work in a new schema (their ``search_path``), dropped after."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{url}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
