"""Domain objects to response bodies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from slotwise.capacity import AddonQuote
from slotwise.catalog import Plan
from slotwise.models import Agent, Invitation, Invoice, User
from slotwise.services.addons import AddonView, SlotChange
from slotwise.services.agents import AgentChange, NewAgent
from slotwise.services.invoices import InvoiceRecord, verify_url
from slotwise.services.organizations import OrganizationSummary
from slotwise.services.renewals import SweepReport

from . import schemas as s

Row = TypeVar("Row")
Out = TypeVar("Out")


def plan(p: Plan) -> s.PlanOut:
    return s.PlanOut(code=p.code, name=p.name, price=p.price, currency=p.currency, agents=p.agents,
                     members=p.members, teams=p.teams, credits=p.credits, self_serve=p.self_serve)


def invoice(inv: Invoice | InvoiceRecord) -> s.InvoiceOut:
    return s.InvoiceOut(
        id=inv.id, number=inv.number, kind=inv.kind, status=inv.status,
        currency=inv.currency, total=inv.total, period_start=inv.period_start, period_end=inv.period_end,
        created_at=inv.created_at, paid_at=inv.paid_at,
        verify_url=verify_url(inv.id) if inv.status == "open" and getattr(inv, "action_intent", None) else None,
        lines=[
            s.InvoiceLineOut(
                description=line.description, kind=line.kind, code=line.code, quantity=line.quantity,
                unit_price=line.unit_price, amount=line.amount, currency=inv.currency,
                period_start=line.period_start, period_end=line.period_end, days_left=line.days_left,
                days_in_period=line.days_in_period, proration=f"{line.days_left}/{line.days_in_period}",
            )
            for line in inv.lines
        ],
    )


def organization(summary: OrganizationSummary, plan_obj: Plan, now: datetime) -> s.OrganizationOut:
    org, sub = summary.organization, summary.subscription
    return s.OrganizationOut(
        id=org.id,
        name=org.name,
        plan=plan(plan_obj),
        subscription=None if sub is None else s.SubscriptionOut(
            id=sub.id, plan=sub.plan_code, status=sub.status,
            plan_price=sub.plan_price, currency=sub.currency,
            current_period=s.PeriodOut(start=sub.period_start, end=sub.period_end),
            next_billing_date=sub.period_end,
            days_remaining=max((sub.period_end.date() - now.date()).days, 0),
            scheduled_plan=sub.scheduled_plan_code,
            cancel_at_period_end=sub.scheduled_plan_code == "free" and sub.status in ("active", "past_due"),
        ),
        capacity={
            r: s.CapacityOut(addon=c.addon, included=c.included, active_slots=c.active_slots,
                             renewal_slots=c.renewal_slots, total=c.total,
                             renewal_total=summary.renewal_capacity[r], used=c.used)
            for r, c in summary.capacity.items()
        },
        monthly_total=summary.monthly_total,
        currency=summary.currency,
        payment_method=s.PaymentMethodOut(brand=org.card_brand, last4=org.card_last4)
        if org.card_brand and org.card_last4 else None,
        created_at=org.created_at,
    )


def addon(view: AddonView) -> s.AddonOut:
    return s.AddonOut(
        code=view.addon.code, name=view.addon.name, resource=view.addon.resource,
        price_per_slot=view.unit_price, currency=view.addon.currency, available=view.available,
        reason=view.reason, active_slots=view.active_slots, renewal_slots=view.renewal_slots,
        scheduled_removal=view.active_slots - view.renewal_slots, monthly_cost=view.monthly_cost,
        effective_at=view.effective_at,
    )


def preview(q: AddonQuote) -> s.PreviewOut:
    refusal = q.refusal
    must_free = refusal.details.get("must_free") if refusal is not None else None
    return s.PreviewOut(
        addon=q.addon.code, action=q.action, quantity=q.quantity, price_per_slot=q.price_per_slot,
        currency=q.addon.currency, charge_now=q.charge_now, days_left=q.days_left,
        days_in_period=q.days_in_period,
        proration=f"{q.days_left}/{q.days_in_period}" if q.days_left is not None else None,
        current_slots=q.current_slots, new_slots=q.new_slots, current_capacity=q.current_capacity,
        new_capacity=q.new_capacity, current_monthly_total=q.current_monthly_total,
        new_monthly_total=q.new_monthly_total, effective_at=q.effective_at, allowed=q.allowed,
        reason=refusal.code if refusal else None, message=refusal.message if refusal else None,
        must_free=must_free if isinstance(must_free, int) else None,
    )


def slot_change(change: SlotChange) -> s.SlotChangeOut:
    return s.SlotChangeOut(
        message=change.message, addon=addon(change.view),
        invoice=invoice(change.invoice) if change.invoice else None,
        effective_at=change.quote.effective_at,
    )


def agent(a: Agent | NewAgent, change: AgentChange | None = None) -> s.AgentOut:
    return s.AgentOut(
        id=a.id, name=a.name, status="archived" if a.archived_at else "active", archived_at=a.archived_at,
        created_at=a.created_at, notice=change.notice if change else None,
        restored_slots=change.restored_slots if change else 0,
    )


def user(u: User) -> s.UserOut:
    return s.UserOut(id=u.id, email=u.email, name=u.name, role=u.role, created_at=u.created_at)


def invitation(i: Invitation) -> s.InvitationOut:
    return s.InvitationOut(id=i.id, email=i.email, role=i.role, created_at=i.created_at)


def sweep(at: datetime, report: SweepReport) -> s.SweepOut:
    return s.SweepOut(at=at, renewed=report.renewed, canceled=report.canceled,
                      payments_failed=report.payments_failed, retried_paid=report.retried_paid,
                      retried_failed=report.retried_failed, unpaid=report.unpaid, reconciled=report.reconciled,
                      refunded=report.refunded, expired=report.expired)


def page(rows: Sequence[Row], limit: int, render: Callable[[Row], Out]) -> s.Page[Out]:
    """The first ``limit`` rows as a page; a row beyond them (the repositories fetch one more) only
    tells that more follow."""
    return s.Page(data=[render(row) for row in rows[:limit]], has_more=len(rows) > limit)
