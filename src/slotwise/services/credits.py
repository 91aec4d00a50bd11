"""An organization's credits at a glance (SPEC §11): the two pools, what was used this period, the
costs, and auto-recharge. Read by ``GET …/credits`` and the Billing page's credits panel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from slotwise import credit_repository as credits_repo
from slotwise.catalog import CreditPack
from slotwise.errors import NotFound
from slotwise.services.context import Env


@dataclass(frozen=True, slots=True)
class AutoRecharge:
    enabled: bool
    threshold: int
    max_per_month: int
    used_this_month: int  # recharges paid this billing period ("X/Y recharges used this month")
    last_recharged_at: datetime | None
    disabled_reason: str | None  # why it turned itself off, until it is enabled again
    pack: CreditPack


@dataclass(frozen=True, slots=True)
class CreditsOverview:
    plan_allowance: int
    plan_remaining: int
    refills_at: datetime | None  # None while no refill is due (a period not paid yet)
    topup_remaining: int
    used_this_period: int
    costs: dict[str, int]
    auto_recharge: AutoRecharge

    @property
    def total(self) -> int:
        return self.plan_remaining + self.topup_remaining


def credits_overview(db: Session, env: Env, org_id: str) -> CreditsOverview:
    """One statement. Any member may read it."""
    row = credits_repo.account_overview(db, org_id)
    if row is None:
        raise NotFound("No such organization.")
    return CreditsOverview(
        plan_allowance=row.plan_allowance, plan_remaining=row.plan_balance, refills_at=row.refills_at,
        topup_remaining=row.topup_balance, used_this_period=row.used_in_period,
        costs=dict(env.catalog.credits.costs),
        auto_recharge=AutoRecharge(
            enabled=row.recharge_enabled, threshold=row.recharge_threshold,
            max_per_month=row.recharge_max_per_period, used_this_month=row.recharges_in_period,
            last_recharged_at=row.last_recharged_at, disabled_reason=row.recharge_disabled_reason,
            pack=env.catalog.credits.pack),
    )
