"""The job queue and its worker (slotwise.jobs, slotwise.worker) on SQLite and PostgreSQL: a job is
written in its caller's transaction, run once whatever the number of workers, retried later when
its handler fails, and claimed again when its worker died."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from slotwise import jobs
from slotwise.clock import SimulatedClock
from slotwise.jobs import ClaimedJob, JobContext
from slotwise.models import Job
from slotwise.services.context import Env
from slotwise.worker import LEASE, Worker

WALL = datetime(2026, 11, 15, 9, 0, tzinfo=UTC)


class WallClock:
    def __init__(self) -> None:
        self.now = WALL

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    """A handler that notes every job it ran (thread-safe), optionally failing the first tries."""

    def __init__(self, fail_times: int = 0, pause: float = 0.0) -> None:
        self.ran: list[str] = []
        self.fail_times, self.pause = fail_times, pause
        self.lock = threading.Lock()

    def __call__(self, db: Session, job: ClaimedJob, ctx: JobContext) -> None:
        if self.pause:
            time.sleep(self.pause)
        with self.lock:
            if self.fail_times > 0:
                self.fail_times -= 1
                raise RuntimeError("the processor timed out")
            self.ran.append(job.id)


def stored_jobs(sessions: sessionmaker[Session]) -> list[Job]:
    with sessions() as db:
        return list(db.scalars(select(Job).order_by(Job.created_at, Job.id)))


def enqueue(sessions: sessionmaker[Session], count: int = 1, kind: str = "test", at: datetime = WALL) -> list[str]:
    with sessions.begin() as db:
        return [jobs.enqueue(db, kind, None, {"n": n}, at) for n in range(count)]


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


def worker_for(sessions: sessionmaker[Session], env: Env, clock: SimulatedClock, handler: Any,
               wall: Any = None) -> Worker:
    return Worker(sessions, env=env, clock=clock, handlers={"test": handler},
                  **({"wall_clock": wall} if wall is not None else {}))


class TestEnqueue:
    def test_a_job_exists_only_if_its_transaction_commits(self, sessions: sessionmaker[Session]) -> None:
        with sessions() as db:
            jobs.enqueue(db, "test", None, {"a": 1}, WALL)
            db.rollback()
        assert stored_jobs(sessions) == []
        [job_id] = enqueue(sessions)
        [job] = stored_jobs(sessions)
        assert (job.id, job.kind, job.payload, job.attempts, job.locked_until) == (job_id, "test", '{"n": 0}', 0, None)

    def test_the_handler_gets_the_payload_and_the_job_is_deleted(
        self, sessions: sessionmaker[Session], env: Env, clock: SimulatedClock, wall: WallClock
    ) -> None:
        seen: list[dict[str, Any]] = []
        worker = worker_for(sessions, env, clock, lambda db, job, ctx: seen.append(job.payload), wall)
        enqueue(sessions)
        assert worker.run_pending() == 1
        assert seen == [{"n": 0}] and stored_jobs(sessions) == []

    def test_a_job_due_later_waits(self, sessions: sessionmaker[Session], env: Env, clock: SimulatedClock,
                                   wall: WallClock) -> None:
        recorder = Recorder()
        worker = worker_for(sessions, env, clock, recorder, wall)
        enqueue(sessions, at=WALL + timedelta(seconds=30))
        assert worker.run_pending() == 0
        wall.now += timedelta(seconds=30)
        assert worker.run_pending() == 1 and len(recorder.ran) == 1


class TestConcurrentWorkers:
    def test_two_workers_never_run_one_job_twice(self, sessions: sessionmaker[Session], env: Env,
                                                  clock: SimulatedClock) -> None:
        ids = enqueue(sessions, 40)
        recorder = Recorder(pause=0.002)
        workers = [worker_for(sessions, env, clock, recorder) for _ in range(2)]
        threads = [threading.Thread(target=w.run_pending) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(recorder.ran) == sorted(ids)  # every job once, none twice
        assert stored_jobs(sessions) == []


class TestFailures:
    def test_a_failing_handler_is_retried_later(self, sessions: sessionmaker[Session], env: Env,
                                                clock: SimulatedClock, wall: WallClock) -> None:
        recorder = Recorder(fail_times=2)
        worker = worker_for(sessions, env, clock, recorder, wall)
        [job_id] = enqueue(sessions)
        assert worker.run_once() is True
        [job] = stored_jobs(sessions)
        assert job.attempts == 1 and job.last_error == "RuntimeError: the processor timed out"
        assert job.locked_until is None and job.run_at == WALL + jobs.backoff(1)
        assert worker.run_once() is False  # backed off: not due yet
        wall.now = job.run_at
        worker.run_once()  # fails again, backs off further
        [job] = stored_jobs(sessions)
        assert job.attempts == 2 and job.run_at == wall.now + jobs.backoff(2) > wall.now + jobs.backoff(1)
        wall.now = job.run_at
        assert worker.run_pending() == 1
        assert recorder.ran == [job_id] and stored_jobs(sessions) == []

    def test_backoff_grows_and_is_capped(self) -> None:
        assert [jobs.backoff(n).total_seconds() for n in (1, 2, 3)] == [10, 20, 40]
        assert jobs.backoff(50) == jobs.MAX_BACKOFF

    def test_a_job_of_an_unknown_kind_is_kept_with_the_reason(
        self, sessions: sessionmaker[Session], env: Env, clock: SimulatedClock, wall: WallClock
    ) -> None:
        worker = worker_for(sessions, env, clock, Recorder(), wall)
        enqueue(sessions, kind="mystery")
        worker.run_once()
        [job] = stored_jobs(sessions)
        assert job.last_error == "LookupError: no handler for 'mystery' jobs" and job.attempts == 1


class TestDeadWorker:
    def test_a_job_whose_worker_died_is_claimed_again_when_its_lease_expires(
        self, sessions: sessionmaker[Session], env: Env, clock: SimulatedClock, wall: WallClock
    ) -> None:
        dead, alive = Recorder(), Recorder()
        first, second = worker_for(sessions, env, clock, dead, wall), worker_for(sessions, env, clock, alive, wall)
        [job_id] = enqueue(sessions)
        claimed = first.claim()  # ... and the worker dies before running it
        assert claimed is not None and claimed.id == job_id
        assert second.run_once() is False  # leased: nobody else takes it
        wall.now += LEASE - timedelta(seconds=1)
        assert second.run_once() is False
        wall.now += timedelta(seconds=1)
        assert second.run_once() is True
        assert alive.ran == [job_id] and stored_jobs(sessions) == []
        # Had the first worker only been slow, its lapsed lease keeps it from running the job too.
        assert first.run(claimed) is False and dead.ran == []

    def test_a_reclaimed_job_is_not_finished_by_its_first_worker(
        self, sessions: sessionmaker[Session], env: Env, clock: SimulatedClock, wall: WallClock
    ) -> None:
        recorder = Recorder(fail_times=1)
        first, second = (worker_for(sessions, env, clock, recorder, wall) for _ in range(2))
        enqueue(sessions)
        stale = first.claim()
        assert stale is not None
        wall.now += LEASE
        fresh = second.claim()
        assert fresh is not None and fresh.attempts == 2
        assert first.run(stale) is False  # lapsed: neither run nor recorded as failed
        [job] = stored_jobs(sessions)
        assert job.locked_until == fresh.lease and job.last_error is None
