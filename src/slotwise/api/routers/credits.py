"""Credits the customer manages (SPEC §11): the overview, Top Up Now and auto-recharge."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from slotwise.api import credit_schemas as cs
from slotwise.api import present
from slotwise.api import schemas as s
from slotwise.api.deps import EnvDep, NowDep, OrgActor, SessionDep
from slotwise.api.idempotency import caller_scope, run_idempotent
from slotwise.api.responses import json_body
from slotwise.clock import wall_now
from slotwise.services import recharges, topups
from slotwise.services.context import require_owner
from slotwise.services.credits import AutoRecharge, CreditsOverview, credits_overview

router = APIRouter(tags=["credits"])
ERRORS: dict[int | str, dict[str, object]] = {code: {"model": s.ErrorBody} for code in (401, 402, 403, 404, 409, 422)}
CREDITS = "/v1/organizations/{org}/credits"


def _auto_recharge(view: AutoRecharge) -> cs.AutoRechargeOut:
    return cs.AutoRechargeOut(
        enabled=view.enabled, threshold=view.threshold, max_per_month=view.max_per_month,
        used_this_month=view.used_this_month, last_recharged_at=view.last_recharged_at,
        disabled_reason=view.disabled_reason,
        pack=cs.CreditPackOut(credits=view.pack.credits, price=view.pack.price, currency=view.pack.currency))


def _credits(view: CreditsOverview) -> cs.CreditsOut:
    return cs.CreditsOut(
        plan=cs.PlanCreditsOut(allowance=view.plan_allowance, remaining=view.plan_remaining,
                               refills_at=view.refills_at),
        topup=cs.TopupCreditsOut(remaining=view.topup_remaining), total=view.total,
        used_this_period=view.used_this_period, costs=view.costs, auto_recharge=_auto_recharge(view.auto_recharge))


@router.get(CREDITS, response_model=cs.CreditsOut, responses=ERRORS)
def get_credits(actor: OrgActor, db: SessionDep, env: EnvDep) -> Response:
    """Both pools, what was used this period, the costs and auto-recharge; any member may read it."""
    return json_body(_credits(credits_overview(db, env, actor.org_id)))


@router.post(CREDITS + "/top-up", response_model=cs.TopUpOut, status_code=201, responses=ERRORS)
def top_up(body: cs.TopUpIn, actor: OrgActor, request: Request, db: SessionDep, env: EnvDep, now: NowDep) -> Response:
    """Top Up Now: ``packs`` packs charged at once to the card on file, on one invoice; the credits
    land in the top-up pool only if it is paid. Owner only; honours ``Idempotency-Key``."""

    def action() -> cs.TopUpOut:
        done = topups.top_up(db, env=env, actor=actor, packs=body.packs, at=now)
        return cs.TopUpOut(message=done.message, invoice=present.invoice(done.invoice),
                          balance=cs.CreditBalance(plan=done.balance.plan, topup=done.balance.topup,
                                                  total=done.balance.total))

    return run_idempotent(request, db, scope=caller_scope(actor.user_id), now=now, body=body, action=action,
                          authorize=lambda: require_owner(actor, "Credit purchases"), status_code=201)


@router.put(CREDITS + "/auto-recharge", response_model=cs.AutoRechargeUpdated, responses=ERRORS)
def update_auto_recharge(body: cs.AutoRechargeIn, actor: OrgActor, db: SessionDep, env: EnvDep,
                         now: NowDep) -> Response:
    """Save the auto-recharge settings (Owner only). Enabled with the balance already below the
    threshold, a recharge is queued at once; a worker charges it within seconds."""
    settings = recharges.RechargeSettings(enabled=body.enabled, threshold=body.threshold,
                                          max_per_month=body.max_per_month)
    recharges.update_settings(db, actor=actor, settings=settings, at=now, wall_now=wall_now())
    view = credits_overview(db, env, actor.org_id)
    return json_body(cs.AutoRechargeUpdated(message=recharges.SETTINGS_UPDATED,
                                           auto_recharge=_auto_recharge(view.auto_recharge)))
