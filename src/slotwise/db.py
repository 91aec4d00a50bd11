"""Engines and sessions. One transaction per request or command, committed at the edge."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from slotwise.config import DEFAULT_CONCURRENCY, normalize_database_url

# Waiting longer than this for a pooled connection is answered 503 ``unavailable`` (api/app.py). With
# admission control in front, a server request never waits for one; this bounds everything else.
POOL_TIMEOUT_SECONDS = 5


def make_engine(url: str, *, concurrency: int = DEFAULT_CONCURRENCY, **kwargs: Any) -> Engine:
    """An engine whose pool holds one connection per request in flight (``SLOTWISE_CONCURRENCY``,
    see config.py) and no overflow; ``kwargs`` override any of it."""
    url = normalize_database_url(url)
    # Statement parameters hold password hashes and token hashes: keep them out of every error
    # message and traceback the driver raises.
    kwargs.setdefault("hide_parameters", True)
    if not in_memory(url):  # an in-memory SQLite database has a pool of its own kind, unsized
        kwargs.setdefault("pool_size", concurrency)
        kwargs.setdefault("max_overflow", 0)
        kwargs.setdefault("pool_timeout", POOL_TIMEOUT_SECONDS)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        _serialize_sqlite_writers(engine)
        return engine
    # No pre-ping: it costs a round trip on every checkout, i.e. every request. A connection the
    # server dropped fails its first statement instead (503 ``unavailable``, Retry-After), and
    # SQLAlchemy then discards the whole pool, so the retry gets a fresh connection.
    kwargs.setdefault("pool_recycle", 1800)
    return create_engine(url, pool_pre_ping=False, **kwargs)


def in_memory(url: str) -> bool:
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and (
        parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"
    )


def _serialize_sqlite_writers(engine: Engine) -> None:
    """SQLite has no row locks: every transaction takes the write lock up front (BEGIN IMMEDIATE).

    A deferred transaction that reads, then writes, can interleave with another and fail or act on
    a stale count; taking the lock first makes each check-then-change atomic, as FOR UPDATE does on
    PostgreSQL.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=True)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed if the block ends normally, rolled back otherwise."""
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
