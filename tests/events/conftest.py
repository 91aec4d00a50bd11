"""Webhook tests run with SLOTWISE_SECRET_KEY set (the settings here), a real receiver and a worker
whose wall clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from slotwise.clock import SimulatedClock
from slotwise.config import Settings
from slotwise.services.context import Env
from slotwise.worker import Worker
from tests.conftest import OPERATOR_KEY, START
from tests.events.support import SECRET_KEY, Receiver, WallClock, receiving


@pytest.fixture
def settings(engine: Engine) -> Settings:
    return Settings(database_url=str(engine.url), operator_key=OPERATOR_KEY, catalog_path=None, clock="simulated",
                    clock_start=START, secure_cookies=False, secret_key=SECRET_KEY)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as found:
        yield found


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


@pytest.fixture
def worker(sessions: sessionmaker[Session], env: Env, clock: SimulatedClock, wall: WallClock) -> Iterator[Worker]:
    made = Worker(sessions, env=env, clock=clock, wall_clock=wall, secret_key=SECRET_KEY, handlers={})
    yield made
    made.close()
