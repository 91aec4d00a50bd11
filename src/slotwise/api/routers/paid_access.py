"""Paid agents (SPEC §13): the organization's access modes, contacts, passes, refunds and revenue;
the public paywall's purchase; and the platform's access check and visitor message (operator key)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from slotwise.api import paid_schemas as ps
from slotwise.api import schemas as s
from slotwise.api.deps import EnvDep, NowDep, OperatorDep, OrgActor, SessionDep
from slotwise.api.idempotency import caller_scope, run_idempotent
from slotwise.clock import wall_now
from slotwise.models import Agent, Contact, Pass
from slotwise.services import paid_access as pa

router = APIRouter(tags=["paid agents"])
ORG = "/v1/organizations/{org}"
ERRORS: dict[int | str, dict[str, object]] = {code: {"model": s.ErrorBody} for code in (401, 402, 403, 404, 409, 422)}
# One agent's passes or revenue: an id, so never long and never a control character (PostgreSQL would
# refuse a NUL in the lookup with a 500); otherwise 422 like any bad parameter.
AgentFilter = Annotated[str | None, Query(max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$",
                                          description="Only this agent's.")]
PUBLIC_ERRORS: dict[int | str, dict[str, object]] = {code: {"model": s.ErrorBody} for code in (402, 404, 409, 422, 503)}


def paywall_url(agent_id: str) -> str:
    return f"/pay/{agent_id}"


def access_out(agent: Agent) -> ps.AgentAccessOut:
    config = pa.config_of(agent)
    return ps.AgentAccessOut(
        agent_id=agent.id, mode=agent.access_mode,
        paid=ps.PaidConfigOut(price=config.price, currency=config.currency, access_days=config.access_days,
                              message_credits=config.message_credits) if config else None,
        paywall_url=paywall_url(agent.id) if agent.access_mode == "paid" else None)


def contact_out(c: Contact) -> ps.ContactOut:
    return ps.ContactOut(id=c.id, email=c.email, source=c.source, created_at=c.created_at)


def pass_out(p: Pass, now: object) -> ps.PassOut:
    return ps.PassOut(id=p.id, agent_id=p.agent_id, visitor_email=p.visitor_email,
                      status=pa.status_of(p, now),  # type: ignore[arg-type]
                      price=p.price, currency=p.currency, platform_fee=p.platform_fee, net=p.net,
                      access_days=p.access_days, message_credits=p.message_credits, credits_left=p.credits_left,
                      expires_at=p.expires_at, created_at=p.created_at, refunded_at=p.refunded_at)


def view_out(view: pa.PassView | None) -> ps.AccessPassOut | None:
    if view is None:
        return None
    return ps.AccessPassOut(id=view.id, status=view.status, credits_left=view.credits_left,
                            expires_at=view.expires_at)


# --- the organization's routes ---------------------------------------------------------------------

@router.get(ORG + "/agents/{agent_id}/access", response_model=ps.AgentAccessOut, responses=ERRORS)
def get_access(agent_id: str, actor: OrgActor, db: SessionDep) -> ps.AgentAccessOut:
    return access_out(pa._agent_in_org(db, actor.org_id, agent_id))


@router.put(ORG + "/agents/{agent_id}/access", response_model=ps.AgentAccessOut, responses=ERRORS)
def put_access(agent_id: str, body: ps.AccessIn, actor: OrgActor, db: SessionDep, now: NowDep) -> ps.AgentAccessOut:
    """Free (anyone), restricted (the organization's contacts) or paid (a pass); Owner or Admin.
    ``paid`` needs an active subscription and a complete configuration (sent now or before)."""
    paid = body.paid
    config = pa.PaidConfig(paid.price, paid.currency, paid.access_days, paid.message_credits) if paid else None
    return access_out(pa.configure_access(db, actor=actor, agent_id=agent_id, mode=body.mode, paid=config, at=now))


@router.get(ORG + "/contacts", response_model=s.Page[ps.ContactOut], responses=ERRORS)
def list_contacts(actor: OrgActor, db: SessionDep, limit: s.PageLimit = s.DEFAULT_PAGE_SIZE,
                  starting_after: s.StartingAfter = None) -> s.Page[ps.ContactOut]:
    """Oldest first; Owner or Admin."""
    rows = pa.contacts_page(db, actor=actor, limit=limit, after=starting_after)
    return s.Page(data=[contact_out(c) for c in rows[:limit]], has_more=len(rows) > limit)


@router.post(ORG + "/contacts", status_code=201, response_model=ps.ContactOut,
             responses={**ERRORS, 200: {"model": ps.ContactOut, "description": "Already a contact: that contact."}})
def add_contact(body: ps.ContactIn, actor: OrgActor, db: SessionDep, now: NowDep) -> Response:
    """A visitor whose email the platform verified; 200 with the existing contact if it is one already."""
    contact, created = pa.add_contact(db, actor=actor, email=body.email, at=now)
    return Response(contact_out(contact).model_dump_json(), status_code=201 if created else 200,
                    media_type="application/json")


@router.get(ORG + "/passes", response_model=s.Page[ps.PassOut], responses=ERRORS)
def list_passes(actor: OrgActor, db: SessionDep, now: NowDep, limit: s.PageLimit = s.DEFAULT_PAGE_SIZE,
                starting_after: s.StartingAfter = None,
                agent_id: AgentFilter = None) -> s.Page[ps.PassOut]:
    """Newest first; one agent's with ``agent_id``. Owner or Admin."""
    rows = pa.passes_page(db, actor=actor, limit=limit, after=starting_after, agent_id=agent_id)
    return s.Page(data=[pass_out(p, now) for p in rows[:limit]], has_more=len(rows) > limit)


@router.post(ORG + "/passes/{pass_id}/refund", response_model=ps.PassOut, responses=ERRORS)
def refund(pass_id: str, actor: OrgActor, request: Request, db: SessionDep, env: EnvDep, now: NowDep) -> Response:
    """The Owner refunds a pass in full through the gateway: revoked at once, out of the revenue."""
    def action() -> ps.PassOut:
        return pass_out(pa.refund_pass(db, env=env, actor=actor, pass_id=pass_id, at=now), now)

    return run_idempotent(request, db, scope=caller_scope(actor.user_id), now=now, body=None, action=action)


@router.get(ORG + "/revenue", response_model=ps.RevenueOut, responses=ERRORS)
def get_revenue(actor: OrgActor, db: SessionDep, now: NowDep,
                agent_id: AgentFilter = None) -> ps.RevenueOut:
    """Gross, the platform's fee and net of the passes sold (refunded ones apart), per currency:
    overall and this calendar month; and the visitors holding a usable pass now. Owner or Admin."""
    found = pa.revenue(db, actor=actor, at=now, agent_id=agent_id)

    def totals(rows: list[pa.Totals]) -> list[ps.TotalsOut]:
        return [ps.TotalsOut(currency=t.currency, gross=t.gross, platform_fee=t.platform_fee, net=t.net,
                             sales=t.sales, refunded=t.refunded) for t in rows]

    return ps.RevenueOut(totals=totals(found.totals), this_month=totals(found.this_month),
                         active_subscribers=found.active_subscribers)


# --- public: the paywall ------------------------------------------------------------------------------

@router.get("/v1/agents/{agent_id}/paywall", response_model=ps.PaywallOut, responses=PUBLIC_ERRORS)
def get_paywall(agent_id: str, db: SessionDep) -> ps.PaywallOut:
    """What a pass gives, for the public page and the platform's widget (no token)."""
    wall = pa.paywall(db, agent_id=agent_id)
    c = wall.config
    return ps.PaywallOut(agent_id=wall.agent_id, agent_name=wall.agent_name, organization=wall.org_name,
                         headline="This Chatbot is Monetized by the Creator", price=c.price, currency=c.currency,
                         access_days=c.access_days, message_credits=c.message_credits)


@router.post("/v1/agents/{agent_id}/checkout", status_code=201, response_model=ps.PassCheckoutOut,
             responses={**PUBLIC_ERRORS, 200: {"model": ps.PassCheckoutOut,
                                               "description": "A repeated submit: the first pass, without its token."}})
def buy(agent_id: str, body: ps.PassCheckoutIn, db: SessionDep, env: EnvDep, now: NowDep) -> Response:
    """A visitor buys a pass (no token: what the paywall page posts). A declined card creates nothing;
    submits of one ``checkout`` id charge once and answer the first pass (201, then 200 without the
    token)."""
    method = body.payment_method or body.card_number or ""
    bought = pa.buy_pass(db, env=env, agent_id=agent_id, email=body.email, payment_method=method,
                         checkout_key=body.checkout, at=now)
    answer = ps.PassCheckoutOut(
        pass_=pass_out(bought.pass_, now), visitor_token=bought.visitor_token,
        replay_note="This checkout was already paid: the pass is the first one, and its token was shown "
                    "then." if bought.replayed else None)
    return Response(answer.model_dump_json(by_alias=True), status_code=200 if bought.replayed else 201,
                    media_type="application/json")


@router.post("/v1/agents/{agent_id}/checkout/verify", response_model=ps.PassCheckoutOut, responses=PUBLIC_ERRORS)
def verify(agent_id: str, body: ps.PassVerifyIn, db: SessionDep, env: EnvDep, now: NowDep) -> Response:
    """The visitor's bank verified (or refused) a pass's payment: the pass and its token (200), or
    ``payment_failed`` with nothing made, or ``verification_pending`` while the bank has not answered."""
    bought = pa.verify_pass(db, env=env, agent_id=agent_id, checkout_key=body.checkout, verdict=body.verdict, at=now)
    answer = ps.PassCheckoutOut(
        pass_=pass_out(bought.pass_, now), visitor_token=bought.visitor_token,
        replay_note="This pass was already made: its token was shown then." if bought.replayed else None)
    return Response(answer.model_dump_json(by_alias=True), media_type="application/json")


# --- the platform (operator key): the access check and the visitor message ------------------------

@router.post("/v1/agents/{agent_id}/access", response_model=ps.AccessOut, responses=ERRORS,
             dependencies=[OperatorDep])
def access(agent_id: str, body: ps.VisitorIn, db: SessionDep, env: EnvDep, now: NowDep) -> ps.AccessOut:
    """May this visitor send a message now? ``allowed`` with a ``reason`` (never an error for an unknown
    or expired token)."""
    found = pa.check_access(db, env=env, agent_id=agent_id,
                            visitor=pa.Visitor(body.visitor_token, body.visitor_email), at=now)
    return ps.AccessOut(allowed=found.allowed, reason=found.reason, pass_=view_out(found.pass_))


@router.post("/v1/agents/{agent_id}/messages", response_model=ps.MessageOut, responses=ERRORS,
             dependencies=[OperatorDep])
def message(agent_id: str, body: ps.MessageIn, db: SessionDep, env: EnvDep, now: NowDep) -> ps.MessageOut:
    """A visitor's message: one of the pass's message credits and the organization's credits, in one
    atomic step, once per ``reference``; refused with ``access_denied`` (``reason``) or the
    organization's ``insufficient_credits``, nothing taken."""
    done = pa.visitor_message(db, env=env, agent_id=agent_id,
                              visitor=pa.Visitor(body.visitor_token, body.visitor_email),
                              reference=body.reference, model=body.model, at=now, wall_now=wall_now())
    spent = done.spent
    return ps.MessageOut(reference=spent.reference, cost=spent.cost, replayed=spent.replayed,
                         pass_=view_out(done.pass_),
                         balance=ps.BalanceOut(plan=spent.plan, topup=spent.topup, total=spent.total))
