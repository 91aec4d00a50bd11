"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text

from slotwise.db import make_engine
from slotwise.migrate import upgrade
from slotwise.models import Base
from tests.conftest import postgres_url


@pytest.fixture
def migrated_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
        return
    pg: Engine = request.getfixturevalue("postgres_engine")
    url = postgres_url() + "_migrations"
    server, name = url.rsplit("/", 1)
    admin = make_engine(server + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'drop database if exists "{name}"'))
        conn.execute(text(f'create database "{name}"'))
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'drop database if exists "{name}" with (force)'))
    admin.dispose()
    del pg


def test_upgrade_head_matches_the_models(migrated_url: str) -> None:
    upgrade(migrated_url)
    upgrade(migrated_url)  # a second run is a no-op, as `serve` relies on
    engine = make_engine(migrated_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_processes_starting_together_migrate_one_after_another(migrated_url: str) -> None:
    """Four servers started at once on an empty database all come up (no duplicate-table race)."""
    script = "import sys; from slotwise.migrate import upgrade; upgrade(sys.argv[1])"
    runs = [subprocess.Popen([sys.executable, "-c", script, migrated_url], stderr=subprocess.PIPE, text=True)
            for _ in range(4)]
    failures = [err for run in runs if (err := run.communicate(timeout=120)[1]) and run.returncode != 0]
    assert failures == []
    engine = make_engine(migrated_url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()
