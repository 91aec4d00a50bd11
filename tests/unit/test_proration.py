"""Pro-ration by days: round_half_up(quantity × price × days_left / days_in_period)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slotwise.money import round_half_up
from slotwise.periods import period_at_index
from slotwise.proration import prorate

anchors = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 12, 31), timezones=st.just(UTC))


class TestWorkedExample:
    def test_two_agent_slots_on_nov_26_cost_887(self) -> None:
        period = period_at_index(datetime(2026, 11, 15, 9, tzinfo=UTC), 0)
        result = prorate(quantity=2, unit_price=700, period=period, at=datetime(2026, 11, 26, 12, tzinfo=UTC))
        assert (result.days_left, result.days_in_period, result.factor, result.amount) == (19, 30, "19/30", 887)

    def test_the_renewal_date_before_the_renewal_instant_counts_as_one_day(self) -> None:
        period = period_at_index(datetime(2026, 11, 15, 9, tzinfo=UTC), 0)  # ends Dec 15 at 09:00
        result = prorate(quantity=3, unit_price=700, period=period, at=datetime(2026, 12, 15, 8, tzinfo=UTC))
        assert (result.factor, result.amount) == ("1/30", 70)

    def test_outside_the_period_is_an_error(self) -> None:
        period = period_at_index(datetime(2026, 11, 15, tzinfo=UTC), 0)
        with pytest.raises(ValueError):
            prorate(quantity=1, unit_price=700, period=period, at=datetime(2026, 12, 15, tzinfo=UTC))


class TestProperties:
    @given(anchors, st.integers(0, 240), st.integers(1, 100), st.integers(0, 10**6), st.data())
    def test_never_more_than_a_full_month(self, anchor: datetime, k: int, qty: int, price: int,
                                          data: st.DataObject) -> None:
        period = period_at_index(anchor, k)
        at = data.draw(st.datetimes(min_value=period.start.replace(tzinfo=None),
                                    max_value=(period.end - timedelta(microseconds=1)).replace(tzinfo=None),
                                    timezones=st.just(UTC)))
        result = prorate(quantity=qty, unit_price=price, period=period, at=at)
        assert 0 <= result.amount <= qty * price
        assert result.amount == round_half_up(Fraction(qty * price * result.days_left, result.days_in_period))

    @given(anchors, st.integers(0, 240), st.integers(1, 100), st.integers(0, 10**6))
    def test_first_day_charges_the_full_month(self, anchor: datetime, k: int, qty: int, price: int) -> None:
        period = period_at_index(anchor, k)
        assert prorate(quantity=qty, unit_price=price, period=period, at=period.start).amount == qty * price

    @given(anchors, st.integers(0, 240), st.integers(1, 100), st.integers(1, 10**6))
    def test_later_days_never_cost_more(self, anchor: datetime, k: int, qty: int, price: int) -> None:
        period = period_at_index(anchor, k)
        day, previous = period.start, qty * price
        while day < period.end:
            amount = prorate(quantity=qty, unit_price=price, period=period, at=day).amount
            assert amount <= previous
            previous, day = amount, day + timedelta(days=1)
