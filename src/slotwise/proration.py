"""What part of a month's price is owed for the rest of a period. Pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from slotwise.money import round_half_up
from slotwise.periods import Period


@dataclass(frozen=True, slots=True)
class Proration:
    """An exact pro-ration: ``amount = round_half_up(quantity × unit_price × days_left / days)``."""

    quantity: int
    unit_price: int
    days_left: int
    days_in_period: int
    amount: int

    @property
    def factor(self) -> str:
        return f"{self.days_left}/{self.days_in_period}"


def prorate(*, quantity: int, unit_price: int, period: Period, at: datetime) -> Proration:
    """Charge for ``quantity`` units at ``unit_price`` per month from ``at``'s date to the period's end.

    The day of ``at`` counts, so on the period's first day this is the full month; the exact
    product is rounded once, so it never exceeds ``quantity × unit_price``.
    """
    if not period.start <= at < period.end:
        raise ValueError("at is outside the period")
    days = period.days
    days_left = period.days_left(at)
    amount = round_half_up(Fraction(quantity * unit_price * days_left, days))
    return Proration(quantity, unit_price, days_left, days, amount)
