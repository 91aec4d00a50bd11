"""Bringing a database's schema up to date with Alembic (what ``slotwise migrate`` and ``serve`` do)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from slotwise.config import normalize_database_url


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", "slotwise:migrations")
    config.set_main_option("sqlalchemy.url", normalize_database_url(database_url))
    return config


def upgrade(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "head")
