"""Bringing a database's schema up to date with Alembic (what ``slotwise migrate`` and ``serve`` do)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from sqlalchemy import make_url, text

from slotwise.config import normalize_database_url
from slotwise.db import make_engine

# Any fixed 64-bit number shared by every slotwise process: the advisory lock's name.
MIGRATION_LOCK = 0x5107_5E_01


@contextmanager
def _file_lock(sqlite_url: str) -> Iterator[None]:
    path = make_url(sqlite_url).database
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", "slotwise:migrations")
    config.set_main_option("sqlalchemy.url", normalize_database_url(database_url))
    return config


def upgrade(database_url: str) -> None:
    """Upgrade to head. On PostgreSQL, processes starting together take turns (an advisory lock), so
    the second finds the schema already there instead of racing to create it. SQLite processes take
    turns on a lock file beside the database."""
    config = alembic_config(database_url)
    url = normalize_database_url(database_url)
    if url.startswith("sqlite"):
        with _file_lock(url):
            command.upgrade(config, "head")
        return
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("select pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            conn.commit()
            try:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
            finally:
                conn.execute(text("select pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                conn.commit()
    finally:
        engine.dispose()
