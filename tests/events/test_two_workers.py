"""Two workers delivering at once on one database (threads here; processes in the SIGKILL trial, the
same lease): every event once, in order per organization, never two requests of one organization to
an endpoint at the same time."""

from __future__ import annotations

import threading
import time

from sqlalchemy.orm import Session, sessionmaker

from slotwise.clock import SimulatedClock
from slotwise.services.context import Env
from slotwise.worker import Worker
from tests.events.support import SECRET_KEY, Receiver, WallClock, make_org
from tests.events.test_delivery import deliveries, emit
from tests.events.test_endpoints_api import register
from tests.factories import Api

ORGS, EVENTS = 3, 12


def test_two_workers_keep_each_organizations_order(api: Api, receiver: Receiver, sessions: sessionmaker[Session],
                                                   env: Env, clock: SimulatedClock, wall: WallClock) -> None:
    register(api, receiver.url)
    receiver.delay = 0.003  # holds each request open, so a second one of the same organization would overlap
    orgs = [make_org(sessions) for _ in range(ORGS)]
    emitted: dict[str, list[str]] = {org: [] for org in orgs}
    for _ in range(EVENTS):  # interleaved, as organizations act at once
        for org in orgs:
            emitted[org] += emit(sessions, org)
    stop = threading.Event()
    workers = [Worker(sessions, env=env, clock=clock, wall_clock=wall, secret_key=SECRET_KEY, handlers={})
               for _ in range(2)]
    threads = [threading.Thread(target=w.run_forever, args=(stop, 0.01)) for w in workers]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(receiver.received) < ORGS * EVENTS and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    for thread in threads:
        thread.join(10)
    got = {org: [r.webhook_id for r in receiver.received if r.json["organization"] == org] for org in orgs}
    assert got == emitted
    assert receiver.overlaps == 0
    assert {d.status for d in deliveries(sessions)} == {"delivered"}
