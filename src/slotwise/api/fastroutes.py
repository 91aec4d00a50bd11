"""The hottest routes on PostgreSQL's fast lane (``api.fastlane``): reading an organization, creating
an agent and spending credits, and the paid agents' access check and visitor message (``api.paid_lane``,
operator key), each ``async`` from end to end and answered here, in front of FastAPI.

``FastRoutes`` is the innermost middleware: a request for one of the three routes is answered without
FastAPI's routing, dependency solving and exception middleware, which measured a fifth of such a
request's time (docs/BENCHMARKS.md). It only takes what it answers exactly as the general routes
would — same paths, bodies, answers and errors (the general ones document them in the OpenAPI
schema). Anything else passes through untouched to the general route: a request with an
``Idempotency-Key`` (whose stored answer the general path keeps), a body that is not JSON or not
valid (so the general route's 422 says why, in its words), another method or path. Only PostgreSQL
has the lane; on SQLite every route takes the general path.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime

import psycopg
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from slotwise.api import credit_schemas as cs
from slotwise.api import paid_lane, present
from slotwise.api import paid_schemas as ps
from slotwise.api import schemas as s
from slotwise.api.deps import AppState, catch_up_now, impossible_id, is_operator_key, parse_bearer
from slotwise.api.fastlane import Connection, Lane
from slotwise.api.limits import replay_body
from slotwise.api.responses import busy_response, error_response, json_body
from slotwise.api.routers.paid_access import view_out
from slotwise.api.routers.spend import spend_answer
from slotwise.clock import wall_now
from slotwise.errors import NotFound, SlotwiseError, Unauthenticated
from slotwise.hotpath import Caller
from slotwise.security import hash_secret
from slotwise.services import agents
from slotwise.services.agents import AgentChange
from slotwise.services.context import Actor
from slotwise.services.organizations import summary_of
from slotwise.services.spend import SpendRequest

_ORG = re.compile(r"/v1/organizations/([^/]+)")
_AGENTS = re.compile(r"/v1/organizations/([^/]+)/agents")
_SPEND = re.compile(r"/v1/organizations/([^/]+)/credits/spend")
_ACCESS = re.compile(r"/v1/agents/([^/]+)/access")
_MESSAGES = re.compile(r"/v1/agents/([^/]+)/messages")


class _Call:
    """What a lane route reads of its request: the id in the path (``org``: the organization's, or on
    the paid agents' routes the agent's), the bearer token."""

    __slots__ = ("authorization", "org", "state")

    def __init__(self, state: AppState, org: str, headers: dict[bytes, bytes]) -> None:
        self.state, self.org = state, org
        self.authorization = headers.get(b"authorization", b"").decode("latin-1")

    @property
    def lane(self) -> Lane:
        assert self.state.lane is not None  # installed only with a lane
        return self.state.lane

    def token(self) -> str:
        token = parse_bearer(self.authorization)
        if token is None:
            raise Unauthenticated()
        return token

    def refuse_impossible_org(self) -> None:
        if impossible_id(self.org):
            raise NotFound()


Handler = Callable[[_Call, BaseModel | None], Awaitable[Response]]


class FastRoutes:
    def __init__(self, app: ASGIApp, *, state: AppState) -> None:
        self.app, self.state = app, state
        self.routes: dict[str, list[tuple[re.Pattern[str], type[BaseModel] | None, Handler]]] = {
            "GET": [(_ORG, None, get_organization)],
            "POST": [(_AGENTS, s.CreateAgent, create_agent), (_SPEND, cs.SpendIn, spend_credits),
                     (_ACCESS, ps.VisitorIn, paid_access_check), (_MESSAGES, ps.MessageIn, visitor_message)],
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for pattern, body_model, handler in self.routes.get(scope["method"], ()):
                match = pattern.fullmatch(_route_path(scope))
                if match is not None:
                    await self._serve(scope, receive, send, match.group(1), body_model, handler)
                    return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, org: str,
                     body_model: type[BaseModel] | None, handler: Handler) -> None:
        headers = dict(scope["headers"])
        if b"idempotency-key" in headers:
            await self.app(scope, receive, send)
            return
        body: BaseModel | None = None
        if body_model is not None:
            raw = await _read_body(receive)
            body = _valid_json(body_model, raw, headers.get(b"content-type", b""))
            if body is None:  # the general route answers it, with its own 415/422 and words
                await self.app(scope, replay_body(raw, receive), send)
                return
        try:
            response = await handler(_Call(self.state, org, headers), body)
        except SlotwiseError as error:
            response = error_response(error)
        except (psycopg.OperationalError, PoolTimeout):
            response = busy_response()
        await response(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path the routes match, as Starlette's router takes it (behind a proxy's ``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] == "/":
        return path[len(root):]
    return path


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:  # BodySizeLimit, outside, has already read and bounded it: one message
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _valid_json(model: type[BaseModel], raw: bytes, content_type: bytes) -> BaseModel | None:
    if content_type.split(b";")[0].strip().lower() != b"application/json":
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        return None


async def _caller(call: _Call, conn: Connection) -> Caller | None:
    """The user behind the bearer token with the billing time, as ``deps.token_caller`` reads it."""
    state = call.state
    wall = None if state.clock.simulated else wall_now()
    found = await call.lane.caller(conn, hash_secret(call.token()), wall_now=wall)
    if found is not None and found.now is None:  # the simulated clock's very first read creates its row
        await run_in_threadpool(state.read_clock)
        found = await call.lane.caller(conn, hash_secret(call.token()), wall_now=wall)
    return found


async def _member(call: _Call, conn: Connection, caller: Caller | None = None) -> Caller:
    """A member of ``{org}`` (any other organization is not found), after what came due for it ran;
    ``caller`` if it was read already."""
    caller = caller or await _caller(call, conn)
    if caller is None:
        raise Unauthenticated("That API token is not valid.")
    if caller.org_id != call.org:
        raise NotFound("No such organization.")
    call.refuse_impossible_org()
    if caller.due and caller.now is not None:
        await run_in_threadpool(catch_up_now, call.state, org_id=call.org, at=caller.now)
    return caller


async def get_organization(call: _Call, _: BaseModel | None) -> Response:
    """``GET /v1/organizations/{org}``: the caller and the snapshot in one statement."""
    state, lane = call.state, call.lane
    call.refuse_impossible_org()  # before {org} reaches a statement
    token_hash = hash_secret(call.token())
    async with lane.connection() as conn:
        wall = None if state.clock.simulated else wall_now()
        read, rows = await lane.caller_and_snapshot(conn, token_hash, call.org, wall_now=wall)
        if read is None or read.now is None or read.due:  # the general case: see _member
            caller = await _member(call, conn, read if read and read.now else None)
            rows = await lane.snapshot(conn, call.org)
        else:
            caller = await _member(call, conn, read)
    summary = summary_of(rows, env=state.env)
    assert caller.now is not None
    return json_body(present.organization(summary, state.env.catalog.plan(summary.plan_code), caller.now))


async def create_agent(call: _Call, body: BaseModel | None) -> Response:
    """``POST /v1/organizations/{org}/agents``: two round trips (``Lane.create_agent_as``)."""
    assert isinstance(body, s.CreateAgent)
    state, lane = call.state, call.lane
    call.refuse_impossible_org()
    token_hash = hash_secret(call.token())
    async with lane.connection() as conn:
        wall = None if state.clock.simulated else wall_now()
        read, change = await lane.create_agent_as(conn, catalog=state.env.catalog, org_id=call.org,
                                                  name=body.name, token_hash=token_hash, wall_now=wall)
        if change is None:  # the general case: see _member
            caller = await _member(call, conn, read if read and read.now else None)
            assert caller.now is not None
            change = await lane.create_agent(conn, catalog=state.env.catalog, org_id=call.org,
                                             user_id=caller.user_id, name=body.name, at=caller.now)
            if change is None:  # it shrinks a scheduled removal: the general service writes that change too
                change = await run_in_threadpool(_create_agent, state, caller, body.name)
    return json_body(present.agent(change.agent, change), status_code=201)


def _create_agent(state: AppState, caller: Caller, name: str) -> AgentChange:
    assert caller.now is not None
    actor = Actor(user_id=caller.user_id, org_id=caller.org_id, role=caller.role)  # type: ignore[arg-type]
    with state.sessions.begin() as db:
        return agents.create_agent(db, env=state.env, actor=actor, name=name, at=caller.now)


async def spend_credits(call: _Call, body: BaseModel | None) -> Response:
    """``POST /v1/organizations/{org}/credits/spend``: the caller's statement and one more."""
    assert isinstance(body, cs.SpendIn)
    state, lane = call.state, call.lane
    async with lane.connection() as conn:
        if is_operator_key(call.token(), state):
            call.refuse_impossible_org()
            now, due = await lane.time_for(conn, call.org, simulated=state.clock.simulated,
                                           wall=None if state.clock.simulated else wall_now())
            if now is None:
                now = await run_in_threadpool(state.read_clock)
            if due:
                await run_in_threadpool(catch_up_now, state, org_id=call.org, at=now)
        else:
            now = (await _member(call, conn)).now
        assert now is not None
        done = await lane.spend(conn, catalog=state.env.catalog, org_id=call.org, at=now, wall_now=wall_now(),
                                request=SpendRequest(activity=body.activity, reference=body.reference,
                                                     units=body.units, model=body.model, agent_id=body.agent_id,
                                                     playground=body.playground))
    return json_body(spend_answer(done))


async def _operator_now(call: _Call, conn: Connection) -> datetime:
    """The operator key's, else ``unauthenticated`` (as ``deps.operator``); the billing time, as
    ``deps.get_now`` reads it for a caller that is no user."""
    state = call.state
    if not is_operator_key(call.token(), state):
        raise Unauthenticated("The operator key is required.")
    call.refuse_impossible_org()  # the agent's id
    if not state.clock.simulated:
        return wall_now()
    now = await paid_lane.simulated_now(call.lane, conn)
    return now if now is not None else await run_in_threadpool(state.read_clock)


async def paid_access_check(call: _Call, body: BaseModel | None) -> Response:
    """``POST /v1/agents/{agent_id}/access`` (operator key): one statement."""
    assert isinstance(body, ps.VisitorIn)
    async with call.lane.connection() as conn:
        now = await _operator_now(call, conn)
        found = await paid_lane.check_access(call.lane, conn, catalog=call.state.env.catalog, agent_id=call.org,
                                             token=body.visitor_token, email=body.visitor_email, at=now)
    return _by_alias(ps.AccessOut(allowed=found.allowed, reason=found.reason, pass_=view_out(found.pass_)))


async def visitor_message(call: _Call, body: BaseModel | None) -> Response:
    """``POST /v1/agents/{agent_id}/messages`` (operator key): one statement (a refusal or a replay one
    more)."""
    assert isinstance(body, ps.MessageIn)
    async with call.lane.connection() as conn:
        now = await _operator_now(call, conn)
        done = await paid_lane.visitor_message(
            call.lane, conn, catalog=call.state.env.catalog, agent_id=call.org, token=body.visitor_token,
            email=body.visitor_email, reference=body.reference, model=body.model, at=now, wall_now=wall_now())
    spent = done.spent
    return _by_alias(ps.MessageOut(reference=spent.reference, cost=spent.cost, replayed=spent.replayed,
                                   pass_=view_out(done.pass_),
                                   balance=ps.BalanceOut(plan=spent.plan, topup=spent.topup, total=spent.total)))


def _by_alias(model: BaseModel) -> Response:
    """As FastAPI serializes a ``response_model``: by alias (``pass``)."""
    return Response(model.__pydantic_serializer__.to_json(model, by_alias=True), media_type="application/json")
