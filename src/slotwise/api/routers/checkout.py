"""``POST /v1/organizations/{org}/checkout`` {plan} → {url}: where to send the Owner to pay for a plan
(SPEC §12). The URL is slotwise's own checkout page, standing where a processor's hosted page would;
asking for it changes nothing — the page attaches the card and starts the plan."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from slotwise.api import schemas as s
from slotwise.api.deps import EnvDep, NowDep, OrgActor, SessionDep
from slotwise.api.idempotency import caller_scope, run_idempotent
from slotwise.services import checkout
from slotwise.services.context import require_owner

router = APIRouter(tags=["billing"])
ERRORS: dict[int | str, dict[str, object]] = {code: {"model": s.ErrorBody} for code in (401, 402, 403, 404, 409, 422)}


class CheckoutIn(s.Body):
    plan: s.PlanCode


class CheckoutOut(BaseModel):
    url: str = Field(description="The checkout page to send the Owner to, in a browser signed in as them.")
    plan: str


@router.post("/v1/organizations/{org}/checkout", response_model=CheckoutOut, responses=ERRORS)
def start_checkout(
    body: CheckoutIn, actor: OrgActor, request: Request, db: SessionDep, env: EnvDep, now: NowDep
) -> Response:
    def action() -> CheckoutOut:
        plan = checkout.checkout_plan(db, env=env, actor=actor, plan_code=body.plan)
        base = str(request.base_url).rstrip("/")
        return CheckoutOut(url=base + checkout.checkout_path(plan.code), plan=plan.code)

    return run_idempotent(request, db, scope=caller_scope(actor.user_id), now=now, body=body, action=action,
                          authorize=lambda: require_owner(actor, checkout.WHAT))
