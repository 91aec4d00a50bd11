"""Renewals, payment retries, dunning's end and the billing sweep.

Each renewal and each scheduled retry runs at its own instant (not when the sweep happens to run),
in time order per organization, so a sweep after downtime, a request that touches an organization
before the sweep got to it, or a simulated clock moved by years, bill every period exactly as if on
time. A period is billed once: everything is re-checked under the organization lock, and the
invoice's unique ``billing_key`` refuses a second renewal invoice for the same period outright.

Dunning (SPEC §3): a failed renewal charge makes the subscription ``past_due`` and is retried 1, 3
and 5 days later; when the last retry fails too it becomes ``unpaid``: no more renewal invoices,
no growth in usage, until a new card restarts it (``payments.update_payment_method``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from slotwise import repositories as repo
from slotwise.catalog import Plan
from slotwise.clock import Clock, SimulatedClock
from slotwise.errors import ClockNotSimulated, InvalidRequest, PaymentFailed
from slotwise.models import Invoice, OrgAddon, Organization, Subscription, new_id
from slotwise.periods import Period, period_at_index
from slotwise.services.context import Env
from slotwise.services.invoices import LineDraft, collect, issue_invoice, line_description

RETRY_AFTER_DAYS = (1, 3, 5)  # after a failed renewal charge
BATCH_SIZE = 100
IDEMPOTENCY_KEY_TTL = timedelta(hours=48)
MAX_CLOCK_STEP = timedelta(days=3660)  # one move of the simulated clock
LATEST_INSTANT = datetime(9000, 1, 1, tzinfo=UTC)  # periods must still fit in a datetime after it


@dataclass
class SweepReport:
    renewed: list[str] = field(default_factory=list)  # invoice ids
    canceled: list[str] = field(default_factory=list)  # subscription ids
    payments_failed: list[str] = field(default_factory=list)  # invoice ids
    retried_paid: list[str] = field(default_factory=list)
    retried_failed: list[str] = field(default_factory=list)
    unpaid: list[str] = field(default_factory=list)  # subscription ids whose last retry failed

    def merge(self, other: SweepReport) -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))


def renewal_lines(env: Env, next_plan: Plan, addons: Sequence[OrgAddon], period: Period) -> list[LineDraft]:
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


def settle_addons_for_period(db: Session, env: Env, org_id: str, next_plan: Plan, at: datetime) -> list[OrgAddon]:
    """Active slots become the renewal slots (removals take effect), at today's catalog prices;
    add-ons the next plan does not offer, or with nothing kept, are gone. Returns what remains."""
    kept = []
    for row in repo.addons_of_org(db, org_id).values():
        if row.renewal_slots == 0 or next_plan.is_free:
            db.delete(row)
            continue
        row.active_slots = row.renewal_slots
        row.unit_price = env.catalog.addon(row.addon_code).price_per_slot  # new prices apply now
        row.updated_at = at
        kept.append(row)
    return kept


def _renew(db: Session, env: Env, org: Organization, sub: Subscription, report: SweepReport) -> None:
    """Renew ``sub`` once, at the instant its period ended."""
    due = sub.period_end
    next_plan = env.catalog.plan(sub.scheduled_plan_code or sub.plan_code)
    addons = settle_addons_for_period(db, env, org.id, next_plan, due)
    org.plan_code = next_plan.code
    if next_plan.is_free:
        sub.status, sub.canceled_at, sub.scheduled_plan_code = "canceled", due, None
        report.canceled.append(sub.id)
        return
    period = period_at_index(sub.anchor_at, sub.period_index + 1)
    sub.period_index, sub.period_start, sub.period_end = period.index, period.start, period.end
    sub.plan_code, sub.plan_price, sub.scheduled_plan_code = next_plan.code, next_plan.price or 0, None
    db.flush()
    invoice = issue_invoice(db, org=org, kind="renewal", subscription_id=sub.id, period=period,
                            currency=sub.currency, lines=renewal_lines(env, next_plan, addons, period), at=due,
                            billing_key=f"period:{sub.id}:{period.index}")
    report.renewed.append(invoice.id)
    if not collect(db, env.gateway, org, invoice, due).succeeded:
        sub.status = "past_due"
        invoice.next_retry_at = due + timedelta(days=RETRY_AFTER_DAYS[0])
        report.payments_failed.append(invoice.id)


def _retry(db: Session, env: Env, org: Organization, invoice: Invoice, when: datetime, *, scheduled: bool) -> bool:
    """One more attempt to collect an open invoice at ``when``; True if it was paid."""
    paid = collect(db, env.gateway, org, invoice, when).succeeded
    sub = db.get(Subscription, invoice.subscription_id) if invoice.subscription_id else None
    if paid:
        invoice.next_retry_at = None
        db.flush()
        if sub is not None and sub.status == "past_due" and not repo.open_invoices_of_subscription(db, sub.id):
            sub.status = "active"
    elif scheduled:
        later = [invoice.created_at + timedelta(days=d) for d in RETRY_AFTER_DAYS]
        invoice.next_retry_at = next((t for t in later if t > when), None)
        if invoice.next_retry_at is None and sub is not None and sub.status == "past_due":
            sub.status = "unpaid"  # dunning is over: nothing more is billed or granted until a new card
    db.flush()
    return paid


def catch_up(db: Session, *, env: Env, org_id: str, at: datetime) -> SweepReport:
    """Run, in time order, every renewal and scheduled retry of one organization due by ``at``.

    Takes the organization lock first, so it is safe beside requests, other sweeps and a crash
    before commit (nothing committed is redone: what is done is no longer due).
    """
    report = SweepReport()
    org = repo.locked_organization(db, org_id)
    if org is None:
        return report
    for _ in range(100_000):  # every step moves a renewal or a retry past ``at``; this only guards a bug
        sub = repo.current_subscription(db, org.id)
        renewal = sub.period_end if sub is not None and sub.status in RENEWING else None
        # Retries are scheduled only by a failed renewal, which leaves the subscription past due.
        retry = repo.first_due_retry_of_org(db, org.id, at) if sub is None or sub.status == "past_due" else None
        retry_at = retry.next_retry_at if retry is not None else None
        if retry is not None and retry_at is not None and (renewal is None or retry_at <= renewal):
            paid = _retry(db, env, org, retry, retry_at, scheduled=True)
            (report.retried_paid if paid else report.retried_failed).append(retry.id)
            if sub is not None and sub.status == "unpaid":
                report.unpaid.append(sub.id)
        elif sub is not None and renewal is not None and renewal <= at:
            _renew(db, env, org, sub, report)
        else:
            break
    db.flush()
    return report


RENEWING = ("active", "past_due")  # statuses whose periods keep renewing


def retry_invoice(db: Session, *, env: Env, org_id: str, invoice_id: str, at: datetime) -> bool | None:
    """Collect an open invoice now (a new card): True if paid, False if declined, None if it was
    not open any more. Scheduled retries are left as they were if it is declined."""
    org = repo.locked_organization(db, org_id)
    invoice = db.get(Invoice, invoice_id, populate_existing=True)
    if org is None or invoice is None or invoice.status != "open":
        return None
    return _retry(db, env, org, invoice, at, scheduled=False)


def sweep(factory: sessionmaker[Session], *, env: Env, at: datetime) -> SweepReport:
    """Run everything due by ``at``, one organization per transaction, in batches.

    Safe to run concurrently or again after a crash: each organization is re-checked under its lock,
    and committed work is never redone.
    """
    report = SweepReport()
    done: set[str] = set()
    while True:
        with factory.begin() as db:
            due = [org_id for org_id in repo.orgs_with_due_work(db, at, limit=BATCH_SIZE) if org_id not in done]
        for org_id in due:
            with factory.begin() as db:
                report.merge(catch_up(db, env=env, org_id=org_id, at=at))
            done.add(org_id)
        if not due:
            break
    with factory.begin() as db:
        repo.delete_idempotency_records_before(db, at - IDEMPOTENCY_KEY_TTL)
    return report


def run_billing(factory: sessionmaker[Session], *, env: Env, clock: Clock) -> SweepReport:
    with factory.begin() as db:
        at = clock.now(db)
    return sweep(factory, env=env, at=at)


def clock_target(now: datetime, *, advance_days: int | None = None, to: datetime | None = None) -> datetime:
    """Where a move of the simulated clock goes, or ``invalid_request`` if it is out of range."""
    if advance_days is not None and not 0 <= advance_days <= MAX_CLOCK_STEP.days:
        raise InvalidRequest(f"Move the clock by 0 to {MAX_CLOCK_STEP.days} days at a time.", field="advance_days")
    target = to if to is not None else now + timedelta(days=advance_days or 0)
    if target.tzinfo is None:
        raise InvalidRequest("'to' needs a time zone, e.g. 2026-12-15T00:00:00Z.", field="to")
    if target > now + MAX_CLOCK_STEP:
        raise InvalidRequest(f"Move the clock at most {MAX_CLOCK_STEP.days} days at a time.", field="to")
    if target >= LATEST_INSTANT:
        raise InvalidRequest(f"The clock can't move past {LATEST_INSTANT:%Y-%m-%d}.", field="to")
    return target


def advance_clock(
    factory: sessionmaker[Session], *, env: Env, clock: Clock, to: datetime
) -> tuple[datetime, SweepReport]:
    """Move the simulated clock to ``to`` and run everything that came due on the way.

    Organizations are independent, so each is caught up on its own, renewals and retries at their
    own instants in order; a request that reaches an organization first catches it up itself.
    """
    if not isinstance(clock, SimulatedClock):
        raise ClockNotSimulated()
    with factory.begin() as db:
        now = clock.set(db, to)
    return now, sweep(factory, env=env, at=now)


def restart_unpaid(
    db: Session, *, env: Env, org: Organization, sub: Subscription, at: datetime
) -> tuple[Sequence[str], Invoice | None]:
    """End an ``unpaid`` subscription and start its successor now, billed in full.

    The stale open invoices are voided (kept, never collected); a scheduled plan change and
    scheduled slot removals apply as a renewal would have applied them; the new subscription is
    anchored on ``at``. Returns the voided invoice ids and the new period's paid invoice (None when
    the next plan is Free). A declined card raises ``payment_failed``; the caller's rollback then
    leaves everything as it was. The caller holds the organization lock.
    """
    voided = repo.void_open_invoices_of_org(db, org.id)
    next_plan = env.catalog.plan(sub.scheduled_plan_code or sub.plan_code)
    addons = settle_addons_for_period(db, env, org.id, next_plan, at)
    sub.status, sub.canceled_at, sub.scheduled_plan_code = "canceled", at, None
    org.plan_code = next_plan.code
    if next_plan.is_free:
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
    return voided, invoice
