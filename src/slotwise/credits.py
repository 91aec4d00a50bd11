"""Credit arithmetic (SPEC §11), pure: what an activity costs and how a spend splits between the
two pools. Plan credits are spent first, then top-up credits; a spend that does not fit takes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from slotwise.catalog import Activity, CreditTerms, Model

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
