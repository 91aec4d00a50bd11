"""Credit usage over a date range (SPEC §11): for any member, and for the platform's backend with the
operator key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from slotwise.api import credit_schemas as cs
from slotwise.api import schemas as s
from slotwise.api.deps import EnvDep, MemberOrOperator, NowDep, SessionDep
from slotwise.api.responses import json_body
from slotwise.services import usage

router = APIRouter(tags=["credits"])
ERRORS: dict[int | str, dict[str, object]] = {code: {"model": s.ErrorBody} for code in (401, 404, 422)}
ORG = "/v1/organizations/{org}"


@router.get(ORG + "/usage", response_model=cs.UsageOut, responses=ERRORS)
def get_usage(
    reader: MemberOrOperator, db: SessionDep, env: EnvDep, now: NowDep,
    start: Annotated[str | None, Query(alias="from", description="First day, YYYY-MM-DD (UTC), included. "
                                                                 "Default: 29 days before 'to'.")] = None,
    end: Annotated[str | None, Query(alias="to", description="Last day, YYYY-MM-DD (UTC), included. "
                                                             "Default: today. At most 732 days in all.")] = None,
    agent_id: Annotated[str | None, Query(description="Count one agent of the organization only.")] = None,
    interval: Annotated[str | None, Query(description="day (default), week (from Monday) or month.")] = None,
) -> Response:
    """Credits used and messages per bucket, every bucket of the range (zeros included), for one agent
    or all; chatbots and team members used of their limits."""
    query = usage.parse_query(start=start, end=end, interval=interval, agent_id=agent_id, today=now.date())
    report = usage.usage(db, catalog=env.catalog, org_id=reader.org_id, start=query.start, end=query.end,
                         agent_id=query.agent_id, interval=query.interval)
    return json_body(cs.UsageOut(
        start=report.start, end=report.end, interval=report.interval, agent_id=report.agent_id,
        credits_used=report.credits_used, messages=report.messages,
        series=[cs.UsageBucketOut(start=b.start, credits=b.credits, messages=b.messages) for b in report.series],
        agents=cs.UsedOfLimit(used=report.agents.used, limit=report.agents.limit),
        members=cs.UsedOfLimit(used=report.members.used, limit=report.members.limit),
    ))
