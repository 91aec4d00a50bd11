"""Usage buckets (services/usage.py), pure: every bucket a range touches, weeks from Monday, months
from the 1st, days outside the range not counted; and the query as written."""

from __future__ import annotations

from datetime import date

import pytest

from slotwise.errors import InvalidRequest
from slotwise.services.usage import bucket_starts, buckets, parse_query

D = date.fromisoformat


class TestBucketStarts:
    def test_days_weeks_and_months(self) -> None:
        assert bucket_starts(D("2026-12-30"), D("2027-01-02"), "day") == [
            D("2026-12-30"), D("2026-12-31"), D("2027-01-01"), D("2027-01-02")]
        assert bucket_starts(D("2026-12-30"), D("2027-01-12"), "week") == [
            D("2026-12-28"), D("2027-01-04"), D("2027-01-11")]  # Mondays
        assert bucket_starts(D("2027-11-30"), D("2028-03-01"), "month") == [
            D("2027-11-01"), D("2027-12-01"), D("2028-01-01"), D("2028-02-01"), D("2028-03-01")]

    def test_a_leap_day_and_a_week_that_is_one_monday(self) -> None:
        assert len(bucket_starts(D("2028-02-01"), D("2028-03-01"), "day")) == 30
        assert bucket_starts(D("2026-11-16"), D("2026-11-16"), "week") == [D("2026-11-16")]


def test_buckets_sum_days_and_skip_those_outside_the_range() -> None:
    days = [(D("2026-11-01"), 5, 1), (D("2026-11-02"), 7, 2), (D("2026-11-08"), 1, 1), (D("2026-11-09"), 100, 100)]
    weeks = buckets(days, start=D("2026-11-02"), end=D("2026-11-08"), interval="week")
    assert [(b.start, b.credits, b.messages) for b in weeks] == [(D("2026-11-02"), 8, 3)]


class TestParseQuery:
    def test_defaults_are_the_last_30_days_by_day(self) -> None:
        query = parse_query(start=None, end="", interval="", agent_id="", today=D("2026-03-01"))
        assert (query.start, query.end, query.interval, query.agent_id) == (D("2026-01-31"), D("2026-03-01"), "day",
                                                                            None)

    @pytest.mark.parametrize(("start", "end", "interval", "field"), [
        ("2026-1-01", None, None, "from"), (None, "2026-02-29", None, "to"), ("2026-03-02", None, None, "from"),
        (None, None, "weekly", "interval"), ("2024-02-28", None, None, "from"),
    ])
    def test_refusals_name_the_field(self, start: str | None, end: str | None, interval: str | None,
                                     field: str) -> None:
        with pytest.raises(InvalidRequest) as refused:
            parse_query(start=start, end=end, interval=interval, agent_id=None, today=D("2026-03-01"))
        assert refused.value.details["field"] == field
