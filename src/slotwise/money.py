"""Money is an ``int`` of minor units (cents) with its currency beside it.

There is exactly one rounding rule in slotwise, :func:`round_half_up`, applied once per
invoice line to an exact rational amount. Nothing here ever touches a float.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


def round_half_up(value: Fraction) -> int:
    """Round an exact amount of minor units to an integer, halves away from zero.

    ``886.666…`` → 887, ``886.5`` → 887, ``-886.5`` → -887 (a credit rounds like the charge it mirrors).
    """
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    whole, remainder = divmod(magnitude.numerator, magnitude.denominator)
    if 2 * remainder >= magnitude.denominator:
        whole += 1
    return sign * whole


@dataclass(frozen=True, slots=True)
class Money:
    amount: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise TypeError("Money.amount must be an int of minor units")

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(self.amount + other.amount, self.currency)


def format_amount(amount: int, currency: str) -> str:
    """Human display, e.g. ``887, "usd"`` → ``$8.87``; only for pages and invoice text."""
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(currency.lower())
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(amount), 100)
    text = f"{major:,}.{minor:02d}"
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency.upper()}"
