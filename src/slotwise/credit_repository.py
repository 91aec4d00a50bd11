"""The queries of the credit account outside the spend (which keeps its one statement in
``services.spend``): the overview, top-ups and recharges landing in the top-up pool, and the
auto-recharge settings and their recharge in flight.

A balance changes only as ``balance = balance ± n`` in SQL, never as a value read earlier: spends
debit the account without the organization lock, so a read-then-write would lose one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, insert, literal, select, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from slotwise.models import CreditAccount, CreditEntry, Organization, Subscription, UTCDateTime, new_id

_ACCOUNT = CreditAccount.__table__.c
_SUB = Subscription.__table__.c

_OVERVIEW = select(
    _ACCOUNT.plan_balance, _ACCOUNT.topup_balance, _ACCOUNT.plan_allowance, _ACCOUNT.refills_at,
    _ACCOUNT.used_in_period, _ACCOUNT.recharge_enabled, _ACCOUNT.recharge_threshold,
    _ACCOUNT.recharge_max_per_period, _ACCOUNT.recharges_in_period, _ACCOUNT.last_recharged_at,
    _ACCOUNT.recharge_disabled_reason,
).where(_ACCOUNT.org_id == bindparam("org_id"))


def account_overview(db: Session, org_id: str) -> Row[*tuple[Any, ...]] | None:
    """The account's balances and auto-recharge settings, one statement."""
    return db.execute(_OVERVIEW, {"org_id": org_id}).first()


_STANDING = (
    select(_ACCOUNT.recharge_enabled, _ACCOUNT.recharge_job_id, _ACCOUNT.recharges_in_period,
           _ACCOUNT.recharge_max_per_period, _ACCOUNT.recharge_failures, Organization.card_token,
           _SUB.id.label("sub_id"), _SUB.status.label("sub_status"), _SUB.period_index, _SUB.period_start,
           _SUB.period_end)
    .join(Organization, Organization.id == _ACCOUNT.org_id)
    .outerjoin(Subscription, and_(_SUB.org_id == _ACCOUNT.org_id, _SUB.status != literal("canceled")))
    .where(_ACCOUNT.org_id == bindparam("org_id"))
)


def recharge_standing(db: Session, org_id: str) -> Row[*tuple[Any, ...]] | None:
    """What a purchase of credits depends on, one statement: the auto-recharge settings and the job in
    flight, the card on file and the live subscription (its id, status and period). Read it after
    taking the organization lock."""
    return db.execute(_STANDING, {"org_id": org_id}).first()


@dataclass(frozen=True, slots=True)
class Balances:
    plan: int
    topup: int

    @property
    def total(self) -> int:
        return self.plan + self.topup


_CREDIT = (update(CreditAccount).where(CreditAccount.org_id == bindparam("account"))
           .values(topup_balance=CreditAccount.topup_balance + bindparam("credits"),
                   updated_at=bindparam("at", type_=UTCDateTime()))
           .returning(CreditAccount.plan_balance, CreditAccount.topup_balance)
           .execution_options(synchronize_session=False))
_ENTRY = insert(CreditEntry)


def credit_topup_pool(db: Session, *, org_id: str, credits: int, kind: str, invoice_id: str,
                      at: datetime) -> Balances:
    """Add paid ``credits`` to the top-up pool with their ledger entry (``topup`` or ``recharge``,
    naming the invoice); the balances after."""
    row = db.execute(_CREDIT, {"account": org_id, "credits": credits, "at": at}).one()
    db.execute(_ENTRY, [{"id": new_id("cre"), "org_id": org_id, "kind": kind, "plan_delta": 0,
                         "topup_delta": credits, "playground": False, "invoice_id": invoice_id,
                         "plan_after": row.plan_balance, "topup_after": row.topup_balance, "created_at": at}])
    return Balances(row.plan_balance, row.topup_balance)


# The spend's condition for a recharge (services.spend), on the balance as it stands.
_REQUEST = (
    update(CreditAccount)
    .where(CreditAccount.org_id == bindparam("account"), CreditAccount.recharge_enabled.is_(True),
           CreditAccount.recharge_job_id.is_(None),
           CreditAccount.plan_balance + CreditAccount.topup_balance < CreditAccount.recharge_threshold,
           CreditAccount.recharges_in_period < CreditAccount.recharge_max_per_period,
           CreditAccount.recharge_failed_at.is_(None)
           | (CreditAccount.recharge_failed_at <= bindparam("failed_before", type_=UTCDateTime())))
    .values(recharge_job_id=bindparam("job_id"))
    .returning(CreditAccount.org_id)
    .execution_options(synchronize_session=False)
)


def mark_recharge_requested(db: Session, *, org_id: str, job_id: str, failed_before: datetime) -> bool:
    """Name ``job_id`` the recharge in flight if one is due (enabled, below the threshold, under the
    cap, none in flight, no failure since ``failed_before``); whether it was."""
    params = {"account": org_id, "job_id": job_id, "failed_before": failed_before}
    return db.execute(_REQUEST, params).first() is not None


def update_account(db: Session, org_id: str, **values: Any) -> None:
    """Set columns of the account other than the balances (settings, the recharge's outcome)."""
    if {"plan_balance", "topup_balance"} & values.keys():
        raise ValueError("balances change only with a ledger entry")
    db.execute(update(CreditAccount).where(CreditAccount.org_id == org_id).values(**values)
               .execution_options(synchronize_session=False))


def count_recharge(db: Session, org_id: str, *, at: datetime) -> None:
    """A recharge was paid: one more this period, the failures in a row end, none is in flight."""
    db.execute(update(CreditAccount).where(CreditAccount.org_id == org_id)
               .values(recharges_in_period=CreditAccount.recharges_in_period + 1, last_recharged_at=at,
                       recharge_failures=0, recharge_failed_at=None, recharge_job_id=None, updated_at=at)
               .execution_options(synchronize_session=False))
