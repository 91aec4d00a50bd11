"""Starting a paid plan, upgrading at once with pro-ration, downgrading at renewal, canceling at the
period end and resuming.

A start's first invoice or an upgrade's pro-rated one that the customer's bank asks to verify (SCA)
changes nothing yet: the invoice stays open with what paying it grants (``Invoice.purchase``: a
``plan_start`` or an ``upgrade``, at the prices quoted then), the request answers
``payment_action_required`` and keeps it, and ``apply_plan_purchase`` applies it once the bank has
paid (``services.verification``). A start writes no subscription until then, so renewals and the
sweep have nothing to bill; while one waits, another start or upgrade is refused
(``verification_pending``), so that one change is never bought twice."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.capacity import count_noun, plan_change_refusal
from slotwise.catalog import RESOURCES, Plan
from slotwise.errors import (
    BelowUsage,
    CancellationNotScheduled,
    InvalidRequest,
    PaymentActionRequired,
    PaymentFailed,
    PaymentRequired,
    PlanUnavailable,
    SlotwiseError,
    SubscriptionRequired,
)
from slotwise.gateway import ChargeOutcome
from slotwise.models import Invoice, Organization, Subscription, new_id
from slotwise.periods import period_at_index
from slotwise.proration import prorate
from slotwise.services import audit, refills, trail
from slotwise.services.context import Actor, Env, require_owner
from slotwise.services.invoices import LineDraft, collect, issue_invoice, line_description, verify_url, waiting
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


PLAN_START, UPGRADE = "plan_start", "upgrade"  # ``Invoice.purchase`` kinds of a plan change
PLAN_PURCHASES = (PLAN_START, UPGRADE)


class PlanChangeWaiting(SlotwiseError):
    """A plan start or upgrade already waits for the bank's verification: a second change now could
    be paid twice for one plan, so it waits until the first is paid, refused or expired."""

    code, status = "verification_pending", 409
    default_message = "A payment for a plan change is waiting for your bank's verification."


def refuse_while_waiting(db: Session, org_id: str) -> None:
    waiting = repo.waiting_plan_purchase(db, org_id)
    if waiting is not None:
        raise PlanChangeWaiting(
            f"The payment of invoice #{waiting.number} for a plan change is waiting for your bank's "
            "verification. Complete it (or let your bank decline it) before changing plans again; "
            "if it is not completed within a week, it is canceled.",
            invoice=waiting.id, verify_url=verify_url(waiting.id))


def _charge_or_refuse(db: Session, env: Env, org: Organization, invoice: Invoice, at: datetime,
                      purchase: dict[str, Any]) -> None:
    """Collect ``invoice`` now. A decline raises ``payment_failed`` (the caller's rollback leaves
    nothing). A payment the bank asks the Owner to verify leaves the invoice open with ``purchase``
    (what paying it grants, by ``apply_plan_purchase``) and raises ``payment_action_required``,
    which keeps it (and nothing else is written before): the caller grants nothing. Never retried by
    the dunning, as no retry is scheduled and a purchase is not owed."""
    result = collect(db, env.gateway, org, invoice, at)
    if result.succeeded:
        return
    if result.outcome is ChargeOutcome.ACTION_REQUIRED and invoice.action_intent is not None:
        invoice.purchase = json.dumps(purchase, sort_keys=True)
        db.flush()
        waiting(db, org_id=org.id, invoice=invoice, at=at)
        raise PaymentActionRequired(
            f"Payment needs verification: your bank asks you to confirm the payment of invoice "
            f"#{invoice.number}. Your plan changes once it is confirmed.",
            invoice=invoice.id, verify_url=verify_url(invoice.id))
    raise PaymentFailed(result.failure_message, decline_code=result.failure_code)


def start_subscription(
    db: Session, *, env: Env, org: Organization, plan_code: str, by: audit.By, at: datetime
) -> PlanChange:
    """Subscribe a free organization: the first period is anchored now and billed in full at once, and
    its plan credits replace the free ones. The subscription is written once the invoice is paid, so
    a payment waiting for the bank leaves none behind (``_charge_or_refuse``)."""
    plan = env.catalog.plan(plan_code)
    if plan.price is None:
        # Custom terms have no price or limits to bill or enforce: an operator sells them by adding
        # a priced plan of their own to the catalog.
        raise PlanUnavailable(f"{plan.name} has custom terms. Contact sales to move to it.")
    price = plan.price or 0
    period = period_at_index(at, 0)
    line = LineDraft("plan", plan.code, line_description(f"{plan.name} plan", None, period, period.days, at),
                     1, price, price, period, period.days, period.days)
    invoice = issue_invoice(db, org=org, kind="subscription", subscription_id=None, period=period,
                            currency=plan.currency, lines=[line], at=at)
    _charge_or_refuse(db, env, org, invoice, at, {"kind": PLAN_START, "plan": plan.code, "price": price,
                                                  "currency": plan.currency, "from_plan": org.plan_code})
    _begin(db, org=org, plan=plan, price=price, invoice=invoice, by=by, at=at)
    return PlanChange("started", plan.code, at, invoice)


def state_of(sub: Subscription | None, plan_code: str) -> dict[str, Any]:
    """A subscription's state as its events and entries tell it (none: the plan alone, e.g. Free)."""
    if sub is None:
        return trail.plan_state(plan_code, None, None, None)
    return trail.plan_state(sub.plan_code, sub.status, sub.scheduled_plan_code, sub.period_end)


def changed(db: Session, *, sub: Subscription, by: audit.By, kind: str, before: dict[str, Any], at: datetime,
            invoice: Invoice | None = None, amount: bool = True) -> None:
    """``subscription.updated`` and the entry of a change to ``sub`` (as it is now)."""
    trail.subscription_changed(db, org_id=sub.org_id, by=by, kind=kind, subscription=sub.id, before=before,
                               after=state_of(sub, sub.plan_code), at=at, invoice=invoice, amount=amount)


def _begin(db: Session, *, org: Organization, plan: Plan, price: int, invoice: Invoice, by: audit.By,
           at: datetime) -> None:
    """The subscription whose first period ``invoice`` billed and paid, anchored where that period
    starts; the free credits expire and the plan's allowance for that period is granted (SPEC §11)."""
    before = state_of(None, org.plan_code)
    sub = Subscription(
        id=new_id("sub"), org_id=org.id, plan_code=plan.code, plan_price=price, currency=invoice.currency,
        status="active", anchor_at=invoice.period_start, period_index=0, period_start=invoice.period_start,
        period_end=invoice.period_end, scheduled_plan_code=None, created_at=at,
    )
    db.add(sub)
    db.flush()
    invoice.subscription_id, invoice.billing_key = sub.id, repo.renewal_billing_key(sub.id, 0)
    org.plan_code = plan.code
    refills.start_period(db, refills.subscription_start(org.id, at, plan, invoice.period_start, invoice.period_end,
                                                        paid=True, invoice_id=invoice.id))
    trail.invoice_event(db, "invoice.paid", org_id=org.id, invoice=invoice, at=at)
    changed(db, sub=sub, by=by, kind="plan.started", before=before, at=at, invoice=invoice)


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
    by = audit.by_user(db, actor)
    if sub is None:
        if new_plan.is_free:
            raise InvalidRequest("You are already on the Free plan.", field="plan")
        refuse_while_waiting(db, org.id)
        return start_subscription(db, env=env, org=org, plan_code=plan_code, by=by, at=at)
    before = state_of(sub, sub.plan_code)
    if new_plan.code == current.code:
        if sub.scheduled_plan_code is None:
            raise InvalidRequest(f"You are already on {current.name}.", field="plan")
        sub.scheduled_plan_code = None
        changed(db, sub=sub, by=by, kind="plan.downgrade_canceled", before=before, at=at)
        return PlanChange("downgrade_canceled", current.code, at)
    if new_plan.rank > current.rank:
        refuse_while_waiting(db, org.id)
        return _upgrade(db, env=env, org=org, sub=sub, old=current, new=new_plan, by=by, at=at)
    refusal = plan_change_refusal(load_snapshot(db, env.catalog, org), new_plan)
    if refusal is not None:
        raise refusal
    if sub.scheduled_plan_code != new_plan.code:  # the same downgrade again changes nothing
        sub.scheduled_plan_code = new_plan.code
        changed(db, sub=sub, by=by, kind="plan.downgrade_scheduled", before=before, at=at)
    return PlanChange("downgrade_scheduled", new_plan.code, sub.period_end)


def _upgrade(
    db: Session, *, env: Env, org: Organization, sub: Subscription, old: Plan, new: Plan, by: audit.By, at: datetime
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
    _charge_or_refuse(db, env, org, invoice, at, {
        "kind": UPGRADE, "subscription": sub.id, "from_plan": old.code, "from_price": sub.plan_price,
        "plan": new.code, "price": new_price, "scheduled": sub.scheduled_plan_code})
    _promote(db, org=org, sub=sub, old=old, new=new, price=new_price, invoice=invoice, by=by, at=at,
             clear_scheduled=True)
    return PlanChange("upgraded", new.code, at, invoice)


def _promote(db: Session, *, org: Organization, sub: Subscription, old: Plan, new: Plan, price: int,
             invoice: Invoice, by: audit.By, at: datetime, clear_scheduled: bool) -> None:
    before = state_of(sub, sub.plan_code)
    sub.plan_code, sub.plan_price = new.code, price
    org.plan_code = new.code
    if clear_scheduled:
        sub.scheduled_plan_code = None
    refills.upgrade(db, org_id=org.id, old=old, new=new, at=at, invoice_id=invoice.id)  # the difference, at once
    trail.invoice_event(db, "invoice.paid", org_id=org.id, invoice=invoice, at=at)
    changed(db, sub=sub, by=by, kind="plan.upgraded", before=before, at=at, invoice=invoice)


def apply_plan_purchase(db: Session, *, env: Env, invoice: Invoice, purchase: dict[str, Any], by: audit.By,
                        at: datetime) -> bool:
    """Apply the plan start or upgrade that ``invoice`` (just paid, after the bank's verification)
    bought, exactly as its immediate success would have when it was bought: at the price quoted then,
    for the period it billed (a start is anchored at that period's start); the credits are granted
    now. The caller holds the organization lock. True if applied.

    Stale state: it is applied only if the organization is still as it was bought from — a start:
    still on the plan it left (``from_plan``) with no subscription; an upgrade: the same
    subscription, renewing, on the same plan at the same price, in the same period. Otherwise (it
    ended, renewed, or changed plan meanwhile) nothing is applied and False is returned: the bank's
    payment cannot buy what no longer exists, so the caller refunds it (``verification``) and never
    voids a paid invoice. A change scheduled after an upgrade was bought (a downgrade, a
    cancellation) is the Owner's newer choice and is kept; one scheduled before is cleared, as the
    upgrade then cleared it."""
    org = repo.locked_organization(db, invoice.org_id)
    sub = repo.current_subscription(db, invoice.org_id)
    if org is None:
        return False
    new = env.catalog.plan(str(purchase["plan"]))
    price = int(purchase["price"])
    if purchase["kind"] == PLAN_START:
        if sub is not None or org.plan_code != purchase["from_plan"]:
            return False
        _begin(db, org=org, plan=new, price=price, invoice=invoice, by=by, at=at)
        return True
    if (sub is None or sub.id != purchase["subscription"] or sub.status not in RENEWING_STATUSES
            or (sub.plan_code, sub.plan_price) != (purchase["from_plan"], purchase["from_price"])
            or sub.period_start != invoice.period_start):
        return False
    old = env.catalog.plan(str(purchase["from_plan"]))
    _promote(db, org=org, sub=sub, old=old, new=new, price=price, invoice=invoice, by=by, at=at,
             clear_scheduled=sub.scheduled_plan_code == purchase.get("scheduled"))
    return True


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
    before = state_of(sub, sub.plan_code)
    sub.scheduled_plan_code = FREE
    changed(db, sub=sub, by=audit.by_user(db, actor), kind="subscription.cancel_scheduled", before=before, at=at)
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
    before = state_of(sub, sub.plan_code)
    sub.scheduled_plan_code = None
    changed(db, sub=sub, by=audit.by_user(db, actor), kind="subscription.resumed", before=before, at=at)
    return CancelChange("resumed", sub)
