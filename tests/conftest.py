"""The same suite on SQLite and on PostgreSQL (a real server over a real connection).

Database-backed tests take the ``backend`` fixture, parametrized over both. PostgreSQL comes from
``SLOTWISE_TEST_POSTGRES_URL`` or the local server; where none is reachable its cases are skipped,
except under CI (``CI=true``) or ``SLOTWISE_REQUIRE_POSTGRES=1``, where that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from slotwise.api.app import create_app
from slotwise.catalog import load_catalog
from slotwise.clock import SimulatedClock
from slotwise.config import Settings, normalize_database_url
from slotwise.db import make_engine, make_sessionmaker
from slotwise.gateway import SandboxGateway
from slotwise.models import Base
from slotwise.services.context import Env
from tests.factories import Api

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/slotwise_test"
START = datetime(2026, 11, 15, 9, 0, tzinfo=UTC)
OPERATOR_KEY = "test-operator-key"


def postgres_url() -> str:
    """This test run's own database on the configured server, so concurrent runs never collide."""
    base = os.environ.get("SLOTWISE_TEST_POSTGRES_URL", DEFAULT_PG)
    return f"{base.split('?')[0]}_{os.getpid()}"


def _postgres_required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("SLOTWISE_REQUIRE_POSTGRES") == "1"


def _ensure_postgres_database(url: str) -> str | None:
    """Create the test database if missing; None if the server is reachable, else why not."""
    target = normalize_database_url(url)
    name = target.rsplit("/", 1)[1].split("?")[0]
    admin = create_engine(target.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.scalar(text("select 1 from pg_database where datname = :n"), {"n": name})
            if not exists:
                conn.execute(text(f'create database "{name}"'))
    except Exception as error:  # unreachable server: reported, then skipped or failed
        return str(error).splitlines()[0]
    finally:
        admin.dispose()
    return None


@pytest.fixture(scope="session")
def postgres_engine() -> Iterator[Engine]:
    problem = _ensure_postgres_database(postgres_url())
    if problem is not None:
        if _postgres_required():
            pytest.fail(f"PostgreSQL is required here but unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    engine = make_engine(postgres_url(), pool_size=20, max_overflow=20)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()
    _drop_postgres_database(postgres_url())


def _drop_postgres_database(url: str) -> None:
    target = normalize_database_url(url)
    admin = create_engine(target.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'drop database if exists "{target.rsplit("/", 1)[1]}" with (force)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def engine(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Engine]:
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'test.db'}")
        Base.metadata.create_all(engine)
        yield engine
        engine.dispose()
        return
    pg: Engine = request.getfixturevalue("postgres_engine")
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with pg.begin() as conn:
        conn.execute(text(f"truncate {tables} cascade"))
    yield pg


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(START)


@pytest.fixture
def env() -> Env:
    return Env(catalog=load_catalog(), gateway=SandboxGateway())


@pytest.fixture
def settings(engine: Engine) -> Settings:
    return Settings(database_url=str(engine.url), operator_key=OPERATOR_KEY, catalog_path=None,
                    clock="simulated", clock_start=START, secure_cookies=False)


@pytest.fixture
def client(settings: Settings, engine: Engine, clock: SimulatedClock, env: Env) -> Iterator[TestClient]:
    app = create_app(settings, engine=engine, clock=clock, gateway=env.gateway, catalog=env.catalog)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def api(client: TestClient) -> Api:
    return Api(client, OPERATOR_KEY)
