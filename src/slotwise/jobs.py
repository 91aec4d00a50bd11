"""The job queue: rows of the ``jobs`` table, in the same database as everything else, so that a job
is written in the very transaction that needs it (it exists if and only if that commits).

A job is claimed by one worker at a time (``slotwise.worker``): the claim commits a lease
(``locked_until``, wall-clock time) and the handler's transaction then deletes the job, guarded by
that lease, before running it, so the job's removal commits with the handler's work or not at all.
On PostgreSQL the claim skips rows another worker holds (``FOR UPDATE SKIP LOCKED``) and the
deleted row stays locked while its handler runs; on SQLite every transaction takes the write lock
first (``BEGIN IMMEDIATE``, see ``db.py``), which serializes claims. A worker that died leaves its
lease to expire and the job is claimed again.

Handlers are registered by ``kind`` and live with their capability (``services.recharges``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from slotwise.clock import Clock
from slotwise.models import Job, UTCDateTime, new_id
from slotwise.services.context import Env

LAST_ERROR_LENGTH = 300  # models.Job.last_error
MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: str
    kind: str
    org_id: str | None
    payload: dict[str, Any]
    attempts: int  # this claim included
    lease: datetime  # the ``locked_until`` this claim wrote: the proof it is still ours


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler may use besides its session: the catalog and gateway, and the billing clock
    (a job's ``run_at`` is wall-clock time; what it bills is at ``clock.now(db)``)."""

    env: Env
    clock: Clock


class Handler(Protocol):
    def __call__(self, db: Session, job: ClaimedJob, ctx: JobContext) -> None: ...


_HANDLERS: dict[str, Handler] = {}


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function below as the handler of ``kind`` jobs (one per kind)."""

    def register(fn: Handler) -> Handler:
        if _HANDLERS.get(kind, fn) is not fn:
            raise ValueError(f"a handler for {kind!r} jobs is already registered")
        _HANDLERS[kind] = fn
        return fn

    return register


def registered_handlers() -> dict[str, Handler]:
    return dict(_HANDLERS)


def new_job_id() -> str:
    return new_id("job")


def enqueue(db: Session, kind: str, org_id: str | None, payload: dict[str, Any] | None, run_at: datetime,
            *, job_id: str | None = None, created_at: datetime | None = None) -> str:
    """Add a job in the caller's transaction (committed with it, or never there); its id.

    ``run_at`` is wall-clock time (the worker polls by the wall clock, whatever the billing clock);
    ``created_at`` defaults to it (a job is mostly due as it is written)."""
    job_id = job_id or new_job_id()
    db.execute(_INSERT, [{"id": job_id, "kind": kind, "org_id": org_id, "payload": json.dumps(payload or {}),
                          "run_at": run_at, "attempts": 0, "locked_until": None, "last_error": None,
                          "created_at": created_at or run_at}])
    return job_id


_INSERT = insert(Job)


def _claim_statement() -> Any:
    now = bindparam("now", type_=UTCDateTime())
    due = (select(Job.id).where(Job.run_at <= now, or_(Job.locked_until.is_(None), Job.locked_until <= now))
           .order_by(Job.run_at).limit(1)
           .with_for_update(skip_locked=True))  # SQLite: no row locks, BEGIN IMMEDIATE serializes instead
    return (update(Job).where(Job.id == due.scalar_subquery())
            .values(locked_until=bindparam("lease", type_=UTCDateTime()), attempts=Job.attempts + 1)
            .returning(Job.id, Job.kind, Job.org_id, Job.payload, Job.attempts)
            .execution_options(synchronize_session=False))


_CLAIM = _claim_statement()


def claim_next(db: Session, *, now: datetime, lease: timedelta) -> ClaimedJob | None:
    """Lease the job due first (by ``run_at``) that no live lease holds, one statement; the caller
    commits at once, so the lease is visible to every other worker."""
    until = now + lease
    row = db.execute(_CLAIM, {"now": now, "lease": until}).first()
    if row is None:
        return None
    return ClaimedJob(row.id, row.kind, row.org_id, json.loads(row.payload or "{}"), row.attempts, until)


_TAKE = (delete(Job).where(Job.id == bindparam("id"), Job.locked_until == bindparam("lease", type_=UTCDateTime()))
         .returning(Job.id).execution_options(synchronize_session=False))


def take_for_running(db: Session, job: ClaimedJob) -> bool:
    """Delete the job in the handler's transaction if our lease still holds it; False if it lapsed and
    another worker claimed the job since (then this worker must not run it)."""
    return db.execute(_TAKE, {"id": job.id, "lease": job.lease}).first() is not None


def backoff(attempts: int) -> timedelta:
    """10 s, 20 s, 40 s … after the 1st, 2nd, 3rd failure; never more than an hour."""
    return min(timedelta(seconds=5 * 2 ** min(attempts, 20)), MAX_BACKOFF)


def record_failure(db: Session, job: ClaimedJob, error: str, *, now: datetime) -> bool:
    """Release a failed job for a later try (``run_at`` backed off), keeping why; False if our lease
    had lapsed (the job is another worker's now)."""
    result = db.execute(
        update(Job).where(Job.id == job.id, Job.locked_until == job.lease)
        .values(locked_until=None, last_error=error[:LAST_ERROR_LENGTH], run_at=now + backoff(job.attempts))
        .returning(Job.id).execution_options(synchronize_session=False))
    return result.first() is not None
