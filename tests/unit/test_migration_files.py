"""The migration files themselves: the same numbered steps for both databases, in order."""

from __future__ import annotations

import re

from adapters import migrate
from adapters.sql import Postgres, Sqlite


def ids(dialect) -> list[str]:
    return [m.id for m in migrate.known_migrations(dialect)]


def test_both_databases_have_the_same_migrations_numbered_in_order():
    sqlite, postgres = ids(Sqlite("unused.db")), ids(Postgres("unused"))

    assert sqlite == postgres
    assert all(re.fullmatch(r"\d{4}_[a-z0-9_]+", m) for m in sqlite), sqlite
    numbers = [int(migrate.version_of(m)) for m in sqlite]
    assert numbers == list(range(1, len(numbers) + 1))


def test_the_first_migration_is_the_release_0_1_schema_on_each_database():
    for name, stamp in (("sqlite", "DATETIME"), ("postgresql", "TIMESTAMP WITH TIME ZONE")):
        sql = (migrate.MIGRATIONS / name / "0001_initial.sql").read_text()
        tables = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", sql)
        assert tables[0] == migrate.RELEASE_0_1_TABLE and len(tables) == 7
        assert sql.count(f"_at {stamp}") == 4  # snapshot, status, mapped, started
