"""SIGKILL a webhook worker mid-delivery (SPEC §14: at least once, in order per organization), on SQLite
and PostgreSQL.

Worker processes (``webhook_child``) deliver the events of two organizations to a real receiver that
holds each request open for a moment; each is killed by SIGKILL while a request is in flight, and the
next one started. Its lease on the stream runs out (short here: ``LEASE_SECONDS``) and the next worker
sends the interrupted event again. Afterwards a last worker runs until nothing is pending: every event
was received at least once, with the same ``webhook-id`` on a repeat, each organization's first
receipts in the order written, and every delivery ``delivered``.

SLOTWISE_WEBHOOK_CRASH_TRIALS kills per database: 3 in `make test`, 20 in `make reliability`.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from slotwise.clock import wall_now
from slotwise.db import make_engine, make_sessionmaker
from slotwise.models import Base, WebhookDelivery
from slotwise.services import webhook_endpoints
from slotwise.services.webhook_secrets import Sealer
from tests.events.support import SECRET_KEY, Receiver, make_org, receiving
from tests.events.test_delivery import emit
from tests.reliability.harness import fresh_database, process_env, record, trials

TRIALS = trials("SLOTWISE_WEBHOOK_CRASH_TRIALS", 3)
LEASE_SECONDS = 0.5
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        request.getfixturevalue("postgres_engine")
    with fresh_database(str(request.param), tmp_path, f"webhook_crash_{request.param}") as url:
        yield url


def start_worker(url: str) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-m", "tests.reliability.webhook_child", str(LEASE_SECONDS)],
                             env=process_env(url, SLOTWISE_SECRET_KEY=SECRET_KEY), cwd=ROOT,
                             stdout=subprocess.PIPE, text=True, start_new_session=True)  # stderr: pytest's capture
    assert child.stdout is not None
    said = [child.stdout.readline()]
    while said[-1] and said[-1].strip() != "ready":
        said.append(child.stdout.readline())
    assert said[-1].strip() == "ready", "".join(said)
    return child


def pending(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as db:
        return int(db.scalar(select(func.count()).where(WebhookDelivery.status != "delivered")))


def test_a_killed_worker_loses_no_event(database: str, receiver: Receiver) -> None:
    engine = make_engine(database)
    Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as db:
        webhook_endpoints.create(db, sealer=Sealer(SECRET_KEY), url=receiver.url, types=None, description=None,
                                 now=wall_now())
    orgs = [make_org(sessions) for _ in range(2)]
    per_org = TRIALS + 5
    emitted: dict[str, list[str]] = {org: [] for org in orgs}
    for _ in range(per_org):
        for org in orgs:
            emitted[org] += emit(sessions, org)
    receiver.delay = 0.05
    rng = random.Random(12)
    killed_in_flight = 0
    for _ in range(TRIALS):
        receiver.arrived.clear()
        child = start_worker(database)
        assert receiver.arrived.wait(30), "the worker sent nothing"
        time.sleep(rng.uniform(0, 0.03))  # within the receiver's hold: the request is in flight
        killed_in_flight += sum(receiver.in_flight.values()) > 0
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    last = start_worker(database)
    deadline = time.monotonic() + 120
    while pending(sessions) and time.monotonic() < deadline:
        time.sleep(0.05)
    last.send_signal(signal.SIGTERM)
    last.wait(30)
    engine.dispose()

    counts = Counter(receiver.ids())
    every = [event for ids in emitted.values() for event in ids]
    assert set(counts) == set(every), "an event was lost, or one never written was sent"
    for org, ids in emitted.items():
        first_receipts = list(dict.fromkeys(r.webhook_id for r in receiver.received
                                            if r.json["organization"] == org))
        assert first_receipts == ids, f"{org}'s events were not first received in the order written"
    assert pending(sessions) == 0
    repeats = sum(n - 1 for n in counts.values())
    assert repeats <= TRIALS  # only a request in flight at a kill is sent again
    record(f"webhook_sigkill_{database.split(':')[0]}", trials=TRIALS, killed_in_flight=killed_in_flight,
           events=len(every), requests=sum(counts.values()), repeats=repeats, lost=0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as found:
        yield found
