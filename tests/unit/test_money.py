"""The one rounding rule: exact rational amounts, halves away from zero."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slotwise.money import Money, format_amount, round_half_up


class TestRoundHalfUp:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [(Fraction(26600, 30), 887), (Fraction(1773, 2), 887), (Fraction(1771, 2), 886),
         (Fraction(-1773, 2), -887), (Fraction(0), 0), (Fraction(1, 3), 0), (Fraction(2, 3), 1)],
    )
    def test_known_values(self, value: Fraction, expected: int) -> None:
        assert round_half_up(value) == expected

    @given(st.integers(-10**12, 10**12), st.integers(1, 10**6))
    def test_agrees_with_decimal_half_up(self, numerator: int, denominator: int) -> None:
        exact = Decimal(numerator) / Decimal(denominator)
        expected = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        assert round_half_up(Fraction(numerator, denominator)) == expected

    @given(st.integers(0, 10**9), st.integers(1, 10**6))
    def test_within_half_a_cent_of_the_exact_amount(self, numerator: int, denominator: int) -> None:
        exact = Fraction(numerator, denominator)
        assert abs(round_half_up(exact) - exact) <= Fraction(1, 2)


class TestMoney:
    def test_rejects_floats(self) -> None:
        with pytest.raises(TypeError):
            Money(8.87, "usd")  # type: ignore[arg-type]

    def test_adding_other_currencies_is_refused(self) -> None:
        with pytest.raises(ValueError):
            Money(1, "usd") + Money(1, "eur")

    def test_format(self) -> None:
        assert format_amount(887, "usd") == "$8.87"
        assert format_amount(1640000, "usd") == "$16,400.00"
        assert format_amount(-5, "usd") == "-$0.05"
        assert format_amount(100, "chf") == "1.00 CHF"
