"""Plan credits refilled when a period starts and is paid, and expired when it ends (SPEC §11).

A credit period starts with the subscription's (its start, each renewal, a restart after ``unpaid``)
or, for a free organization, every month on the anchor of its creation (``periods``' rules). At each
start the unused plan credits expire (no rollover), then the allowance of the plan then in force is
granted — only once the period is paid: a declined renewal leaves the plan pool empty and
``refills_at`` NULL until a retry or a new card pays it. An upgrade grants the difference between
the two allowances at once. Top-up credits are never touched.

Every change is a ledger entry (``expiry``, ``refill``) written with it, so each pool's balance stays
the sum of its entries. The accounts are read under their row lock (the only lock a spend takes) and
written back with one statement per table, for one organization or a sweep's batch alike: the
one-organization path (``catch_up``, a payment) and the batched sweep compute with the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from slotwise import repositories as repo
from slotwise.catalog import Catalog, Plan
from slotwise.credits import Movement, Pools, free_refills, next_anchor, period_start_moves, upgrade_move
from slotwise.models import CreditAccount, Subscription, new_id


def allowance(plan: Plan) -> int:
    """The plan's credits per month (a custom plan without a figure grants none)."""
    return plan.credits or 0


def free_allowance(catalog: Catalog) -> int:
    return allowance(catalog.plan("free"))


@dataclass(frozen=True, slots=True)
class PeriodStart:
    """A credit period of one organization starting at ``at``.

    ``allowance`` None: the period waits for payment (nothing granted, ``refills_at`` NULL).
    ``free``: a free organization's month, next refilled on its creation's anchor after ``at``.
    ``new_period`` False: the period started earlier and waited for payment, which came now: it is
    granted if it still waits, and its counters (used, recharges) run on.
    """

    org_id: str
    at: datetime
    allowance: int | None
    period_start: datetime
    refills_at: datetime | None
    invoice_id: str | None = None  # the paid invoice that grants it
    free: bool = False
    new_period: bool = True


def subscription_start(org_id: str, at: datetime, plan: Plan, period_start: datetime, period_end: datetime, *,
                       paid: bool, invoice_id: str | None) -> PeriodStart:
    """A subscription's period starting at ``at``: its plan's allowance if paid, else nothing yet."""
    if paid:
        return PeriodStart(org_id, at, allowance(plan), period_start, period_end, invoice_id)
    return PeriodStart(org_id, at, None, period_start, None)


def free_start(catalog: Catalog, org_id: str, at: datetime) -> PeriodStart:
    """A subscription ended at ``at``: the free plan is in force from then, its month on the anchor."""
    return PeriodStart(org_id, at, free_allowance(catalog), at, None, free=True)


@dataclass(slots=True)
class _Account:
    """A locked account row, kept in step as periods start."""

    org_id: str
    plan_balance: int
    topup_balance: int
    plan_allowance: int
    period_start: datetime | None
    refills_at: datetime | None
    used_in_period: int
    recharges_in_period: int
    created_at: datetime  # the organization's: a free one's anchor
    updated_at: datetime | None = None  # set once changed


@dataclass
class CreditWrites:
    """What a set of refills, expiries and upgrades does to some locked accounts: ledger rows and the
    accounts' final rows, written with one statement each (``write``)."""

    accounts: dict[str, _Account]
    entries: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def locked(cls, db: Session, org_ids: Iterable[str]) -> CreditWrites:
        rows = repo.locked_credit_accounts(db, sorted(set(org_ids)))
        return cls({row.org_id: _Account(row.org_id, row.plan_balance, row.topup_balance, row.plan_allowance,
                                         row.period_start, row.refills_at, row.used_in_period,
                                         row.recharges_in_period, row.created_at) for row in rows})

    def start(self, start: PeriodStart) -> bool:
        """Apply ``start``; True if it granted the period's allowance."""
        account = self.accounts.get(start.org_id)
        if account is None:  # no account: ``slotwise doctor`` reports it; billing goes on
            return False
        if not start.new_period and account.refills_at is not None:
            return False  # granted already: a period is refilled once
        self._apply(account, period_start_moves(account.plan_balance, start.allowance), start.at, start.invoice_id)
        account.plan_allowance = start.allowance or 0
        account.period_start = start.period_start
        account.refills_at = next_anchor(account.created_at, start.at) if start.free else start.refills_at
        if start.new_period:
            account.used_in_period = account.recharges_in_period = 0
        return start.allowance is not None

    def refill_free(self, org_id: str, *, monthly: int, at: datetime) -> int:
        """Every monthly refill of a free organization due by ``at``, each at its own instant; how many."""
        account = self.accounts.get(org_id)
        if account is None or account.refills_at is None:
            return 0
        due = free_refills(account.created_at, account.refills_at, at, plan_balance=account.plan_balance,
                           allowance=monthly)
        for refill in due:
            self._apply(account, refill.moves, refill.at, None)
            account.plan_allowance, account.period_start, account.refills_at = monthly, refill.at, refill.refills_at
            account.used_in_period = account.recharges_in_period = 0
        return len(due)

    def upgrade(self, org_id: str, *, old_allowance: int, new_allowance: int, at: datetime,
                invoice_id: str | None) -> None:
        """The difference between the two allowances, at once; nothing while the period waits for
        payment (its refill will grant the new plan's whole allowance)."""
        account = self.accounts.get(org_id)
        move = upgrade_move(old_allowance, new_allowance)
        if move is None or account is None or account.refills_at is None:
            return
        self._apply(account, [move], at, invoice_id)
        account.plan_allowance += move.plan_delta

    def _apply(self, account: _Account, moves: Sequence[Movement], at: datetime, invoice_id: str | None) -> None:
        pools = Pools(account.plan_balance, account.topup_balance)
        for move in moves:
            pools = pools.apply(move)
            self.entries.append({  # repo.CREDIT_ENTRY_COLUMNS; the balances after it, as a spend records them
                "id": new_id("cre"), "org_id": account.org_id, "kind": move.kind, "plan_delta": move.plan_delta,
                "topup_delta": move.topup_delta, "playground": False,
                "invoice_id": invoice_id if move.kind == "refill" else None, "plan_after": pools.plan,
                "topup_after": pools.topup, "created_at": at})
        account.plan_balance, account.topup_balance = pools.plan, pools.topup
        account.updated_at = at

    def write(self, db: Session) -> None:
        changed = [account for account in self.accounts.values() if account.updated_at is not None]
        repo.insert_credit_entries(db, self.entries)
        repo.set_credit_periods(db, [
            {"key_org_id": a.org_id, "plan_balance": a.plan_balance, "plan_allowance": a.plan_allowance,
             "period_start": a.period_start, "refills_at": a.refills_at, "used_in_period": a.used_in_period,
             "recharges_in_period": a.recharges_in_period, "updated_at": a.updated_at} for a in changed])
        for account in changed:  # an account object this session holds (a new organization's) is stale now
            held = db.identity_map.get(identity_key(CreditAccount, account.org_id))
            if held is not None:
                db.expire(held)
        self.entries = []


# --- one organization, under its lock ------------------------------------------------------------

def start_period(db: Session, start: PeriodStart) -> bool:
    """A new credit period (``PeriodStart``); True if it granted the allowance."""
    db.flush()  # a new organization's account row, added through the session
    writes = CreditWrites.locked(db, [start.org_id])
    granted = writes.start(start)
    writes.write(db)
    return granted


def grant_paid_period(db: Session, *, sub: Subscription, plan: Plan, at: datetime, invoice_id: str) -> bool:
    """The current period of ``sub`` was paid late (a retry, a new card): refilled now, if it still
    waits for it. True if it was."""
    start = PeriodStart(sub.org_id, at, allowance(plan), sub.period_start, sub.period_end, invoice_id,
                        new_period=False)
    return start_period(db, start)


def upgrade(db: Session, *, org_id: str, old: Plan, new: Plan, at: datetime, invoice_id: str) -> None:
    """An upgrade paid now: the difference between the allowances (``CreditWrites.upgrade``)."""
    writes = CreditWrites.locked(db, [org_id])
    writes.upgrade(org_id, old_allowance=allowance(old), new_allowance=allowance(new), at=at, invoice_id=invoice_id)
    writes.write(db)


def refill_due_at(db: Session, org_id: str) -> datetime | None:
    """When the organization's plan credits are next refilled (None: waiting for payment)."""
    return repo.credit_refills_at(db, org_id)


def run_due_refill(db: Session, *, catalog: Catalog, org_id: str, sub: Subscription | None, at: datetime) -> int:
    """The refills due by ``at`` that no renewal brings (``catch_up`` runs renewals first): a free
    organization's months, or the current period of a subscription whose account came due before
    it (an account opened after its period started: a migrated organization). How many granted."""
    writes = CreditWrites.locked(db, [org_id])
    account = writes.accounts.get(org_id)
    if account is None or account.refills_at is None or account.refills_at > at:
        return 0
    if sub is None:
        granted = writes.refill_free(org_id, monthly=free_allowance(catalog), at=at)
    else:
        granted = int(writes.start(standalone_start(catalog, sub, account.refills_at)))
    writes.write(db)
    return granted


def standalone_start(catalog: Catalog, sub: Any, due: datetime) -> PeriodStart:
    """``run_due_refill``'s period for a subscription (an ORM row or the sweep's plain copy): granted
    if it is active (paid), else left waiting for payment."""
    plan = catalog.plan(sub.plan_code)
    return subscription_start(sub.org_id, max(due, sub.period_start), plan, sub.period_start, sub.period_end,
                              paid=sub.status == "active", invoice_id=None)
