"""Credit arithmetic (SPEC §11), pure: what an activity costs and how a spend splits between the
two pools. Plan credits are spent first, then top-up credits; a spend that does not fit takes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from slotwise.catalog import Activity, CreditTerms, Model
from slotwise.periods import period_containing

MAX_UNITS = 1000


def spend_cost(terms: CreditTerms, *, activity: Activity, model: Model, units: int, playground: bool) -> int:
    """units × the catalog cost of one unit; a playground spend costs nothing (it is still recorded)."""
    if playground:
        return 0
    return units * terms.unit_cost(activity, model)


@dataclass(frozen=True, slots=True)
class Split:
    from_plan: int
    from_topup: int


def split(cost: int, *, plan: int, topup: int) -> Split | None:
    """How ``cost`` is taken from balances ``plan`` and ``topup``: plan first; None when the two
    together fall short (then nothing is taken)."""
    if cost < 0 or plan < 0 or topup < 0:
        raise ValueError("cost and balances are never negative")
    if cost > plan + topup:
        return None
    from_plan = min(plan, cost)
    return Split(from_plan, cost - from_plan)


# --- refills and expiry (SPEC §11): what the start of a credit period does to the plan pool --------

@dataclass(frozen=True, slots=True)
class Movement:
    """What one ledger entry does to each pool (negative: takes). Kinds as ``CreditEntry.kind``."""

    kind: str
    plan_delta: int = 0
    topup_delta: int = 0


@dataclass(frozen=True, slots=True)
class Pools:
    """The two balances; ``apply`` refuses a movement that would leave one below zero."""

    plan: int
    topup: int

    def apply(self, move: Movement) -> Pools:
        plan, topup = self.plan + move.plan_delta, self.topup + move.topup_delta
        if plan < 0 or topup < 0:
            raise ValueError(f"{move.kind} would leave a pool below zero ({plan}, {topup})")
        return Pools(plan, topup)


def period_start_moves(plan_balance: int, allowance: int | None) -> list[Movement]:
    """A credit period ends and the next starts: the unused plan credits expire (no rollover; an entry
    only if some were left), then the new period's ``allowance`` is granted — None while the period
    waits for payment (a ``past_due`` renewal): nothing is granted until it is paid. Top-up credits
    are never touched."""
    if plan_balance < 0 or (allowance is not None and allowance < 0):
        raise ValueError("balances and allowances are never negative")
    moves = [Movement("expiry", -plan_balance)] if plan_balance > 0 else []
    if allowance:
        moves.append(Movement("refill", allowance))
    return moves


def upgrade_move(old_allowance: int, new_allowance: int) -> Movement | None:
    """An upgrade grants the difference between the two allowances at once (never takes any)."""
    difference = new_allowance - old_allowance
    return Movement("refill", difference) if difference > 0 else None


def spend_move(cost: int, pools: Pools) -> Movement | None:
    """A spend as a ledger movement (``split``: plan first); None when it does not fit."""
    taken = split(cost, plan=pools.plan, topup=pools.topup)
    return None if taken is None else Movement("spend", -taken.from_plan, -taken.from_topup)


def next_anchor(anchor: datetime, after: datetime) -> datetime:
    """The first monthly instant anchored on ``anchor`` that comes after ``after`` (``periods``' rules:
    Jan 31 → Feb 28 → Mar 31): a free organization's next refill, anchored on its creation."""
    if after < anchor:
        return anchor
    return period_containing(anchor, after).end


@dataclass(frozen=True, slots=True)
class FreeRefill:
    at: datetime  # the refill's instant (a monthly anchor, or the moment a subscription ended)
    moves: tuple[Movement, ...]
    refills_at: datetime  # the next one


def free_refills(anchor: datetime, due: datetime, at: datetime, *, plan_balance: int,
                 allowance: int) -> list[FreeRefill]:
    """Every monthly refill of a free organization due by ``at``, the first at ``due`` (its account's
    ``refills_at``), the next ones on the anchor (its creation), each at its own instant as if on
    time: what was left expires, then ``allowance`` is granted."""
    refills = []
    while due <= at:
        following = next_anchor(anchor, due)
        refills.append(FreeRefill(due, tuple(period_start_moves(plan_balance, allowance)), following))
        plan_balance, due = allowance, following
    return refills
