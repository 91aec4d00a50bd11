"""Real slotwise processes for the reliability trials: fresh databases, `slotwise serve` on free
loopback ports, CLI commands, SIGKILL, and HTTP clients that speak to them.

Nothing here is mocked: the servers are the installed ``slotwise`` command, the databases a SQLite
file or a PostgreSQL database of its own on the local server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, select, text, update

from slotwise.api.app import create_app
from slotwise.catalog import load_catalog
from slotwise.config import Settings, normalize_database_url
from slotwise.db import make_engine, make_sessionmaker
from slotwise.doctor import Diagnosis, run_doctor
from slotwise.models import Base, ClockState, Organization, Subscription
from slotwise.periods import period_at_index
from tests.conftest import OPERATOR_KEY, _drop_postgres_database, _ensure_postgres_database, postgres_url
from tests.factories import Api

SLOTWISE = str(Path(sys.executable).with_name("slotwise"))
DECLINED_LAST4 = ("0002", "9995")  # the sandbox's declining test cards
CLOCK_START = "2026-11-15T09:00:00Z"


def trials(name: str, default: int) -> int:
    """How many trials of one kind: a few in `make test`, many in `make reliability`."""
    return int(os.environ.get(name, default))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def fresh_database(backend: str, folder: Path, name: str) -> Iterator[str]:
    """A new, empty database for one group of trials; PostgreSQL ones are dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / (name + '.db')}"
        return
    url = f"{postgres_url()}_{name}"
    _drop_postgres_database(url)
    problem = _ensure_postgres_database(url)
    assert problem is None, problem
    try:
        yield url
    finally:
        _drop_postgres_database(url)


def process_env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTWISE_")}
    env.update(SLOTWISE_DATABASE_URL=url, SLOTWISE_OPERATOR_KEY=OPERATOR_KEY, SLOTWISE_CLOCK="simulated",
               SLOTWISE_CLOCK_START=CLOCK_START, **extra)
    return env


def run_cli(url: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SLOTWISE, *args], env=process_env(url), capture_output=True, text=True,
                          timeout=timeout, check=False)


def doctor_cli(url: str, *org_ids: str) -> subprocess.CompletedProcess[str]:
    """``slotwise doctor`` as an operator would run it after a crash."""
    return run_cli(url, "doctor", *(arg for org in org_ids for arg in ("--org", org)))


@dataclass
class Server:
    """One ``slotwise serve`` process; ``kill()`` is SIGKILL: no shutdown code runs."""

    url: str
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Server:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([SLOTWISE, "serve", "--port", str(self.port)], env=process_env(self.url),
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"slotwise serve exited: {self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/v1/plans", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"slotwise serve did not answer in {timeout}s: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def client(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)

    def api(self) -> Api:
        """The test factories' API helper, speaking HTTP to this process."""
        return Api(self.client(), OPERATOR_KEY)  # type: ignore[arg-type]  # an httpx.Client, like TestClient


class Store:
    """Direct access to a trial database, for what no API offers: reading the clock's raw state,
    jumping the simulated clock without running the sweep, and the doctor."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = make_engine(url)
        self.sessions = make_sessionmaker(self.engine)
        # Plain reads for polling: without slotwise's BEGIN IMMEDIATE a SQLite reader never waits
        # for (or holds up) the writer it is watching.
        self.reader: Engine = create_engine(normalize_database_url(url))

    def now(self) -> datetime:
        with self.sessions() as db:
            state = db.get(ClockState, 1)
            assert state is not None
            return state.now

    def set_clock(self, to: datetime) -> None:
        """Move the clock without sweeping, so that the next billing run finds the work due."""
        with self.sessions.begin() as db:
            db.execute(update(ClockState).where(ClockState.id == 1).values(now=to))

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.reader.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def renewals_due(self, at: datetime) -> int:
        """How many renewal invoices a complete sweep at ``at`` must issue: one per period of each
        renewing subscription that ends by then. A subscription ending on the free plan issues none;
        one whose card is declined issues one, then its retries (1, 3, 5 days) run out before its
        next period ends and it is unpaid, which issues none (SPEC §3); a past-due one likewise."""
        with self.sessions() as db:
            due = 0
            for sub in db.scalars(select(Subscription).where(Subscription.status == "active")):
                if sub.scheduled_plan_code == "free":
                    continue
                org = db.get(Organization, sub.org_id)
                declined = org is not None and org.card_last4 in DECLINED_LAST4
                k = sub.period_index
                while period_at_index(sub.anchor_at, k).end <= at:
                    due, k = due + 1, k + 1
                    if declined:
                        break
            return due

    def doctor(self, org_ids: list[str] | None = None) -> Diagnosis:
        return run_doctor(self.sessions, load_catalog(), org_ids=org_ids)

    def close(self) -> None:
        self.engine.dispose()
        self.reader.dispose()


def headers(token: str, key: str | None = None) -> dict[str, str]:
    found = {"Authorization": f"Bearer {token}"}
    if key is not None:
        found["Idempotency-Key"] = key
    return found


# Figures of the campaign (trials run, interesting outcomes), printed at the end of the pytest run
# by ``conftest.pytest_terminal_summary`` and copied into docs/RELIABILITY.md.
FIGURES: dict[str, dict[str, int]] = {}


def record(kind: str, **counts: int) -> None:
    entry = FIGURES.setdefault(kind, {})
    for name, n in counts.items():
        entry[name] = entry.get(name, 0) + n


def record_worst(kind: str, **values: int) -> None:
    """Figures where the worst trial is the one to report (latencies, wall times): kept, not summed."""
    entry = FIGURES.setdefault(kind, {})
    for name, n in values.items():
        entry[name] = max(entry.get(name, n), n)


@contextlib.contextmanager
def fuzz_client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                settings: Callable[[str], Settings]) -> Iterator[TestClient]:
    """For schemathesis: the app on a fresh database of the module fixture's backend (``request.param``,
    an empty SQLite file or the run's PostgreSQL truncated), server errors answered rather than raised."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
        engine: Engine | None = None
    else:
        engine = request.getfixturevalue("postgres_engine")
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"truncate {tables} cascade"))
        url = str(engine.url)
    app = create_app(settings(url), engine=engine)
    if engine is None:
        Base.metadata.create_all(app.state.slotwise.sessions.kw["bind"])
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
