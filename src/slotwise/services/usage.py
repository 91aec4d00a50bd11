"""Credit usage over a date range (SPEC §11 Usage): credits used and messages per day, week or month,
for one agent or all, beside chatbots and team members used of their limits.

It reads the ``credit_usage`` roll-up (a row per organization, day and agent, kept by the spend in its
own transaction), never the ledger: a two-year range of an organization with twenty agents is at most
~15,000 rows summed into at most 732 by the database, however many spends they stand for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal, get_args

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.capacity import resource_capacity
from slotwise.catalog import Catalog
from slotwise.errors import InvalidRequest, NotFound
from slotwise.services.snapshot import read_snapshot

Interval = Literal["day", "week", "month"]
INTERVALS: tuple[Interval, ...] = get_args(Interval)
DEFAULT_DAYS = 30  # the range when none is given: the last 30 days, today included
MAX_DAYS = 732  # two calendar years and a day, both ends counted
LONGEST_ID = 64  # every id slotwise makes is far shorter (models.Id)
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True, slots=True)
class Bucket:
    """One day, week (from its Monday) or month (from its 1st), UTC. A bucket at either end of the
    range may start before ``from`` or end after ``to``: only the days within the range count."""

    start: date
    credits: int
    messages: int


@dataclass(frozen=True, slots=True)
class UsedOfLimit:
    used: int
    limit: int


@dataclass(frozen=True, slots=True)
class UsageReport:
    start: date
    end: date
    interval: Interval
    agent_id: str | None
    credits_used: int
    messages: int
    series: list[Bucket]
    agents: UsedOfLimit
    members: UsedOfLimit


@dataclass(frozen=True, slots=True)
class UsageQuery:
    start: date
    end: date
    interval: Interval
    agent_id: str | None


def parse_query(*, start: str | None, end: str | None, interval: str | None, agent_id: str | None,
                today: date) -> UsageQuery:
    """The query as a person or the platform writes it (``from``, ``to`` as ``YYYY-MM-DD``, ``interval``,
    ``agent_id``; empty means the default), checked: ``invalid_request`` naming the field, or a query
    ``usage`` accepts. Defaults: the last 30 days up to ``today``, by day, every agent."""
    end_day = _day(end, "to") if end else today
    start_day = _day(start, "from") if start else end_day - timedelta(days=DEFAULT_DAYS - 1)
    if interval and interval not in INTERVALS:
        raise InvalidRequest("interval must be day, week or month.", field="interval")
    chosen: Interval = next((i for i in INTERVALS if i == interval), "day")
    check_range(start_day, end_day)
    return UsageQuery(start_day, end_day, chosen, agent_id or None)


def _day(text: str, field: str) -> date:
    if _DAY.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise InvalidRequest(f"'{field}' must be a date written YYYY-MM-DD, e.g. 2026-11-15.", field=field)


def check_range(start: date, end: date) -> None:
    if start > end:
        raise InvalidRequest("'from' must be on or before 'to'.", field="from")
    if (end - start).days + 1 > MAX_DAYS:
        raise InvalidRequest(f"A range covers at most {MAX_DAYS} days (two years); choose a later 'from'.",
                             field="from")


def usage(db: Session, *, catalog: Catalog, org_id: str, start: date, end: date, agent_id: str | None,
          interval: Interval) -> UsageReport:
    """Credits and messages per bucket over ``start``…``end`` (both included, UTC days), every bucket of
    the range present (zeros included), the totals equal to the sum of the series; with the capacity
    of agents and members exactly as the organization's summary counts it (the same snapshot).

    An ``agent_id`` must name an agent of the organization (archived ones included: their usage
    stays); any other id, another organization's included, is ``not_found``.
    """
    check_range(start, end)
    if interval not in INTERVALS:
        raise InvalidRequest("interval must be day, week or month.", field="interval")
    snapshot = read_snapshot(db, catalog, org_id)  # not_found for an unknown organization
    if agent_id is not None and not _agent_of(db, org_id, agent_id):
        raise NotFound("No such agent.")
    days = repo.credit_usage_by_day(db, org_id, start=start, end=end, agent_key=agent_id)
    series = buckets(days, start=start, end=end, interval=interval)
    agents, members = (resource_capacity(snapshot, r) for r in ("agents", "members"))
    return UsageReport(
        start=start, end=end, interval=interval, agent_id=agent_id,
        credits_used=sum(b.credits for b in series), messages=sum(b.messages for b in series), series=series,
        agents=UsedOfLimit(agents.used, agents.total), members=UsedOfLimit(members.used, members.total),
    )


def _agent_of(db: Session, org_id: str, agent_id: str) -> bool:
    # No id is long or holds a control character, and PostgreSQL would refuse a NUL (a 500).
    if len(agent_id) > LONGEST_ID or any(ch < " " or ch == "\x7f" for ch in agent_id):
        return False
    return repo.agent_in_org(db, org_id, agent_id) is not None


# --- buckets: pure -------------------------------------------------------------------------------

def bucket_start(day: date, interval: Interval) -> date:
    """The first day of ``day``'s bucket: itself, its week's Monday, or its month's 1st."""
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def _next_start(start: date, interval: Interval) -> date:
    if interval == "week":
        return start + timedelta(days=7)
    if interval == "month":
        return date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return start + timedelta(days=1)


def bucket_starts(start: date, end: date, interval: Interval) -> list[date]:
    """Every bucket the range ``start``…``end`` touches, in order."""
    starts, current = [], bucket_start(start, interval)
    while current <= end:
        starts.append(current)
        current = _next_start(current, interval)
    return starts


def buckets(days: Iterable[tuple[date, int, int]], *, start: date, end: date, interval: Interval) -> list[Bucket]:
    """Per-day (day, credits, messages) rows within the range summed into every bucket of the range."""
    totals = {s: [0, 0] for s in bucket_starts(start, end, interval)}
    for day, credits, messages in days:
        if start <= day <= end:
            total = totals[bucket_start(day, interval)]
            total[0] += credits
            total[1] += messages
    return [Bucket(s, credits, messages) for s, (credits, messages) in totals.items()]
