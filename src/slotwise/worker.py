"""The worker: claim a due job, run its handler in a transaction of its own, record the outcome.

Run in-process by ``slotwise serve`` (one per server process, a thread started in the app's
lifespan; ``SLOTWISE_WORKER=0`` or ``serve --no-worker`` turns it off) and standalone by
``slotwise worker``. Any number may run at once on one database: see ``slotwise.jobs``.

When no job is due, it sends what webhook endpoints are owed: it claims one due stream (an endpoint's
events of one organization) and sends them in order (``services.webhook_delivery``), signing with the
secrets that SLOTWISE_SECRET_KEY opens (without it, it sends none).

A job's transaction is the worker's edge: the job's removal and the handler's writes commit
together. A handler that raises is rolled back whole; the job then keeps the error, and its
``run_at`` is backed off for a later try.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from slotwise import jobs
from slotwise.clock import Clock, wall_now
from slotwise.config import secret_key_from
from slotwise.db import in_memory, make_engine, make_sessionmaker
from slotwise.jobs import ClaimedJob, Handler, JobContext
from slotwise.services import webhook_delivery
from slotwise.services.context import Env
from slotwise.services.webhook_secrets import Sealer

log = logging.getLogger("slotwise.worker")

POLL_SECONDS = 0.5
# How long a claim is good for. Only a worker that died mid-job lets it run out (a live worker's
# handler commits or fails well within it); the job is then claimed again.
LEASE = timedelta(minutes=5)


def default_handlers() -> dict[str, Handler]:
    """Every handler slotwise has, registered by the modules of their capabilities."""
    from slotwise.services import processor_events, recharges  # noqa: F401  (register their kinds)

    return jobs.registered_handlers()


class Worker:
    def __init__(self, sessions: sessionmaker[Session], *, env: Env, clock: Clock,
                 handlers: Mapping[str, Handler] | None = None,
                 wall_clock: Callable[[], datetime] = wall_now, lease: timedelta = LEASE,
                 secret_key: str | None = None, webhook_lease: timedelta = webhook_delivery.LEASE,
                 sender: webhook_delivery.Sender | None = None) -> None:
        """``secret_key``: SLOTWISE_SECRET_KEY, read from the environment when not given."""
        self.sessions = sessions
        self.ctx = JobContext(env=env, clock=clock)
        self.handlers = dict(handlers) if handlers is not None else default_handlers()
        self.wall_clock = wall_clock
        self.lease = lease
        key = secret_key if secret_key is not None else secret_key_from(dict(os.environ))
        self.sealer = Sealer(key) if key else None
        self.webhook_lease = webhook_lease
        self._sender = sender  # made at the first webhook sent (an HTTP client with its pool)

    def claim(self) -> ClaimedJob | None:
        """Lease the next due job (committed at once), or None when nothing is due."""
        with self.sessions.begin() as db:
            return jobs.claim_next(db, now=self.wall_clock(), lease=self.lease)

    def run(self, job: ClaimedJob) -> bool:
        """Run a claimed job; True if its handler succeeded (the job is gone), False if it failed
        (kept for a later try) or our lease had lapsed (another worker has it)."""
        handler = self.handlers.get(job.kind)
        try:
            with self.sessions.begin() as db:
                if not jobs.take_for_running(db, job):
                    log.warning("slotwise worker: the lease on job %s (%s) lapsed; left to its new owner",
                                job.id, job.kind)
                    return False
                if handler is None:
                    raise LookupError(f"no handler for {job.kind!r} jobs")
                handler(db, job, self.ctx)
        except Exception as error:
            log.exception("slotwise worker: job %s (%s), attempt %d, failed", job.id, job.kind, job.attempts)
            with self.sessions.begin() as db:
                jobs.record_failure(db, job, f"{type(error).__name__}: {error}", now=self.wall_clock())
            return False
        return True

    def run_once(self) -> bool:
        """Claim and run one due job, or else send one due webhook stream; False when neither was due."""
        job = self.claim()
        if job is None:
            return self.deliver_webhooks()
        self.run(job)
        return True

    def deliver_webhooks(self) -> bool:
        """Claim one due webhook stream and send what it owes, in order; False when none was due."""
        if self.sealer is None:
            return False
        if self._sender is None:
            self._sender = webhook_delivery.Sender()
        return webhook_delivery.deliver_due(self.sessions, sender=self._sender, sealer=self.sealer,
                                            wall_clock=self.wall_clock, lease=self.webhook_lease)

    def close(self) -> None:
        if self._sender is not None:
            self._sender.close()
            self._sender = None

    def run_pending(self, limit: int = 1000) -> int:
        """Run due jobs until none is left (or ``limit``); how many were run."""
        done = 0
        while done < limit and self.run_once():
            done += 1
        return done

    def run_forever(self, stop: threading.Event, poll: float = POLL_SECONDS) -> None:
        """Work until ``stop`` is set, looking for due jobs every ``poll`` seconds when idle. A database
        that is down is logged and tried again; the loop never dies of it."""
        try:
            while not stop.is_set():
                try:
                    worked = self.run_once()
                except Exception:
                    log.exception("slotwise worker: could not claim a job; trying again shortly")
                    worked = False
                if not worked:
                    stop.wait(poll)
        finally:
            self.close()


class BackgroundWorker:
    """A worker on a daemon thread, for a server process."""

    def __init__(self, worker: Worker, poll: float = POLL_SECONDS, engine: Engine | None = None) -> None:
        self.engine = engine  # the worker's own, disposed of when it stops
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=worker.run_forever, args=(self.stopping, poll),
                                       name="slotwise-worker", daemon=True)

    def start(self) -> BackgroundWorker:
        self.thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Let the job in hand finish (a charge is never cut in half), then return."""
        self.stopping.set()
        self.thread.join(timeout)
        if self.engine is not None:
            self.engine.dispose()


def start_in_process(engine: Engine, *, env: Env, clock: Clock, secret_key: str | None = None) -> BackgroundWorker:
    """A worker for this server process, on a thread, with a connection of its own: the requests'
    pool is sized to the requests admitted at once (config.py), so the worker must not take from it."""
    url = engine.url.render_as_string(hide_password=False)
    own = None if in_memory(url) else make_engine(url, concurrency=1)
    worker = Worker(make_sessionmaker(own or engine), env=env, clock=clock, secret_key=secret_key)
    return BackgroundWorker(worker, engine=own).start()
