"""Checkout (SPEC §12): the Owner subscribes to a paid plan by entering a card on the checkout page —
slotwise's own, standing where a processor's hosted page would — and the card is attached, then the
plan starts (or is upgraded) with the existing plan change, which charges the first invoice.

Which plans can be checked out, the page's address, what the first invoice will be, and the order
attach → subscribe live here; the page (``web/checkout.py``) and the API (``api/routers/checkout.py``)
only present them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.catalog import Plan
from slotwise.errors import AlreadyOnPlan, InvalidRequest, NotFound, PaymentRequired, PlanUnavailable
from slotwise.gateway.base import CardSetup
from slotwise.periods import period_at_index
from slotwise.proration import prorate
from slotwise.services import payments, subscriptions
from slotwise.services.context import Actor, Env, require_owner
from slotwise.services.payments import CardUpdate
from slotwise.services.snapshot import locked_org, subscription_period
from slotwise.services.subscriptions import PlanChange

CHECKOUT_PATH = "/billing/checkout"
WHAT = "Plan changes"  # the Owner Only refusal names what checkout changes


def checkout_path(plan_code: str) -> str:
    """The checkout page for ``plan_code``, as a site path (the API makes it absolute)."""
    return f"{CHECKOUT_PATH}?{urlencode({'plan': plan_code})}"


@dataclass(frozen=True, slots=True)
class CheckoutQuote:
    """What checking out ``plan`` does now: ``kind`` is start (from Free: billed in full), upgrade
    (pro-rated, the unused old plan credited) or downgrade (at the next billing date, nothing today)."""

    plan: Plan
    kind: str
    due_today: int  # minor units, in ``plan.currency``
    period_start: datetime
    period_end: datetime
    days_left: int
    days_in_period: int
    credits_now: int  # plan credits granted once paid (an upgrade grants the difference)

    @property
    def currency(self) -> str:
        return self.plan.currency


def checkout_plan(db: Session, *, env: Env, actor: Actor, plan_code: str) -> Plan:
    """The plan ``plan_code`` if this organization may check out to it: Owner only; a self-serve paid
    plan (Free needs no card and custom terms go through sales); not the plan it is already on; and
    not while dunning has ended (``unpaid``: updating the card restarts the subscription first); not
    while a plan start or upgrade waits for the bank's verification (``verification_pending``)."""
    require_owner(actor, WHAT)
    plan = env.catalog.plans.get(plan_code)
    if plan is None:
        raise InvalidRequest(f"Unknown plan {plan_code!r}.", field="plan")
    if not plan.self_serve or plan.price is None:
        raise PlanUnavailable(f"{plan.name} has custom terms. Contact sales to move to it.")
    if plan.is_free:
        raise PlanUnavailable("The Free plan needs no checkout. To leave a paid plan, cancel it from Update Billing.")
    org = repo.organization(db, actor.org_id)
    if org is None:
        raise NotFound()
    if org.plan_code == plan.code:
        raise AlreadyOnPlan(f"You are already on {plan.name}.", plan=plan.code)
    sub = repo.current_subscription(db, org.id)
    if sub is not None and sub.status == "unpaid":
        raise PaymentRequired()
    if sub is None or plan.rank > env.catalog.plan(sub.plan_code).rank:
        subscriptions.refuse_while_waiting(db, org.id)  # a start or upgrade already waits for the bank
    return plan


def quote(db: Session, *, env: Env, actor: Actor, plan_code: str, at: datetime) -> CheckoutQuote:
    """What the checkout page shows: the first invoice exactly as the plan change will bill it."""
    plan = checkout_plan(db, env=env, actor=actor, plan_code=plan_code)
    price = plan.price or 0
    sub = repo.current_subscription(db, actor.org_id)
    if sub is None:
        period = period_at_index(at, 0)
        return CheckoutQuote(plan, "start", price, period.start, period.end, period.days, period.days,
                             plan.credits or 0)
    period = subscription_period(sub)
    current = env.catalog.plan(sub.plan_code)
    if plan.rank < current.rank:
        return CheckoutQuote(plan, "downgrade", 0, period.end, period.end, 0, period.days, 0)
    charge = prorate(quantity=1, unit_price=price, period=period, at=at)
    credit = prorate(quantity=1, unit_price=sub.plan_price, period=period, at=at)
    extra_credits = max((plan.credits or 0) - (current.credits or 0), 0)
    return CheckoutQuote(plan, "upgrade", charge.amount - credit.amount, at, period.end, charge.days_left,
                         charge.days_in_period, extra_credits)


def card_setup(db: Session, *, env: Env, actor: Actor) -> CardSetup:
    """A processor's card form for this organization: its customer (created on first use and kept, so
    the card the browser confirms is already the customer's) and a setup intent for the page."""
    require_owner(actor, "Payment method changes")
    org = locked_org(db, actor.org_id)
    if org.processor_customer_id is None:
        org.processor_customer_id = env.gateway.create_customer(reference=org.id, name=org.name).id
    return env.gateway.start_card_setup(customer_id=org.processor_customer_id)


@dataclass(frozen=True, slots=True)
class CheckoutDone:
    plan: Plan
    card: CardUpdate
    change: PlanChange


def complete_checkout(db: Session, *, env: Env, actor: Actor, plan_code: str, payment_method: str,
                      at: datetime) -> CheckoutDone:
    """Attach the card, then subscribe to the plan with it.

    Both or neither: a card refused at attach, or a first invoice declined, raises and the caller's
    transaction (the API's, the page's savepoint) undoes the card too — nothing changed. A charge the
    bank asks to verify (``payment_action_required``) keeps the card and the open invoice, and grants
    nothing until it is verified: then the plan starts (or is upgraded) as it would have now
    (``subscriptions.apply_plan_purchase``). ``payment_method`` is the processor's id (Stripe.js's ``pm_…``;
    the sandbox takes one of its test numbers there)."""
    plan = checkout_plan(db, env=env, actor=actor, plan_code=plan_code)
    card = payments.update_payment_method(db, env=env, actor=actor, payment_method=payment_method, at=at)
    change = subscriptions.change_plan(db, env=env, actor=actor, plan_code=plan.code, at=at)
    return CheckoutDone(plan, card, change)
