"""Request-scoped dependencies: the session (committed at the edge), the caller, the time."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property, partial
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from slotwise import hotpath
from slotwise import repositories as repo
from slotwise.clock import Clock
from slotwise.config import Settings
from slotwise.errors import NotFound, SlotwiseError, Unauthenticated
from slotwise.hotpath import Caller
from slotwise.security import hash_secret
from slotwise.services import renewals
from slotwise.services.context import Actor, Env

if TYPE_CHECKING:
    from slotwise.api.fastlane import Lane


@dataclass(frozen=True)
class AppState:
    settings: Settings
    sessions: sessionmaker[Session]
    env: Env
    clock: Clock
    lane: Lane | None = None  # PostgreSQL's fast lane for the hottest routes (api.fastlane)

    def read_clock(self) -> datetime:
        """The billing time read in a transaction of its own (the simulated clock's first read
        creates its row)."""
        with self.sessions.begin() as db:
            return self.clock.now(db)

    @cached_property
    def autocommit(self) -> Engine | None:
        """The engine in autocommit, sharing its pool, for API reads (PostgreSQL only: on SQLite every
        transaction takes the write lock first, which reads rely on for a consistent view)."""
        bind = self.sessions.kw.get("bind")
        if not isinstance(bind, Engine) or bind.dialect.name != "postgresql":
            return None
        return bind.execution_options(isolation_level="AUTOCOMMIT")


# Routes whose work is one statement, atomic on its own (the credit spend): on PostgreSQL they run in
# autocommit like API reads, without the BEGIN and COMMIT round trips.
AUTOCOMMIT_ROUTES: set[str] = set()

# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency on a worker
# thread, and each such hand-off costs more than the work itself.

async def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.slotwise
    return state


StateDep = Annotated[AppState, Depends(app_state)]


async def get_db(request: Request, state: StateDep) -> AsyncIterator[Session]:
    """One transaction per request: committed when the endpoint returns, rolled back if it raises.

    Making the session does no I/O (a connection is checked out at its first statement), so only the
    end runs on a worker thread. An API read (GET) on PostgreSQL runs in autocommit: it changes
    nothing that must commit together (a due renewal runs in its own transaction), so BEGIN and
    COMMIT would be two round trips for nothing. So does a route in ``AUTOCOMMIT_ROUTES``.
    """
    route = request.scope.get("route")
    autocommit = state.autocommit is not None and (
        (request.method == "GET" and request.url.path.startswith("/v1/"))
        or getattr(route, "path", None) in AUTOCOMMIT_ROUTES)
    db = state.sessions(bind=state.autocommit) if autocommit else state.sessions()
    try:
        yield db
    except SlotwiseError as error:
        await run_in_threadpool(_end, db, commit=error.keeps)
        raise
    except BaseException:
        await run_in_threadpool(_end, db, commit=False)
        raise
    await run_in_threadpool(_end, db, commit=True)


def _end(db: Session, *, commit: bool) -> None:
    try:
        if commit:
            db.commit()
        else:
            db.rollback()
    finally:
        db.close()


SessionDep = Annotated[Session, Depends(get_db, scope="function")]


async def get_env(state: StateDep) -> Env:
    return state.env


EnvDep = Annotated[Env, Depends(get_env)]


def parse_bearer(header: str) -> str | None:
    """The token of an ``Authorization: Bearer …`` header; None for anything else."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def bearer_token(request: Request) -> str:
    token = parse_bearer(request.headers.get("authorization", ""))
    if token is None:
        raise Unauthenticated()
    return token


def token_caller(request: Request, state: StateDep, db: SessionDep) -> Caller | None:
    """The user behind the bearer token, the billing time and whether their organization has work
    due, in one round trip; None without a user token. Computed once per request (FastAPI caches a
    dependency), for both the caller and the time."""
    token = parse_bearer(request.headers.get("authorization", ""))
    if token is None:
        return None
    clock = state.clock
    found = hotpath.caller(db, hash_secret(token), wall_now=None if clock.simulated else clock.now(db))
    if found is not None and found.now is None:  # the simulated clock's first read creates its row
        now = clock.now(db)
        found = replace(found, now=now, due=repo.org_has_due_work(db, found.org_id, now))
    return found


CallerDep = Annotated[Caller | None, Depends(token_caller)]


async def get_now(state: StateDep, db: SessionDep, caller: CallerDep) -> datetime:
    if caller is not None and caller.now is not None:
        return caller.now  # read with the caller, no second round trip
    return await run_in_threadpool(state.clock.now, db)


NowDep = Annotated[datetime, Depends(get_now)]


async def current_user_actor(request: Request, caller: CallerDep) -> Actor:
    """The user behind the bearer token (no organization check: for routes outside ``{org}``)."""
    bearer_token(request)  # a missing or malformed header says so
    if caller is None:
        raise Unauthenticated("That API token is not valid.")
    return Actor(user_id=caller.user_id, org_id=caller.org_id, role=caller.role)  # type: ignore[arg-type]


async def org_actor(org: str, request: Request, actor: Annotated[Actor, Depends(current_user_actor)],
                    caller: CallerDep, state: StateDep, db: SessionDep) -> Actor:
    """The caller, who must belong to ``{org}``; any other organization is simply not found.

    What came due for the organization (a renewal the billing run has not reached yet) runs first.
    """
    if actor.org_id != org:
        raise NotFound("No such organization.")
    refuse_impossible_ids(request)
    if caller is not None and caller.due and caller.now is not None:
        await run_in_threadpool(partial(run_what_came_due, state, db, org_id=org, at=caller.now, known_due=True))
    return actor


def run_what_came_due(state: AppState, db: Session, *, org_id: str, at: datetime, known_due: bool = False) -> None:
    """SPEC §3: a request about an organization first runs its renewals and retries that came due,
    so nobody sees a stale period (or a period ``at`` lies outside) between the sweep's runs.

    The catch-up commits on its own, ahead of the request: a renewal's charge must not be undone by
    the request being refused later. The request's transaction (on SQLite, the write lock) is ended
    first so the catch-up can take the organization lock.
    """
    if not known_due and not repo.org_has_due_work(db, org_id, at):
        return
    db.commit()
    catch_up_now(state, org_id=org_id, at=at)
    db.expire_all()


def catch_up_now(state: AppState, *, org_id: str, at: datetime) -> None:
    """Run what came due for ``org_id`` by ``at`` in a transaction of its own, committed."""
    with state.sessions.begin() as own:
        renewals.catch_up(own, env=state.env, org_id=org_id, at=at)


def impossible_id(value: str) -> bool:
    """No id holds a control character, so such an id is simply not found (PostgreSQL would
    otherwise refuse a NUL in the lookup and the client would get a 500)."""
    return any(ch < " " or ch == "\x7f" for ch in value)


def refuse_impossible_ids(request: Request) -> None:
    if any(impossible_id(str(value)) for value in request.path_params.values()):
        raise NotFound()


OrgActor = Annotated[Actor, Depends(org_actor)]
UserActor = Annotated[Actor, Depends(current_user_actor)]


def is_operator_key(token: str, state: AppState) -> bool:
    key = state.settings.operator_key
    return key is not None and key != "" and hmac.compare_digest(token.encode(), key.encode())


def operator(request: Request, state: StateDep) -> None:
    if not is_operator_key(bearer_token(request), state):
        raise Unauthenticated("The operator key is required.")
    refuse_impossible_ids(request)



@dataclass(frozen=True, slots=True)
class OrgReader:
    """Who may call the platform-facing credit routes (SPEC §11: spend and usage): the platform's
    backend with the operator key (``actor`` None), or any member of ``{org}``."""

    org_id: str
    actor: Actor | None


async def member_or_operator(org: str, request: Request, caller: CallerDep, state: StateDep,
                             db: SessionDep, now: NowDep) -> OrgReader:
    token = bearer_token(request)
    refuse_impossible_ids(request)
    if caller is None and is_operator_key(token, state):
        await run_in_threadpool(partial(run_what_came_due, state, db, org_id=org, at=now))
        return OrgReader(org, None)
    if caller is None:
        raise Unauthenticated("That API token is not valid.")
    if caller.org_id != org:
        raise NotFound("No such organization.")
    if caller.due:
        await run_in_threadpool(partial(run_what_came_due, state, db, org_id=org, at=now, known_due=True))
    return OrgReader(org, Actor(user_id=caller.user_id, org_id=caller.org_id, role=caller.role))  # type: ignore[arg-type]


MemberOrOperator = Annotated[OrgReader, Depends(member_or_operator)]


OperatorDep = Depends(operator)
