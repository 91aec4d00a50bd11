"""The billing sweep (``billing run``, the operator clock): every organization with something due, a
batch per transaction.

It claims a batch of due organizations at a time, in id order, locked (``FOR NO KEY UPDATE SKIP
LOCKED`` on PostgreSQL, so several sweeps split the work instead of queueing behind one batch), and
runs the common cases set-based (``batch``): an active subscription whose next event is its renewal
(or its end, onto the free plan), however many periods are due, and a free organization's monthly
credit refills. Anything else (a retry, dunning, a declined charge's aftermath) goes through
``cycle.catch_up``, one organization at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from slotwise import repositories as repo
from slotwise.clock import Clock, SimulatedClock
from slotwise.errors import ClockNotSimulated, InvalidRequest
from slotwise.services import trail
from slotwise.services.context import Env
from slotwise.services.limits import prune_rate_limit_logs
from slotwise.services.renewals.batch import (
    LATEST_INSTANT,
    grant_current_periods,
    renew_round,
    renewing,
    write_credits,
)
from slotwise.services.renewals.cycle import SweepReport, catch_up

BATCH_SIZE = 500  # organizations claimed per transaction, once a sweep is under way
# A sweep's first batches are smaller, doubling up to BATCH_SIZE: the first renewals commit (and the
# first organizations are free again) within milliseconds, and a small sweep is shared between the
# processes that run it rather than taken whole by the first.
FIRST_BATCH_SIZE = 8
# Renewals one transaction writes at most (a long clock move renews each organization many times): it
# bounds how long a batch holds its organizations' locks, and so how long a request about one waits.
RENEWALS_PER_TRANSACTION = 1000
IDEMPOTENCY_KEY_TTL = timedelta(hours=48)
MAX_CLOCK_STEP = timedelta(days=3660)  # one move of the simulated clock


@dataclass(frozen=True, slots=True)
class SweepProgress:
    renewed: int  # renewal invoices issued so far
    retried: int  # scheduled retries run so far
    claimed: int  # organizations claimed so far (one left for a later pass counts again)
    seconds: float


def sweep(
    factory: sessionmaker[Session],
    *,
    env: Env,
    at: datetime,
    report: SweepReport | None = None,
    progress: Callable[[SweepProgress], None] | None = None,
) -> SweepReport:
    """Run everything due by ``at``, a batch of organizations per transaction (see the module's doc).

    Safe to run concurrently or again after a crash: each organization is re-read under its lock, and
    committed work is never redone (what is done is no longer due). Last, it voids the purchases
    whose bank verification ran out of time (``verification.expire_waiting``; the paywall's
    ``paid_access.expire_waiting_checkouts``) and reconciles the processor's recent payments with what
    was recorded (``services.reconcile``). Passes skip what other transactions hold until nothing else
    is due; then one more waits for it, so nothing due by ``at`` is left undone.
    ``report`` collects the ids (a caller may pass one that keeps them elsewhere than in memory);
    ``progress`` is called after each batch.
    """
    # Imported here: reconciliation settles through ``cycle`` and ``verification``, which import this package.
    from slotwise.services.paid_access import expire_waiting_checkouts
    from slotwise.services.reconcile import reconcile
    from slotwise.services.verification import expire_waiting

    report = SweepReport() if report is None else report
    tally = _Tally(progress)
    for skip_held in (True, False):
        while _sweep_pass(factory, env=env, at=at, skip_held=skip_held, report=report, tally=tally):
            pass  # organizations were left due by a transaction's share of renewals: go round again
    # Purchases (and paywall passes) whose bank verification ran out of time, then the processor's
    # payments slotwise has no record of (a crash between charge and commit, a bank that paid late).
    expired = expire_waiting(factory, env=env, at=at) + expire_waiting_checkouts(factory, env=env, at=at)
    reconciled = reconcile(factory, env=env, at=at)
    report.merge(SweepReport(reconciled=reconciled.completed, refunded=reconciled.refunded, expired=expired))
    with factory.begin() as db:
        repo.delete_idempotency_records_before(db, at - IDEMPOTENCY_KEY_TTL)
        prune_rate_limit_logs(db, at=at)  # the request path only counts the last window, never prunes
    return report


def _sweep_pass(
    factory: sessionmaker[Session], *, env: Env, at: datetime, skip_held: bool, report: SweepReport, tally: _Tally
) -> bool:
    """One pass over the due organizations in id order; True if some were left due for another pass."""
    after, left_due = "", False
    while True:
        size = min(BATCH_SIZE, FIRST_BATCH_SIZE << min(tally.batches, 16))
        with factory.begin() as db:
            batch = _sweep_batch(db, env, at, after=after, size=size, skip_held=skip_held)
        if batch is None:
            return left_due
        after, left_due = batch.last_id, left_due or batch.left_due
        report.merge(batch.report)
        tally.add(batch)


@dataclass
class _Batch:
    last_id: str
    claimed: int
    report: SweepReport
    left_due: bool  # some organizations still have renewals due (a long clock move)


def _sweep_batch(db: Session, env: Env, at: datetime, *, after: str, size: int, skip_held: bool) -> _Batch | None:
    claimed = repo.claim_due_organizations(db, at, after=after, limit=size, skip_held=skip_held)
    if not claimed:
        return None
    report, orgs = SweepReport(), renewing(db, claimed)
    starts = grant_current_periods(env, orgs, at)
    ready = [org for org in orgs if org.renewal_due(at)]
    others = [org.org_id for org in orgs if not org.renewal_due(at) and not org.free]
    written = 0
    with trail.written_together(db):  # the batch's events and entries: a few statements, not a few per renewal
        while ready and written < RENEWALS_PER_TRANSACTION:
            renew_round(db, env, ready, report, starts)
            written += len(ready)
            others += [org.org_id for org in ready if org.status != "active"]  # declined, or ended on free
            ready = [org for org in ready if org.renewal_due(at)]
        free = [org.org_id for org in orgs if org.free]
        write_credits(db, env, starts, free, at=at, report=report)
    # Everything else goes the one-organization way, if it is still due: a declined charge's retry may
    # be, and a claimed organization may have been swept by another process meanwhile.
    rest = sorted(set(others) | set(free))
    due = repo.organizations_with_due_work(db, rest, at)
    for org_id in (org_id for org_id in rest if org_id in due):
        report.merge(catch_up(db, env=env, org_id=org_id, at=at))
    return _Batch(claimed[-1].id, len(claimed), report, left_due=bool(ready))


class _Tally:
    def __init__(self, progress: Callable[[SweepProgress], None] | None) -> None:
        self.progress, self.started = progress, time.monotonic()
        self.renewed = self.retried = self.claimed = self.batches = 0

    def add(self, batch: _Batch) -> None:
        self.renewed += len(batch.report.renewed)
        self.retried += len(batch.report.retried_paid) + len(batch.report.retried_failed)
        self.claimed += batch.claimed
        self.batches += 1
        if self.progress is not None:
            self.progress(SweepProgress(self.renewed, self.retried, self.claimed, time.monotonic() - self.started))


def run_billing(factory: sessionmaker[Session], *, env: Env, clock: Clock) -> SweepReport:
    with factory.begin() as db:
        at = clock.now(db)
    return sweep(factory, env=env, at=at)


def clock_target(now: datetime, *, advance_days: int | None = None, to: datetime | None = None) -> datetime:
    """Where a move of the simulated clock goes, or ``invalid_request`` if it is out of range."""
    if advance_days is not None and not 0 <= advance_days <= MAX_CLOCK_STEP.days:
        raise InvalidRequest(f"Move the clock by 0 to {MAX_CLOCK_STEP.days} days at a time.", field="advance_days")
    target = to if to is not None else now + timedelta(days=advance_days or 0)
    if target.tzinfo is None:
        raise InvalidRequest("'to' needs a time zone, e.g. 2026-12-15T00:00:00Z.", field="to")
    if target > now + MAX_CLOCK_STEP:
        raise InvalidRequest(f"Move the clock at most {MAX_CLOCK_STEP.days} days at a time.", field="to")
    if target >= LATEST_INSTANT:
        raise InvalidRequest(f"The clock can't move past {LATEST_INSTANT:%Y-%m-%d}.", field="to")
    return target


def advance_clock(
    factory: sessionmaker[Session], *, env: Env, clock: Clock, to: datetime
) -> tuple[datetime, SweepReport]:
    """Move the simulated clock to ``to`` and run everything that came due on the way (renewals,
    retries and credit refills, each at its own instant).

    Organizations are independent, so each is caught up on its own, in order; a request that reaches
    an organization first catches it up itself.
    """
    if not isinstance(clock, SimulatedClock):
        raise ClockNotSimulated()
    with factory.begin() as db:
        now = clock.set(db, to)
    return now, sweep(factory, env=env, at=now)
