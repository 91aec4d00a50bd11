"""Starting a paid plan, upgrading at once with pro-ration, downgrading at renewal, canceling at the
period end and resuming."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.capacity import count_noun, plan_change_refusal
from slotwise.catalog import RESOURCES, Plan
from slotwise.errors import (
    BelowUsage,
    CancellationNotScheduled,
    InvalidRequest,
    PaymentFailed,
    PaymentRequired,
    PlanUnavailable,
    SubscriptionRequired,
)
from slotwise.models import Invoice, Organization, Subscription, new_id
from slotwise.periods import period_at_index
from slotwise.proration import prorate
from slotwise.services import refills
from slotwise.services.context import Actor, Env, require_owner
from slotwise.services.invoices import LineDraft, collect, issue_invoice, line_description
from slotwise.services.snapshot import load_snapshot, locked_org, subscription_period


@dataclass(frozen=True, slots=True)
class PlanChange:
    kind: str  # started | upgraded | downgrade_scheduled | downgrade_canceled
    plan_code: str
    effective_at: datetime
    invoice: Invoice | None = None

    @property
    def message(self) -> str:
        return {
            "started": "Your subscription has started.",
            "upgraded": "Your plan was upgraded.",
            "downgrade_scheduled": "Your plan will change at your next billing date.",
            "downgrade_canceled": "Your scheduled plan change was canceled.",
        }[self.kind]


def _charge_or_refuse(db: Session, env: Env, org: Organization, invoice: Invoice, at: datetime) -> None:
    result = collect(db, env.gateway, org, invoice, at)
    if not result.succeeded:
        raise PaymentFailed(result.failure_message, decline_code=result.failure_code)


def start_subscription(
    db: Session, *, env: Env, org: Organization, plan_code: str, at: datetime
) -> PlanChange:
    """Subscribe a free organization: the first period is anchored now and billed in full at once, and
    its plan credits replace the free ones."""
    plan = env.catalog.plan(plan_code)
    if plan.price is None:
        # Custom terms have no price or limits to bill or enforce: an operator sells them by adding
        # a priced plan of their own to the catalog.
        raise PlanUnavailable(f"{plan.name} has custom terms. Contact sales to move to it.")
    price = plan.price or 0
    sub = Subscription(
        id=new_id("sub"),
        org_id=org.id,
        plan_code=plan.code,
        plan_price=price,
        currency=plan.currency,
        status="active",
        anchor_at=at,
        period_index=0,
        period_start=at,
        period_end=period_at_index(at, 0).end,
        scheduled_plan_code=None,
        created_at=at,
    )
    db.add(sub)
    db.flush()
    period = period_at_index(at, 0)
    line = LineDraft("plan", plan.code, line_description(f"{plan.name} plan", None, period, period.days, at),
                     1, price, price, period, period.days, period.days)
    invoice = issue_invoice(db, org=org, kind="subscription", subscription_id=sub.id, period=period,
                            currency=plan.currency, lines=[line], at=at, billing_key=f"period:{sub.id}:0")
    _charge_or_refuse(db, env, org, invoice, at)
    org.plan_code = plan.code
    # The free month's credits expire; the plan's allowance for the paid period (SPEC §11).
    refills.start_period(db, refills.subscription_start(org.id, at, plan, period.start, period.end, paid=True,
                                                        invoice_id=invoice.id))
    return PlanChange("started", plan.code, at, invoice)


def change_plan(db: Session, *, env: Env, actor: Actor, plan_code: str, at: datetime) -> PlanChange:
    """Move to ``plan_code``: an upgrade now (pro-rated, the unused old plan credited on the same
    invoice; the difference between the credit allowances granted at once), a downgrade at the next
    billing date if usage and add-ons fit the new plan (its renewal refills the new allowance)."""
    require_owner(actor, "Plan changes")
    org = locked_org(db, actor.org_id)
    new_plan = env.catalog.plans.get(plan_code)
    if new_plan is None:
        raise InvalidRequest(f"Unknown plan {plan_code!r}.", field="plan")
    if not new_plan.self_serve:
        raise PlanUnavailable(f"{new_plan.name} has custom terms. Contact sales to move to it.")
    current = env.catalog.plan(org.plan_code)
    sub = repo.current_subscription(db, org.id)
    if sub is not None and sub.status == "unpaid":
        raise PaymentRequired()
    if sub is None:
        if new_plan.is_free:
            raise InvalidRequest("You are already on the Free plan.", field="plan")
        return start_subscription(db, env=env, org=org, plan_code=plan_code, at=at)
    if new_plan.code == current.code:
        if sub.scheduled_plan_code is None:
            raise InvalidRequest(f"You are already on {current.name}.", field="plan")
        sub.scheduled_plan_code = None
        return PlanChange("downgrade_canceled", current.code, at)
    if new_plan.rank > current.rank:
        return _upgrade(db, env=env, org=org, sub=sub, old=current, new=new_plan, at=at)
    refusal = plan_change_refusal(load_snapshot(db, env.catalog, org), new_plan)
    if refusal is not None:
        raise refusal
    sub.scheduled_plan_code = new_plan.code
    return PlanChange("downgrade_scheduled", new_plan.code, sub.period_end)


def _upgrade(
    db: Session, *, env: Env, org: Organization, sub: Subscription, old: Plan, new: Plan, at: datetime
) -> PlanChange:
    period = subscription_period(sub)
    new_price = new.price or 0
    charge = prorate(quantity=1, unit_price=new_price, period=period, at=at)
    credit = prorate(quantity=1, unit_price=sub.plan_price, period=period, at=at)
    rest = replace(period, start=at)  # what the pro-rated lines cover: from now to the period's end
    lines = [
        LineDraft("plan", new.code, line_description(f"{new.name} plan", None, period, charge.days_left, at),
                  1, new_price, charge.amount, rest, charge.days_left, charge.days_in_period),
        LineDraft("credit", old.code,
                  line_description(f"Unused time on {old.name} plan", None, period, credit.days_left, at),
                  -1, sub.plan_price, -credit.amount, rest, credit.days_left, credit.days_in_period),
    ]
    invoice = issue_invoice(db, org=org, kind="upgrade", subscription_id=sub.id, period=period,
                            currency=new.currency, lines=lines, at=at)
    _charge_or_refuse(db, env, org, invoice, at)
    sub.plan_code, sub.plan_price, sub.scheduled_plan_code = new.code, new_price, None
    org.plan_code = new.code
    refills.upgrade(db, org_id=org.id, old=old, new=new, at=at, invoice_id=invoice.id)  # the difference, at once
    return PlanChange("upgraded", new.code, at, invoice)


FREE = "free"  # the catalog's one free plan (catalog.parse_catalog insists on it)


@dataclass(frozen=True, slots=True)
class CancelChange:
    kind: str  # cancel_scheduled | already_scheduled | resumed
    subscription: Subscription

    @property
    def cancels_at(self) -> datetime | None:
        return self.subscription.period_end if self.kind != "resumed" else None

    @property
    def message(self) -> str:
        return {
            "cancel_scheduled": "Your subscription will be canceled at the end of the billing period.",
            "already_scheduled": "Your subscription is already set to cancel at the end of the billing period.",
            "resumed": "Your subscription was resumed. It renews as usual.",
        }[self.kind]


def is_canceling(sub: Subscription | None) -> bool:
    """Set to end at its period's end: its next plan is Free, whose renewal ends a subscription."""
    return sub is not None and sub.status in RENEWING_STATUSES and sub.scheduled_plan_code == FREE


RENEWING_STATUSES = ("active", "past_due")


def _paid_subscription(db: Session, org_id: str) -> Subscription:
    sub = repo.current_subscription(db, org_id)
    if sub is None:
        raise SubscriptionRequired("You are on the Free plan: there is no paid subscription to cancel or resume.")
    if sub.status == "unpaid":
        raise PaymentRequired()
    return sub


def cancel_at_period_end(db: Session, *, env: Env, actor: Actor, at: datetime) -> CancelChange:
    """Set the subscription to end when its paid period ends (the Owner's choice; idempotent).

    It stays as it is until then; at the period end the renewal applies it as a scheduled downgrade
    to Free (``renewals.cycle._renew`` and the sweep's ``_end_on_free`` alike): the subscription
    becomes ``canceled``, nothing is billed, add-on slots end with it (Free offers none), unused plan
    credits expire and Free's monthly credits start, top-up credits stay; nothing is deleted. It
    replaces a scheduled plan change. Refused with ``below_usage`` while more agents or members are in
    use than Free allows, which keeps usage within every period's capacity; held add-ons are no reason
    to refuse, since they simply end. Until then usage may grow only within Free's limits."""
    require_owner(actor, "Subscription changes")
    org = locked_org(db, actor.org_id)
    sub = _paid_subscription(db, org.id)
    if is_canceling(sub):
        return CancelChange("already_scheduled", sub)
    free = env.catalog.plan(FREE)
    usage = load_snapshot(db, env.catalog, org).usage
    for resource in RESOURCES:
        limit, used = free.included(resource), usage[resource]
        if used > limit:
            extra = count_noun(used - limit, resource)
            raise BelowUsage(
                f"Free allows {count_noun(limit, resource)} and you have {used}. Archive or remove {extra} "
                "first, then cancel.", must_free=used - limit, resource=resource)
    sub.scheduled_plan_code = FREE
    return CancelChange("cancel_scheduled", sub)


def resume(db: Session, *, env: Env, actor: Actor, at: datetime) -> CancelChange:
    """Undo a cancellation before the period ends: the subscription renews on its current plan, as if
    it had never been canceled. Without one, ``cancellation_not_scheduled`` (a scheduled plan change
    is kept or undone on Plans)."""
    require_owner(actor, "Subscription changes")
    org = locked_org(db, actor.org_id)
    sub = _paid_subscription(db, org.id)
    if not is_canceling(sub):
        raise CancellationNotScheduled()
    sub.scheduled_plan_code = None
    return CancelChange("resumed", sub)
