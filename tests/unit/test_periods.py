"""Anchored monthly periods: computed from the anchor, clamped to month ends, leap years honoured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from slotwise.periods import add_months, period_at_index, period_containing

anchors = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 12, 31), timezones=st.just(UTC))


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


class TestMonthEnds:
    def test_jan_31_renews_on_each_month_end(self) -> None:
        anchor = utc(2027, 1, 31, 10)
        ends = [period_at_index(anchor, k).end.date().isoformat() for k in range(4)]
        assert ends == ["2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31"]

    def test_leap_year_february(self) -> None:
        assert add_months(utc(2028, 1, 31), 1) == utc(2028, 2, 29)
        anchor = utc(2028, 2, 29)
        assert [add_months(anchor, k).date().isoformat() for k in (1, 12, 48)] == [
            "2028-03-29", "2029-02-28", "2032-02-29"]

    def test_never_drifts_from_the_anchor(self) -> None:
        # Chaining from the previous end would give Mar 28; the anchor gives Mar 31.
        anchor = utc(2027, 1, 31)
        assert period_at_index(anchor, 2).start == utc(2027, 3, 31)

    def test_keeps_time_of_day(self) -> None:
        assert add_months(utc(2026, 11, 15, 9, 30), 1) == utc(2026, 12, 15, 9, 30)


class TestProperties:
    @given(anchors, st.integers(0, 600))
    def test_periods_are_contiguous_and_28_to_31_days(self, anchor: datetime, k: int) -> None:
        this, following = period_at_index(anchor, k), period_at_index(anchor, k + 1)
        assert this.end == following.start
        assert 28 <= this.days <= 31

    @given(anchors, st.integers(0, 600))
    def test_day_is_the_anchor_day_clamped(self, anchor: datetime, k: int) -> None:
        start = add_months(anchor, k)
        assert start.day == anchor.day or (start.day < anchor.day and (start + timedelta(days=1)).day == 1)
        assert (start.year * 12 + start.month) - (anchor.year * 12 + anchor.month) == k

    @given(anchors, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650)))
    def test_period_containing_contains(self, anchor: datetime, offset: timedelta) -> None:
        at = anchor + offset
        period = period_containing(anchor, at)
        assert period.start <= at < period.end
        assert period == period_at_index(anchor, period.index)
