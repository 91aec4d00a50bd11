"""A webhook worker process for the SIGKILL trial (``test_webhook_crash.py``): it sends what the
endpoints are owed until it is killed (or, given SIGTERM, stops).

Run as ``python -m tests.reliability.webhook_child <lease seconds>`` with the trial's ``SLOTWISE_*``
environment (the database and SLOTWISE_SECRET_KEY). The short lease lets the next worker take over a
killed one's stream quickly; the delivery path is the worker's own.
"""

from __future__ import annotations

import signal
import sys
import threading
from datetime import timedelta

from slotwise.catalog import load_catalog
from slotwise.clock import SystemClock
from slotwise.config import Settings
from slotwise.db import make_engine, make_sessionmaker
from slotwise.gateway import SandboxGateway
from slotwise.services.context import Env
from slotwise.worker import Worker


def main() -> None:
    settings = Settings.from_env()
    sessions = make_sessionmaker(make_engine(settings.database_url, concurrency=1))
    worker = Worker(sessions, env=Env(catalog=load_catalog(), gateway=SandboxGateway()), clock=SystemClock(),
                    handlers={}, secret_key=settings.secret_key, webhook_lease=timedelta(seconds=float(sys.argv[1])))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    worker.run_forever(stop, poll=0.02)


if __name__ == "__main__":
    main()
