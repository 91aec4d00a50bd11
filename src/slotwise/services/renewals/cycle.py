"""One organization's renewals, payment retries, dunning's end and credit refills, in time order.

Each renewal, scheduled retry and refill runs at its own instant (not when the sweep or a request
happens to run it), so a sweep after downtime, a request that touches an organization before the
sweep got to it, or a simulated clock moved by years, bill and refill every period exactly as if on
time. A period is billed once: everything is re-checked under the organization lock, and the
invoice's unique ``billing_key`` refuses a second renewal invoice for the same period outright.

Dunning (SPEC §3): a failed renewal charge makes the subscription ``past_due`` and is retried 1, 3
and 5 days later; when the last retry fails too it becomes ``unpaid``: no more renewal invoices,
no growth in usage, no plan credits, until a new card restarts it (``restart_unpaid``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.capacity import Slots
from slotwise.catalog import Plan
from slotwise.errors import PaymentFailed
from slotwise.models import Invoice, OrgAddon, Organization, Subscription, new_id
from slotwise.periods import Period, period_at_index
from slotwise.services import audit, refills, trail
from slotwise.services.context import Env
from slotwise.services.invoices import LineDraft, collect, issue_invoice, line_description, waiting

RETRY_AFTER_DAYS = (1, 3, 5)  # after a failed renewal charge
RENEWING = ("active", "past_due")  # statuses whose periods keep renewing
PERIOD_KINDS = ("subscription", "renewal")  # invoices that bill a whole period


@dataclass
class SweepReport:
    renewed: list[str] = field(default_factory=list)  # invoice ids
    canceled: list[str] = field(default_factory=list)  # subscription ids
    payments_failed: list[str] = field(default_factory=list)  # invoice ids
    retried_paid: list[str] = field(default_factory=list)
    retried_failed: list[str] = field(default_factory=list)
    unpaid: list[str] = field(default_factory=list)  # subscription ids whose last retry failed
    refilled: list[str] = field(default_factory=list)  # organization ids, once per period's credits granted
    reconciled: list[str] = field(default_factory=list)  # invoice ids paid with a payment found at the processor
    refunded: list[str] = field(default_factory=list)  # processor payments slotwise had no invoice for, given back
    expired: list[str] = field(default_factory=list)  # purchases void, passes given up: verification ran out of time

    def merge(self, other: SweepReport) -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))


class SlotsRow(Protocol):
    """An add-on row as renewal lines read it (an ``OrgAddon``, or the sweep's plain copy)."""

    @property
    def addon_code(self) -> str: ...
    @property
    def active_slots(self) -> int: ...
    @property
    def unit_price(self) -> int: ...


def renewal_lines(env: Env, next_plan: Plan, addons: Sequence[SlotsRow], period: Period) -> list[LineDraft]:
    """A whole period billed in advance: the plan, then one line per add-on at its renewal quantity."""
    price = next_plan.price or 0
    lines = [LineDraft("plan", next_plan.code,
                       line_description(f"{next_plan.name} plan", None, period, period.days, period.start),
                       1, price, price, period, period.days, period.days)]
    for row in sorted(addons, key=lambda r: r.addon_code):
        if row.active_slots > 0:
            addon = env.catalog.addon(row.addon_code)
            lines.append(LineDraft(
                "addon", addon.code, line_description(addon.name, row.active_slots, period, period.days, period.start),
                row.active_slots, row.unit_price, row.active_slots * row.unit_price, period, period.days, period.days))
    return lines


def settle_addons_for_period(db: Session, env: Env, org_id: str, next_plan: Plan, at: datetime,
                             by: audit.By = audit.SYSTEM) -> list[OrgAddon]:
    """Active slots become the renewal slots (removals take effect), at today's catalog prices;
    add-ons the next plan does not offer, or with nothing kept, are gone. Returns what remains."""
    kept = []
    for row in repo.addons_of_org(db, org_id).values():
        gone = row.renewal_slots == 0 or next_plan.is_free
        removed(db, org_id=org_id, by=by, addon=row.addon_code, before=Slots(row.active_slots, row.renewal_slots),
                kept=0 if gone else row.renewal_slots, at=at)
        if gone:
            db.delete(row)
            continue
        row.active_slots = row.renewal_slots
        row.unit_price = env.catalog.addon(row.addon_code).price_per_slot  # new prices apply now
        row.updated_at = at
        kept.append(row)
    return kept


def removed(db: Session, *, org_id: str, by: audit.By, addon: str, before: Slots, kept: int, at: datetime) -> None:
    """``addon.updated`` for slots a renewal took away (a scheduled removal, or an add-on that ended);
    nothing for an add-on renewed as it was."""
    if kept != before.active:
        trail.addon_changed(db, org_id=org_id, by=by, kind="addon.removed", addon=addon, before=before,
                            after=Slots(kept, kept), at=at, effective_at=at)


def state(sub: Subscription) -> dict[str, object]:
    return trail.plan_state(sub.plan_code, sub.status, sub.scheduled_plan_code, sub.period_end)


def renewed(db: Session, *, org_id: str, sub_id: str, before: dict[str, object], after: dict[str, object],
            invoice: trail.InvoiceLike | None, at: datetime) -> None:
    """What a renewal tells: ended on Free (no invoice), or a new period whose invoice was paid or declined."""
    if invoice is None:
        kind = "subscription.ended"
    else:
        paid = invoice.status == "paid"
        trail.invoice_event(db, "invoice.paid" if paid else "invoice.payment_failed", org_id=org_id,
                            invoice=invoice, at=at)
        kind = "subscription.renewed" if paid else "subscription.renewal_failed"
    trail.subscription_changed(db, org_id=org_id, by=audit.SYSTEM, kind=kind, subscription=sub_id, before=before,
                               after=after, at=at, invoice=invoice,
                               amount=invoice is not None and invoice.status == "paid")


def _renew(db: Session, env: Env, org: Organization, sub: Subscription, report: SweepReport) -> None:
    """Renew ``sub`` once, at the instant its period ended; its plan credits expire then, and the next
    period's are granted if it is paid."""
    due = sub.period_end
    before = state(sub)
    next_plan = env.catalog.plan(sub.scheduled_plan_code or sub.plan_code)
    addons = settle_addons_for_period(db, env, org.id, next_plan, due)
    org.plan_code = next_plan.code
    if next_plan.is_free:
        sub.status, sub.canceled_at, sub.scheduled_plan_code = "canceled", due, None
        report.canceled.append(sub.id)
        renewed(db, org_id=org.id, sub_id=sub.id, before=before, after=state(sub), invoice=None, at=due)
        if refills.start_period(db, refills.free_start(env.catalog, org.id, due)):
            report.refilled.append(org.id)
        return
    period = period_at_index(sub.anchor_at, sub.period_index + 1)
    sub.period_index, sub.period_start, sub.period_end = period.index, period.start, period.end
    sub.plan_code, sub.plan_price, sub.scheduled_plan_code = next_plan.code, next_plan.price or 0, None
    db.flush()
    invoice = issue_invoice(db, org=org, kind="renewal", subscription_id=sub.id, period=period,
                            currency=sub.currency, lines=renewal_lines(env, next_plan, addons, period), at=due,
                            billing_key=f"period:{sub.id}:{period.index}")
    report.renewed.append(invoice.id)
    result = collect(db, env.gateway, org, invoice, due)
    paid = result.succeeded
    if not paid:
        sub.status = "past_due"
        invoice.next_retry_at = due + timedelta(days=RETRY_AFTER_DAYS[0])
        report.payments_failed.append(invoice.id)
    renewed(db, org_id=org.id, sub_id=sub.id, before=before, after=state(sub), invoice=invoice, at=due)
    if result.action is not None:  # the bank asks the Owner to verify: the dunning runs meanwhile
        waiting(db, org_id=org.id, invoice=invoice, at=due)
    start = refills.subscription_start(org.id, due, next_plan, period.start, period.end, paid=paid,
                                       invoice_id=invoice.id)
    if refills.start_period(db, start):
        report.refilled.append(org.id)


def _retry(db: Session, env: Env, org: Organization, invoice: Invoice, when: datetime, *, scheduled: bool,
           by: audit.By = audit.SYSTEM, report: SweepReport | None = None) -> bool:
    """One more attempt to collect an open invoice at ``when``; True if it was paid. Paying the current
    period's invoice grants the period's plan credits, which waited for it."""
    result = collect(db, env.gateway, org, invoice, when)
    paid = result.succeeded
    sub = db.get(Subscription, invoice.subscription_id) if invoice.subscription_id else None
    trail.invoice_settled(db, org_id=org.id, by=by, invoice=invoice, paid=paid, at=when)
    if result.action is not None:
        waiting(db, org_id=org.id, invoice=invoice, at=when)
    if paid:
        if paid_late(db, env, invoice, sub, when, by=by) and report is not None:
            report.refilled.append(org.id)
    elif scheduled:
        later = [invoice.created_at + timedelta(days=d) for d in RETRY_AFTER_DAYS]
        invoice.next_retry_at = next((t for t in later if t > when), None)
        if invoice.next_retry_at is None and sub is not None and sub.status == "past_due":
            before = state(sub)
            sub.status = "unpaid"  # dunning is over: nothing more is billed or granted until a new card
            trail.subscription_changed(db, org_id=org.id, by=by, kind="subscription.unpaid", subscription=sub.id,
                                       before=before, after=state(sub), at=when, invoice=invoice, amount=False)
    db.flush()
    return paid


def paid_late(db: Session, env: Env, invoice: Invoice, sub: Subscription | None, when: datetime,
              *, by: audit.By, reactivate: tuple[str, ...] = ("past_due",)) -> bool:
    """What paying an open invoice after its first attempt does (a retry, a new card, the bank's
    verification): no more retries; a subscription in one of the ``reactivate`` statuses owing nothing
    else is active again; paying the current period's invoice grants the period's plan credits, which
    waited for it. Whether credits were granted."""
    invoice.next_retry_at = None
    db.flush()
    if sub is not None and sub.status in reactivate and not repo.open_invoices_of_subscription(db, sub.id):
        before = state(sub)
        sub.status = "active"
        trail.subscription_changed(db, org_id=sub.org_id, by=by, kind="subscription.reactivated",
                                   subscription=sub.id, before=before, after=state(sub), at=when, invoice=invoice,
                                   amount=False)
    return bool(sub is not None and sub.status != "canceled" and invoice.kind in PERIOD_KINDS
                and invoice.period_start == sub.period_start
                and refills.grant_paid_period(db, sub=sub, plan=env.catalog.plan(sub.plan_code), at=when,
                                              invoice_id=invoice.id))


def catch_up(db: Session, *, env: Env, org_id: str, at: datetime) -> SweepReport:
    """Run, in time order, every renewal, scheduled retry and credit refill of one organization due by
    ``at`` (at the same instant: a retry, then a renewal — which refills — then a refill of its own).

    Takes the organization lock first, so it is safe beside requests, other sweeps and a crash
    before commit (nothing committed is redone: what is done is no longer due).
    """
    report = SweepReport()
    org = repo.locked_organization(db, org_id)
    if org is None:
        return report
    for _ in range(100_000):  # every step moves an event past ``at``; this only guards a bug
        sub = repo.current_subscription(db, org.id)
        renewal = sub.period_end if sub is not None and sub.status in RENEWING else None
        # Retries are scheduled only by a failed renewal, which leaves the subscription past due.
        retry = repo.first_due_retry_of_org(db, org.id, at) if sub is None or sub.status == "past_due" else None
        retry_at = retry.next_retry_at if retry is not None else None
        refill_at = refills.refill_due_at(db, org.id)
        if renewal is not None and renewal > at:
            renewal = None
        if refill_at is not None and (refill_at > at or (renewal is not None and renewal <= refill_at)):
            refill_at = None  # not due, or the renewal refills
        if retry is not None and retry_at is not None and all(t is None or retry_at <= t for t in (renewal, refill_at)):
            paid = _retry(db, env, org, retry, retry_at, scheduled=True, report=report)
            (report.retried_paid if paid else report.retried_failed).append(retry.id)
            if sub is not None and sub.status == "unpaid":
                report.unpaid.append(sub.id)
        elif sub is not None and renewal is not None and (refill_at is None or renewal <= refill_at):
            _renew(db, env, org, sub, report)
        elif refill_at is not None:
            granted = refills.run_due_refill(db, catalog=env.catalog, org_id=org.id, sub=sub, at=at)
            report.refilled.extend([org.id] * granted)
        else:
            break
    db.flush()
    return report


def retry_invoice(db: Session, *, env: Env, org_id: str, invoice_id: str, by: audit.By,
                  at: datetime) -> bool | None:
    """Collect an open invoice now (a new card): True if paid, False if declined, None if it was
    not open any more. Scheduled retries are left as they were if it is declined."""
    org = repo.locked_organization(db, org_id)
    invoice = db.get(Invoice, invoice_id, populate_existing=True)
    if org is None or invoice is None or invoice.status != "open":
        return None
    return _retry(db, env, org, invoice, at, scheduled=False, by=by)


def restart_unpaid(
    db: Session, *, env: Env, org: Organization, sub: Subscription, by: audit.By, at: datetime
) -> tuple[Sequence[str], Invoice | None]:
    """End an ``unpaid`` subscription and start its successor now, billed in full.

    The stale open invoices are voided (kept, never collected); a scheduled plan change and
    scheduled slot removals apply as a renewal would have applied them; the new subscription is
    anchored on ``at`` and its period's plan credits are granted once it is paid. Returns the voided
    invoice ids and the new period's paid invoice (None when the next plan is Free, whose credits
    start now on the organization's monthly anchor). A declined card raises ``payment_failed``; the
    caller's rollback then leaves everything as it was. The caller holds the organization lock.
    """
    voided = repo.void_open_invoices_of_org(db, org.id)
    next_plan = env.catalog.plan(sub.scheduled_plan_code or sub.plan_code)
    addons = settle_addons_for_period(db, env, org.id, next_plan, at, by=by)
    before = state(sub)
    sub.status, sub.canceled_at, sub.scheduled_plan_code = "canceled", at, None
    org.plan_code = next_plan.code
    if next_plan.is_free:
        refills.start_period(db, refills.free_start(env.catalog, org.id, at))
        trail.subscription_changed(db, org_id=org.id, by=by, kind="subscription.ended", subscription=sub.id,
                                   before=before, after=state(sub), at=at)
        return voided, None
    period = period_at_index(at, 0)
    new = Subscription(id=new_id("sub"), org_id=org.id, plan_code=next_plan.code, plan_price=next_plan.price or 0,
                       currency=next_plan.currency, status="active", anchor_at=at, period_index=0,
                       period_start=period.start, period_end=period.end, scheduled_plan_code=None, created_at=at)
    db.add(new)
    db.flush()
    invoice = issue_invoice(db, org=org, kind="renewal", subscription_id=new.id, period=period,
                            currency=new.currency, lines=renewal_lines(env, next_plan, addons, period), at=at,
                            billing_key=f"period:{new.id}:0")
    result = collect(db, env.gateway, org, invoice, at)
    if not result.succeeded:
        declined = result.failure_message or "Your card was declined."
        raise PaymentFailed(f"{declined} Your subscription was not restarted.", decline_code=result.failure_code)
    refills.start_period(db, refills.subscription_start(org.id, at, next_plan, period.start, period.end, paid=True,
                                                        invoice_id=invoice.id))
    trail.invoice_event(db, "invoice.paid", org_id=org.id, invoice=invoice, at=at, voided=list(voided))
    trail.subscription_changed(db, org_id=org.id, by=by, kind="subscription.restarted", subscription=new.id,
                               before=before, after=state(new), at=at, invoice=invoice)
    return voided, invoice
