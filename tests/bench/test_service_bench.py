"""The service benchmark's floors are slotwise's own statements (SPEC §10, bench/run.py): replayed by
pgbench and by a raw sqlite3 loop, they are as many per operation as slotwise sends, every one
succeeds, and they leave an organization exactly as slotwise's operations leave it. Nothing here is
timed: the figures themselves are only reported, by ``make bench``.
"""

from __future__ import annotations

import os
import shutil

import pytest
from sqlalchemy import create_engine, text

from bench import run
from slotwise.config import normalize_database_url

QUICK = 0.5  # seconds per figure, as ``python -m bench.run --quick``


def _postgres_base() -> str:
    """The configured server, as the suite finds it (tests/conftest.py); skipped where there is none
    or no pgbench, except under CI or SLOTWISE_REQUIRE_POSTGRES=1."""
    required = os.environ.get("CI", "").lower() == "true" or os.environ.get("SLOTWISE_REQUIRE_POSTGRES") == "1"
    base = os.environ.get("SLOTWISE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/slotwise_test")
    problem = None if shutil.which("pgbench") else "pgbench is not installed"
    if problem is None:
        admin = create_engine(normalize_database_url(base).rsplit("/", 1)[0] + "/postgres")
        try:
            with admin.connect() as conn:
                conn.execute(text("select 1"))
        except Exception as error:  # unreachable server: reported, then skipped or failed
            problem = str(error).splitlines()[0]
        finally:
            admin.dispose()
    if problem is not None:
        (pytest.fail if required else pytest.skip)(f"PostgreSQL benchmark unavailable: {problem}")
    return base


@pytest.mark.parametrize("database", ["SQLite", "PostgreSQL"])
def test_each_floor_replays_exactly_the_statements_slotwise_sends(database: str) -> None:
    rows = run.sqlite(QUICK) if database == "SQLite" else run.postgres(_postgres_base(), [1], QUICK)

    lane = database == "PostgreSQL"  # the fast lane's operations run on PostgreSQL only
    assert [row.operation for row in rows] == [op.label for op in run.OPERATIONS if lane or op.lane is None]
    for row in rows:
        assert row.slotwise.ops >= run.PER_ORG and row.floor.ops >= run.PER_ORG, row
        assert row.slotwise.statements == row.floor.statements, row  # 3 to create, 8 to add, 5 to remove, 1 to spend
    assert run.problems(rows) == []


def test_the_postgres_floor_binds_every_parameter_as_a_pgbench_variable() -> None:
    """``-M prepared`` needs the statements' texts fixed: only variables vary, as with psycopg."""
    statements = [run.Statement("SELECT organizations.id FROM organizations WHERE organizations.id = "
                                "%(org_id)s::VARCHAR AND organizations.name != %(name)s::VARCHAR FOR UPDATE",
                                (("org_id", "org", "1000000000000000000"), ("name", None, "x y")), False)]

    script, constants = run.pgbench_script(statements)

    assert ("SELECT organizations.id FROM organizations WHERE organizations.id = :org::VARCHAR "
            "AND organizations.name != :c0_name::VARCHAR FOR UPDATE;") in script.splitlines()
    assert constants == {"c0_name": "x y"}
    assert script.splitlines()[-1] == "COMMIT;"
