"""Renewals, payment retries and the billing sweep.

Each renewal runs at the instant its period ended (not when the sweep happens to run), so a sweep
after downtime, or a simulated clock moved by months, bills every period exactly as if on time.
A period is billed once: the sweep re-checks under the organization lock, and the invoice's
unique ``billing_key`` refuses a second renewal invoice for the same period outright.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from slotwise import repositories as repo
from slotwise.clock import Clock, SimulatedClock
from slotwise.errors import ClockNotSimulated
from slotwise.models import Invoice, Subscription
from slotwise.periods import period_at_index
from slotwise.services.context import Env
from slotwise.services.invoices import LineDraft, collect, issue_invoice, line_description

RETRY_AFTER_DAYS = (1, 3, 5)  # after a failed renewal charge
BATCH_SIZE = 100
IDEMPOTENCY_KEY_TTL = timedelta(hours=48)


@dataclass
class SweepReport:
    renewed: list[str] = field(default_factory=list)  # invoice ids
    canceled: list[str] = field(default_factory=list)  # subscription ids
    payments_failed: list[str] = field(default_factory=list)  # invoice ids
    retried_paid: list[str] = field(default_factory=list)
    retried_failed: list[str] = field(default_factory=list)

    def merge(self, other: SweepReport) -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))


def renew_subscription(db: Session, *, env: Env, org_id: str, subscription_id: str, at: datetime) -> SweepReport:
    """Renew one subscription for every period that ended by ``at``, each at its own end instant."""
    report = SweepReport()
    org = repo.locked_organization(db, org_id)
    sub = db.get(Subscription, subscription_id, populate_existing=True)
    while org is not None and sub is not None and sub.status != "canceled" and sub.period_end <= at:
        due = sub.period_end
        next_plan = env.catalog.plan(sub.scheduled_plan_code or sub.plan_code)
        addons = repo.addons_of_org(db, org.id)
        for row in addons.values():
            if row.renewal_slots == 0 or next_plan.is_free:
                db.delete(row)
                continue
            row.active_slots = row.renewal_slots
            row.unit_price = env.catalog.addon(row.addon_code).price_per_slot  # new prices apply now
            row.updated_at = due
        org.plan_code = next_plan.code
        if next_plan.is_free:
            sub.status, sub.canceled_at, sub.scheduled_plan_code = "canceled", due, None
            report.canceled.append(sub.id)
            break
        period = period_at_index(sub.anchor_at, sub.period_index + 1)
        sub.period_index, sub.period_start, sub.period_end = period.index, period.start, period.end
        sub.plan_code, sub.plan_price, sub.scheduled_plan_code = next_plan.code, next_plan.price or 0, None
        lines = [LineDraft("plan", next_plan.code,
                           line_description(f"{next_plan.name} plan", None, period, period.days, period.start),
                           1, sub.plan_price, sub.plan_price, period, period.days, period.days)]
        for row in sorted(addons.values(), key=lambda r: r.addon_code):
            if row.renewal_slots > 0:
                addon = env.catalog.addon(row.addon_code)
                lines.append(LineDraft(
                    "addon", addon.code,
                    line_description(addon.name, row.active_slots, period, period.days, period.start),
                    row.active_slots, row.unit_price, row.active_slots * row.unit_price,
                    period, period.days, period.days))
        db.flush()
        invoice = issue_invoice(db, org=org, kind="renewal", subscription_id=sub.id, period=period,
                                currency=sub.currency, lines=lines, at=due,
                                billing_key=f"period:{sub.id}:{period.index}")
        report.renewed.append(invoice.id)
        if not collect(db, env.gateway, org, invoice, due).succeeded:
            sub.status = "past_due"
            invoice.next_retry_at = due + timedelta(days=RETRY_AFTER_DAYS[0])
            report.payments_failed.append(invoice.id)
    db.flush()
    return report


def retry_invoice(
    db: Session, *, env: Env, org_id: str, invoice_id: str, at: datetime, scheduled: bool
) -> bool | None:
    """Try an open renewal invoice again: True if paid, False if declined, None if nothing was due
    (a concurrent sweep got there first). Scheduled retries follow ``RETRY_AFTER_DAYS``; after the
    last one the invoice stays open (and the subscription past_due) until the card is updated."""
    org = repo.locked_organization(db, org_id)
    invoice = db.get(Invoice, invoice_id, populate_existing=True)
    if org is None or invoice is None or invoice.status != "open":
        return None
    if scheduled and (invoice.next_retry_at is None or invoice.next_retry_at > at):
        return None
    when = invoice.next_retry_at if scheduled and invoice.next_retry_at else at
    paid = collect(db, env.gateway, org, invoice, when).succeeded
    if paid:
        invoice.next_retry_at = None
        sub = db.get(Subscription, invoice.subscription_id) if invoice.subscription_id else None
        if sub is not None and sub.status == "past_due" and not repo.open_invoices_of_subscription(db, sub.id):
            sub.status = "active"
    elif scheduled:
        later = [invoice.created_at + timedelta(days=d) for d in RETRY_AFTER_DAYS]
        invoice.next_retry_at = next((t for t in later if t > when), None)
    db.flush()
    return paid


def sweep(factory: sessionmaker[Session], *, env: Env, at: datetime) -> SweepReport:
    """Renew and retry everything due by ``at``, one organization per transaction, in batches.

    Safe to run concurrently or again after a crash: each item is re-checked under its lock, and
    committed work is never redone.
    """
    report = SweepReport()
    while True:
        with factory.begin() as db:
            due = repo.due_subscriptions(db, at, limit=BATCH_SIZE)
        for org_id, sub_id in due:
            with factory.begin() as db:
                report.merge(renew_subscription(db, env=env, org_id=org_id, subscription_id=sub_id, at=at))
        with factory.begin() as db:
            retries = repo.due_retries(db, at, limit=BATCH_SIZE)
        for org_id, invoice_id in retries:
            with factory.begin() as db:
                paid = retry_invoice(db, env=env, org_id=org_id, invoice_id=invoice_id, at=at, scheduled=True)
            if paid is not None:  # None: another sweep already made this attempt; report only our own
                (report.retried_paid if paid else report.retried_failed).append(invoice_id)
        if len(due) < BATCH_SIZE and len(retries) < BATCH_SIZE:
            break
    with factory.begin() as db:
        repo.delete_idempotency_records_before(db, at - IDEMPOTENCY_KEY_TTL)
    return report


def run_billing(factory: sessionmaker[Session], *, env: Env, clock: Clock) -> SweepReport:
    with factory.begin() as db:
        at = clock.now(db)
    return sweep(factory, env=env, at=at)


def advance_clock(
    factory: sessionmaker[Session], *, env: Env, clock: Clock, to: datetime
) -> tuple[datetime, SweepReport]:
    """Move the simulated clock to ``to``, stopping at each renewal or retry on the way, in order."""
    if not isinstance(clock, SimulatedClock):
        raise ClockNotSimulated()
    report = SweepReport()
    for _ in range(100_000):  # every step reaches a later instant; this only guards a bug
        with factory.begin() as db:
            now = clock.now(db)
            due = repo.next_due_instant(db)
        step = max(due, now) if due is not None and due <= to else to
        with factory.begin() as db:
            now = clock.set(db, step)
        report.merge(sweep(factory, env=env, at=now))
        if step >= to:
            return now, report
    raise RuntimeError("the clock could not reach its target")
