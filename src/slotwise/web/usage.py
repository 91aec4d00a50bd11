"""Usage: credits used and messages over a date range (the chart and its table), chatbots and team
members used of their limits. Read-only, for any member; the filters are a GET form, so every view
has an address and works without JavaScript."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from slotwise.errors import SlotwiseError
from slotwise.services import agents, usage
from slotwise.services.usage import Bucket, Interval, UsageReport
from slotwise.web.billing import org_overview
from slotwise.web.deps import PageDep
from slotwise.web.render import long_date, render

router = APIRouter(include_in_schema=False)
USAGE = "/usage"
METRICS = ("credits", "messages")
INTERVAL_NAMES = {"day": "Day", "week": "Week", "month": "Month"}


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    credits: str
    messages: str


def bucket_label(bucket: Bucket, interval: Interval) -> str:
    if interval == "month":
        return f"{bucket.start:%B %Y}"
    if interval == "week":
        return f"Week of {long_date(bucket.start)}"
    return long_date(bucket.start)


def range_label(start: date, end: date) -> str:
    """``Oct 17 – Nov 15, 2026``; the first year only when it differs."""
    if start == end:
        return long_date(start)
    first = f"{start:%b} {start.day}" + (f", {start.year}" if start.year != end.year else "")
    return f"{first} – {long_date(end)}"


def chart_data(report: UsageReport) -> dict[str, Any]:
    """What the chart draws (the same numbers as the table): x in UTC seconds, one series per metric."""
    return {
        "interval": report.interval,
        "range": range_label(report.start, report.end),
        "totals": {"credits": report.credits_used, "messages": report.messages},
        "x": [int(datetime(b.start.year, b.start.month, b.start.day, tzinfo=UTC).timestamp()) for b in report.series],
        "labels": [bucket_label(b, report.interval) for b in report.series],
        "credits": [b.credits for b in report.series],
        "messages": [b.messages for b in report.series],
    }


@router.get(USAGE)
def usage_page(
    page: PageDep,
    start: Annotated[str, Query(alias="from")] = "",
    end: Annotated[str, Query(alias="to")] = "",
    interval: str = "",
    agent_id: str = "",
    metric: str = "credits",
) -> Response:
    overview = org_overview(page)
    all_agents = agents.list_agents(page.db, actor=page.actor)
    context: dict[str, Any] = {
        "page": page, "nav": "usage", "overview": overview, "agents": all_agents,
        "metric": metric if metric in METRICS else "credits", "intervals": INTERVAL_NAMES,
        "form": {"from": start, "to": end, "interval": interval, "agent_id": agent_id},
    }
    try:
        query = usage.parse_query(start=start, end=end, interval=interval, agent_id=agent_id,
                                  today=page.now.date())
        report = usage.usage(page.db, catalog=page.env.catalog, org_id=page.org.id, start=query.start,
                             end=query.end, agent_id=query.agent_id, interval=query.interval)
    except SlotwiseError as refused:
        # A bad address (a date that is no date, a range too long, an agent not of this organization)
        # is explained on the page, the form kept as typed to correct, with the error's own 4xx.
        problem = "That agent is not in your organization." if refused.code == "not_found" else refused.message
        return render(page.request, "usage.html", {**context, "problem": problem}, status_code=refused.status)
    agent_name = next((a.name for a in all_agents if a.id == report.agent_id), None)
    context.update(
        report=report, agent_name=agent_name, range_label=range_label(report.start, report.end),
        form={"from": report.start.isoformat(), "to": report.end.isoformat(), "interval": report.interval,
              "agent_id": report.agent_id or ""},
        rows=[Row(bucket_label(b, report.interval), f"{b.credits:,}", f"{b.messages:,}") for b in report.series],
        chart=chart_data(report),
    )
    return render(page.request, "usage.html", context)
