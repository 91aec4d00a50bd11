"""The credit spend: the platform's backend asks once per activity (SPEC §11)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from slotwise.api import credit_schemas as cs
from slotwise.api import schemas as s
from slotwise.api.deps import AUTOCOMMIT_ROUTES, MemberOrOperator, NowDep, SessionDep, StateDep
from slotwise.api.responses import json_body
from slotwise.clock import wall_now
from slotwise.services.spend import SpendRequest, Spent, spend

router = APIRouter(tags=["credits"])
SPEND = "/v1/organizations/{org}/credits/spend"
AUTOCOMMIT_ROUTES.add(SPEND)  # one statement on PostgreSQL: atomic on its own, no BEGIN/COMMIT round trips

ERRORS: dict[int | str, dict[str, object]] = {code: {"model": s.ErrorBody} for code in (401, 402, 404, 409, 422)}


@router.post(SPEND, response_model=cs.SpendOut, responses=ERRORS)
def spend_credits(body: cs.SpendIn, reader: MemberOrOperator, db: SessionDep, state: StateDep, now: NowDep) -> Response:
    """Debit the activity's cost (plan credits first, then top-up) or refuse with
    ``insufficient_credits``, nothing spent. A repeated ``reference`` answers the first result."""
    request = SpendRequest(activity=body.activity, reference=body.reference, units=body.units, model=body.model,
                           agent_id=body.agent_id, playground=body.playground)
    done = spend(db.connection(), terms=state.env.catalog.credits, org_id=reader.org_id, request=request, at=now,
                 wall_now=wall_now())
    return json_body(spend_answer(done))


def spend_answer(done: Spent) -> cs.SpendOut:
    return cs.SpendOut(id=done.id, reference=done.reference, cost=done.cost, from_plan=done.from_plan,
                      from_topup=done.from_topup, replayed=done.replayed,
                      balance=cs.CreditBalance(plan=done.plan, topup=done.topup, total=done.total))
