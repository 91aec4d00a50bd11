"""The hottest routes on PostgreSQL's fast lane (``api.fastlane``): reading an organization, creating
an agent and spending credits, each ``async`` from end to end.

They are registered ahead of the general routes with the same paths, bodies and answers (the general
ones document them in the OpenAPI schema) and only on PostgreSQL. A request the lane does not take
— one with an ``Idempotency-Key``, whose stored answer the general path keeps — is not matched here
and falls through to the general route.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from psycopg import AsyncConnection
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import Scope

from slotwise.api import credit_schemas as cs
from slotwise.api import present
from slotwise.api import schemas as s
from slotwise.api.deps import StateDep, bearer_token, catch_up_now, is_operator_key, refuse_impossible_ids
from slotwise.api.fastlane import Lane
from slotwise.api.responses import json_body
from slotwise.api.routers.spend import SPEND, spend_answer
from slotwise.clock import wall_now
from slotwise.errors import NotFound, Unauthenticated
from slotwise.hotpath import Caller
from slotwise.security import hash_secret
from slotwise.services.organizations import summary_of
from slotwise.services.spend import SpendRequest

ORG = "/v1/organizations/{org}"


class LaneRoute(APIRoute):
    """A route that steps aside (``Match.NONE``) for a request carrying an ``Idempotency-Key``."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE and any(name == b"idempotency-key" for name, _ in scope.get("headers", ())):
            return Match.NONE, {}
        return match, child


router = APIRouter(route_class=LaneRoute, include_in_schema=False)


def _lane(state: StateDep) -> Lane:
    assert state.lane is not None  # the router is only installed with a lane
    return state.lane


async def _caller(request: Request, state: StateDep, conn: AsyncConnection[Any]) -> Caller | None:
    """The user behind the bearer token with the billing time, as ``deps.token_caller`` reads it."""
    token = bearer_token(request)
    wall = None if state.clock.simulated else wall_now()
    found = await _lane(state).caller(conn, hash_secret(token), wall_now=wall)
    if found is not None and found.now is None:  # the simulated clock's very first read creates its row
        await run_in_threadpool(state.read_clock)
        found = await _lane(state).caller(conn, hash_secret(token), wall_now=wall)
    return found


async def _member(request: Request, state: StateDep, conn: AsyncConnection[Any], org: str,
                  caller: Caller | None = None) -> Caller:
    """A member of ``{org}`` (any other organization is not found), after what came due for it ran;
    ``caller`` if it was read already."""
    caller = caller or await _caller(request, state, conn)
    if caller is None:
        raise Unauthenticated("That API token is not valid.")
    if caller.org_id != org:
        raise NotFound("No such organization.")
    refuse_impossible_ids(request)
    if caller.due and caller.now is not None:
        await run_in_threadpool(catch_up_now, state, org_id=org, at=caller.now)
    return caller


@router.get(ORG, response_model=s.OrganizationOut)
async def get_organization(org: str, request: Request, state: StateDep) -> Response:
    lane = _lane(state)
    refuse_impossible_ids(request)  # before {org} reaches a statement
    async with lane.connection() as conn:
        wall = None if state.clock.simulated else wall_now()
        read, rows = await lane.caller_and_snapshot(conn, hash_secret(bearer_token(request)), org, wall_now=wall)
        if read is None or read.now is None or read.due:  # the general case: see _member
            caller = await _member(request, state, conn, org, read if read and read.now else None)
            rows = await lane.snapshot(conn, org)
        else:
            caller = await _member(request, state, conn, org, read)
    summary = summary_of(rows, env=state.env)
    assert caller.now is not None
    return json_body(present.organization(summary, state.env.catalog.plan(summary.plan_code), caller.now))


@router.post(ORG + "/agents", status_code=201, response_model=s.AgentOut)
async def create_agent(org: str, body: s.CreateAgent, request: Request, state: StateDep) -> Response:
    lane = _lane(state)
    refuse_impossible_ids(request)
    async with lane.connection() as conn:
        wall = None if state.clock.simulated else wall_now()
        read, change = await lane.create_agent_as(conn, catalog=state.env.catalog, org_id=org, name=body.name,
                                                  token_hash=hash_secret(bearer_token(request)), wall_now=wall)
        if change is None:  # the general case: see _member
            caller = await _member(request, state, conn, org, read if read and read.now else None)
            assert caller.now is not None
            change = await lane.create_agent(conn, catalog=state.env.catalog, org_id=org, name=body.name,
                                             at=caller.now)
    return json_body(present.agent(change.agent, change), status_code=201)


@router.post(SPEND, response_model=cs.SpendOut)
async def spend_credits(org: str, body: cs.SpendIn, request: Request, state: StateDep) -> Response:
    lane = _lane(state)
    async with lane.connection() as conn:
        if is_operator_key(bearer_token(request), state):
            refuse_impossible_ids(request)
            now, due = await lane.time_for(conn, org, simulated=state.clock.simulated,
                                           wall=None if state.clock.simulated else wall_now())
            if now is None:
                now = await run_in_threadpool(state.read_clock)
            if due:
                await run_in_threadpool(catch_up_now, state, org_id=org, at=now)
        else:
            now = (await _member(request, state, conn, org)).now
        assert now is not None
        done = await lane.spend(conn, catalog=state.env.catalog, org_id=org, at=now, wall_now=wall_now(),
                                request=SpendRequest(activity=body.activity, reference=body.reference,
                                                     units=body.units, model=body.model, agent_id=body.agent_id,
                                                     playground=body.playground))
    return json_body(spend_answer(done))
