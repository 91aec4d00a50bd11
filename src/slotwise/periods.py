"""Monthly billing periods anchored on the subscription's start instant (UTC).

Period *k* runs from ``anchor + k months`` to ``anchor + (k + 1) months``, each computed from the
anchor itself, never from the previous period's end, so Jan 31 → Feb 28 (29) → Mar 31 → Apr 30.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime


def add_months(anchor: datetime, months: int) -> datetime:
    """``anchor`` moved by whole months, its day clamped to the target month's length."""
    month_index = anchor.month - 1 + months
    year, month0 = divmod(month_index, 12)
    year += anchor.year
    day = min(anchor.day, calendar.monthrange(year, month0 + 1)[1])
    return anchor.replace(year=year, month=month0 + 1, day=day)


@dataclass(frozen=True, slots=True)
class Period:
    index: int
    start: datetime
    end: datetime

    @property
    def days(self) -> int:
        """Days in the period, counted between calendar dates."""
        return (self.end.date() - self.start.date()).days

    def days_left(self, at: datetime) -> int:
        """Days from ``at``'s date (which counts) to the period's end date; at least 1 while the
        period runs, so on the renewal date before the renewal instant that day still counts."""
        return max((self.end.date() - at.date()).days, 1)

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


def period_at_index(anchor: datetime, index: int) -> Period:
    return Period(index, add_months(anchor, index), add_months(anchor, index + 1))


def period_containing(anchor: datetime, at: datetime) -> Period:
    """The period of an anchored subscription that contains ``at`` (``at`` ≥ ``anchor``)."""
    if at < anchor:
        raise ValueError("at is before the anchor")
    index = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    index = max(index - 1, 0)
    while add_months(anchor, index + 1) <= at:
        index += 1
    return period_at_index(anchor, index)


def short_range(start: date, end: date) -> str:
    """``Nov 26 – Dec 15`` (years shown only when they differ)."""
    if start.year != end.year:
        return f"{start:%b} {start.day}, {start.year} – {end:%b} {end.day}, {end.year}"
    return f"{start:%b} {start.day} – {end:%b} {end.day}"
