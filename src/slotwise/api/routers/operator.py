"""The operator API: the platform's backend creates organizations and users, and drives time."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from slotwise.api import present
from slotwise.api import schemas as s
from slotwise.api.deps import EnvDep, NowDep, OperatorDep, SessionDep, StateDep, run_what_came_due
from slotwise.api.idempotency import run_idempotent
from slotwise.services import organizations, renewals

router = APIRouter(prefix="/v1/operator", tags=["operator"], dependencies=[OperatorDep])

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": s.ErrorBody} for code in (401, 402, 404, 409, 422)
}


@router.post("/organizations", status_code=201, response_model=s.CreatedOrganization, responses=ERRORS)
def create_organization(
    body: s.CreateOrganization, request: Request, db: SessionDep, env: EnvDep, now: NowDep
) -> Response:
    def action() -> s.CreatedOrganization:
        created = organizations.create_organization(
            db, env=env, name=body.name, owner_email=body.owner_email, owner_name=body.owner_name,
            owner_password=body.owner_password, plan_code=body.plan, card_number=body.card_number, at=now,
        )
        org, owner = created.organization, created.owner
        return s.CreatedOrganization(
            id=org.id, name=org.name, plan=org.plan_code, created_at=org.created_at,
            owner=s.UserWithToken(**present.user(owner.user).model_dump(), api_token=owner.api_token),
        )

    return run_idempotent(request, db, scope="operator", now=now, body=body, action=action, status_code=201)


@router.post("/organizations/{org}/users", status_code=201, response_model=s.UserWithToken, responses=ERRORS)
def create_user(
    org: str, body: s.CreateUser, request: Request, db: SessionDep, env: EnvDep, now: NowDep, state: StateDep
) -> Response:
    run_what_came_due(state, db, org_id=org, at=now)
    def action() -> s.UserWithToken:
        new = organizations.add_user(db, env=env, org_id=org, email=body.email, name=body.name,
                                     password=body.password, role=body.role, at=now)
        return s.UserWithToken(**present.user(new.user).model_dump(), api_token=new.api_token)

    return run_idempotent(request, db, scope="operator", now=now, body=body, action=action, status_code=201)


@router.post("/clock", response_model=s.SweepOut, responses=ERRORS)
def move_clock(body: s.MoveClock, state: StateDep) -> s.SweepOut:
    """Move the simulated clock forwards and run every renewal and retry that came due."""
    with state.sessions.begin() as db:
        now = state.clock.now(db)
    target = renewals.clock_target(now, advance_days=body.advance_days, to=body.to)
    at, report = renewals.advance_clock(state.sessions, env=state.env, clock=state.clock, to=target)
    return present.sweep(at, report)


@router.post("/billing/run", response_model=s.SweepOut, responses=ERRORS)
def billing_run(state: StateDep) -> s.SweepOut:
    """Renew every subscription that came due and retry failed payments, at the current time."""
    with state.sessions.begin() as db:
        at = state.clock.now(db)
    return present.sweep(at, renewals.sweep(state.sessions, env=state.env, at=at))
