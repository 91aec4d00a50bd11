"""Renewals, payment retries, dunning's end and the billing sweep.

Each renewal and each scheduled retry runs at its own instant (not when the sweep happens to run),
in time order per organization, so a sweep after downtime, a request that touches an organization
before the sweep got to it, or a simulated clock moved by years, bill every period exactly as if on
time. A period is billed once: everything is re-checked under the organization lock, and the
invoice's unique ``billing_key`` refuses a second renewal invoice for the same period outright.

Dunning (SPEC §3): a failed renewal charge makes the subscription ``past_due`` and is retried 1, 3
and 5 days later; when the last retry fails too it becomes ``unpaid``: no more renewal invoices,
no growth in usage, until a new card restarts it (``payments.update_payment_method``).

The sweep (``sweep``: ``billing run``, the operator clock) claims a batch of due organizations at a
time, in id order, locked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several sweeps split the work
instead of queueing behind one batch), and renews the common case set-based: an active subscription
whose next event is its renewal (or its end, onto the free plan), however many periods are due. The
rows are computed here by ``_renew``'s rules (scheduled plan, removals, today's prices) and each table
is written with one statement per round; every invoice is still charged on its own through the
gateway. Anything else (a retry, dunning, a declined charge's aftermath) goes through ``catch_up``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from slotwise import repositories as repo
from slotwise.catalog import Plan
from slotwise.clock import Clock, SimulatedClock
from slotwise.errors import ClockNotSimulated, InvalidRequest, PaymentFailed
from slotwise.gateway import ChargeResult
from slotwise.models import Invoice, OrgAddon, Organization, Subscription, new_id
from slotwise.periods import Period, period_at_index
from slotwise.services.context import Env
from slotwise.services.invoices import LineDraft, attempt_charge, collect, issue_invoice, line_description
from slotwise.services.limits import prune_rate_limit_logs

RETRY_AFTER_DAYS = (1, 3, 5)  # after a failed renewal charge
BATCH_SIZE = 500  # organizations claimed per transaction, once a sweep is under way
# A sweep's first batches are smaller, doubling up to BATCH_SIZE: the first renewals commit (and the
# first organizations are free again) within milliseconds, and a small sweep is shared between the
# processes that run it rather than taken whole by the first.
FIRST_BATCH_SIZE = 8
# Renewals one transaction writes at most (a long clock move renews each organization many times): it
# bounds how long a batch holds its organizations' locks, and so how long a request about one waits.
RENEWALS_PER_TRANSACTION = 1000
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


@dataclass(frozen=True, slots=True)
class SweepProgress:
    renewed: int  # renewal invoices issued so far
    retried: int  # scheduled retries run so far
    claimed: int  # organizations claimed so far (one left for a later pass counts again)
    seconds: float


def sweep(
    factory: sessionmaker[Session],
    *,
    env: Env,
    at: datetime,
    report: SweepReport | None = None,
    progress: Callable[[SweepProgress], None] | None = None,
) -> SweepReport:
    """Run everything due by ``at``, a batch of organizations per transaction (see the module's doc).

    Safe to run concurrently or again after a crash: each organization is re-read under its lock, and
    committed work is never redone (what is done is no longer due). Passes skip what other transactions
    hold until nothing else is due; then one more waits for it, so nothing due by ``at`` is left undone.
    ``report`` collects the ids (a caller may pass one that keeps them elsewhere than in memory);
    ``progress`` is called after each batch.
    """
    report = SweepReport() if report is None else report
    tally = _Tally(progress)
    for skip_held in (True, False):
        while _sweep_pass(factory, env=env, at=at, skip_held=skip_held, report=report, tally=tally):
            pass  # organizations were left due by a transaction's share of renewals: go round again
    with factory.begin() as db:
        repo.delete_idempotency_records_before(db, at - IDEMPOTENCY_KEY_TTL)
        prune_rate_limit_logs(db, at=at)  # the request path only counts the last window, never prunes
    return report


def _sweep_pass(
    factory: sessionmaker[Session], *, env: Env, at: datetime, skip_held: bool, report: SweepReport, tally: _Tally
) -> bool:
    """One pass over the due organizations in id order; True if some were left due for another pass."""
    after, left_due = "", False
    while True:
        size = min(BATCH_SIZE, FIRST_BATCH_SIZE << min(tally.batches, 16))
        with factory.begin() as db:
            batch = _sweep_batch(db, env, at, after=after, size=size, skip_held=skip_held)
        if batch is None:
            return left_due
        after, left_due = batch.last_id, left_due or batch.left_due
        report.merge(batch.report)
        tally.add(batch)


@dataclass
class _Batch:
    last_id: str
    claimed: int
    report: SweepReport
    left_due: bool  # some organizations still have renewals due (a long clock move)


def _sweep_batch(db: Session, env: Env, at: datetime, *, after: str, size: int, skip_held: bool) -> _Batch | None:
    claimed = repo.claim_due_organizations(db, at, after=after, limit=size, skip_held=skip_held)
    if not claimed:
        return None
    report = SweepReport()
    orgs = _renewing(db, claimed)
    ready = [org for org in orgs if org.renewal_due(at)]
    others = [org.org_id for org in orgs if not org.renewal_due(at)]
    written = 0
    while ready and written < RENEWALS_PER_TRANSACTION:
        _renew_round(db, env, ready, report)
        written += len(ready)
        others += [org.org_id for org in ready if org.status != "active"]  # declined, or ended on free
        ready = [org for org in ready if org.renewal_due(at)]
    # Everything else goes the one-organization way, if it is still due: a declined charge's retry may
    # be, and a claimed organization may have been swept by another process meanwhile.
    due = repo.organizations_with_due_work(db, others, at)
    for org_id in (org_id for org_id in others if org_id in due):
        report.merge(catch_up(db, env=env, org_id=org_id, at=at))
    return _Batch(claimed[-1].id, len(claimed), report, left_due=bool(ready))


@dataclass(slots=True)
class _Slots:
    addon_code: str
    active_slots: int
    renewal_slots: int
    unit_price: int = 0


@dataclass(eq=False, slots=True)
class _Renewing:
    """A claimed organization as the set-based renewal sees it, kept in step round by round."""

    org_id: str
    invoice_seq: int
    card_token: str | None
    sub_id: str = ""
    status: str = ""  # of its current subscription; "" if it has none
    plan_code: str = ""
    scheduled_plan_code: str | None = None
    plan_price: int = 0
    currency: str = ""
    anchor_at: datetime = LATEST_INSTANT
    period_index: int = 0
    period_start: datetime = LATEST_INSTANT
    period_end: datetime = LATEST_INSTANT
    slots: dict[str, _Slots] = field(default_factory=dict)
    next_billed: bool | None = None  # an invoice holds the next period's key; None: not looked up

    def renewal_due(self, at: datetime) -> bool:
        """Its next event is a renewal due by ``at``: an active subscription has no retries scheduled
        (``catch_up`` looks for them only once it is past due), so nothing comes before it."""
        return self.status == "active" and self.period_end <= at


def _renewing(db: Session, claimed: Sequence[Any]) -> list[_Renewing]:
    orgs = {row.id: _Renewing(row.id, row.invoice_seq, row.card_token) for row in claimed}
    for sub in repo.current_subscriptions_of(db, list(orgs)):
        org = orgs[sub.org_id]
        org.sub_id, org.status, org.plan_code, org.scheduled_plan_code, org.plan_price, org.currency = (
            sub.id, sub.status, sub.plan_code, sub.scheduled_plan_code, sub.plan_price, sub.currency)
        org.anchor_at, org.period_index, org.period_start, org.period_end, org.next_billed = (
            sub.anchor_at, sub.period_index, sub.period_start, sub.period_end, sub.next_billed)
    for row in repo.addon_slots_of(db, list(orgs)):
        orgs[row.org_id].slots[row.addon_code] = _Slots(row.addon_code, row.active_slots, row.renewal_slots)
    return list(orgs.values())


@dataclass
class _Writes:
    """The rows one round writes, a statement per table (keys as the repository's writes name them)."""

    invoices: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    charges: list[dict[str, Any]] = field(default_factory=list)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    organizations: list[dict[str, Any]] = field(default_factory=list)
    kept_addons: list[dict[str, Any]] = field(default_factory=list)
    dropped_addons: list[dict[str, Any]] = field(default_factory=list)


def _renew_round(db: Session, env: Env, orgs: list[_Renewing], report: SweepReport) -> None:
    """Renew each of ``orgs`` once, at the instant its period ended, by ``_renew``'s rules."""
    writes, drafts = _Writes(), []
    unknown: list[str] = []  # billing keys to look up
    billed: list[str] = []
    for org in orgs:
        next_plan = env.catalog.plan(org.scheduled_plan_code or org.plan_code)
        kept = _settle_slots(env, org, next_plan, writes)
        if next_plan.is_free:
            _end_on_free(org, writes, report)
            continue
        was_billed, org.next_billed = org.next_billed, None  # what is known of the period renewed now
        invoice, sub_row = _draft_renewal(env, org, next_plan, kept, writes)
        drafts.append((org, invoice, sub_row))
        if was_billed is None:
            unknown.append(invoice["billing_key"])
        elif was_billed:
            billed.append(invoice["billing_key"])
    # A period billed already is refused before any card is charged (the unique key is the backstop):
    # looked up with the subscriptions for the first round, here for the next ones.
    billed += repo.billed_keys(db, unknown) if unknown else []
    if billed:
        raise RuntimeError(f"renewal periods billed already: {sorted(map(str, billed))}; run `slotwise doctor`")
    for org, invoice, sub_row in drafts:
        _collect_first(env, org, invoice, sub_row, writes, report)
    repo.insert_invoices(db, writes.invoices)
    repo.insert_invoice_lines(db, writes.lines)
    repo.insert_charges(db, writes.charges)
    repo.renew_subscriptions(db, writes.subscriptions)
    repo.renew_organizations(db, writes.organizations)
    repo.keep_addons(db, writes.kept_addons)
    repo.drop_addons(db, writes.dropped_addons)


def _settle_slots(env: Env, org: _Renewing, next_plan: Plan, writes: _Writes) -> list[_Slots]:
    """``settle_addons_for_period`` on the plain rows."""
    kept = []
    for code in sorted(org.slots):
        row = org.slots[code]
        if row.renewal_slots == 0 or next_plan.is_free:
            del org.slots[code]
            writes.dropped_addons.append({"key_org_id": org.org_id, "key_addon_code": code})
            continue
        row.active_slots, row.unit_price = row.renewal_slots, env.catalog.addon(code).price_per_slot
        writes.kept_addons.append({"key_org_id": org.org_id, "key_addon_code": code, "active_slots": row.active_slots,
                                   "unit_price": row.unit_price, "updated_at": org.period_end})
        kept.append(row)
    return kept


def _end_on_free(org: _Renewing, writes: _Writes, report: SweepReport) -> None:
    """``_renew`` onto the free plan: the subscription ends with its period, and no invoice."""
    org.scheduled_plan_code = None
    writes.subscriptions.append(_subscription_row(org, status="canceled", canceled_at=org.period_end))
    writes.organizations.append({"key_id": org.org_id, "invoice_seq": org.invoice_seq, "plan_code": "free"})
    org.status, org.plan_code = "canceled", "free"
    report.canceled.append(org.sub_id)


def _subscription_row(org: _Renewing, *, status: str, canceled_at: datetime | None = None) -> dict[str, Any]:
    return {"key_id": org.sub_id, "period_index": org.period_index, "period_start": org.period_start,
            "period_end": org.period_end, "plan_code": org.plan_code, "plan_price": org.plan_price,
            "scheduled_plan_code": org.scheduled_plan_code, "status": status, "canceled_at": canceled_at}


def _draft_renewal(
    env: Env, org: _Renewing, plan: Plan, kept: list[_Slots], writes: _Writes
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The renewal invoice (still open, not yet charged) and its subscription's row; the lines and the
    organization's row go into ``writes``."""
    due, period = org.period_end, period_at_index(org.anchor_at, org.period_index + 1)
    lines = renewal_lines(env, plan, kept, period)
    org.invoice_seq += 1
    invoice = {"id": new_id("inv"), "org_id": org.org_id, "number": org.invoice_seq, "subscription_id": org.sub_id,
               "kind": "renewal", "billing_key": repo.renewal_billing_key(org.sub_id, period.index),
               "period_start": period.start, "period_end": period.end, "currency": org.currency,
               "total": sum(line.amount for line in lines), "status": "open", "created_at": due, "paid_at": None,
               "attempt_count": 1, "next_retry_at": None}
    writes.lines.extend(
        {"id": new_id("il"), "invoice_id": invoice["id"], "org_id": org.org_id, "position": position,
         "kind": line.kind, "code": line.code, "description": line.description, "quantity": line.quantity,
         "unit_price": line.unit_price, "amount": line.amount, "period_start": line.period.start,
         "period_end": line.period.end, "days_left": line.days_left, "days_in_period": line.days_in_period}
        for position, line in enumerate(lines, start=1))
    org.period_index, org.period_start, org.period_end = period.index, period.start, period.end
    org.plan_code, org.plan_price, org.scheduled_plan_code = plan.code, plan.price or 0, None
    sub_row = _subscription_row(org, status="active")
    writes.subscriptions.append(sub_row)
    writes.organizations.append({"key_id": org.org_id, "invoice_seq": org.invoice_seq, "plan_code": plan.code})
    return invoice, sub_row


def _collect_first(env: Env, org: _Renewing, invoice: dict[str, Any], sub_row: dict[str, Any], writes: _Writes,
                   report: SweepReport) -> None:
    """``collect`` for the invoice's first attempt; a decline leaves it open and the subscription past
    due, retried a day later (``_renew``)."""
    due = invoice["created_at"]
    result = _first_charge(env, org.card_token, invoice)
    if result is not None:
        writes.charges.append({"id": new_id("ch"), "org_id": org.org_id, "invoice_id": invoice["id"],
                               "amount": invoice["total"], "currency": invoice["currency"],
                               "status": "succeeded" if result.succeeded else "failed",
                               "failure_code": result.failure_code, "gateway_reference": result.reference,
                               "created_at": due})
    report.renewed.append(invoice["id"])
    if result is None or result.succeeded:
        invoice["status"], invoice["paid_at"] = "paid", due
    else:
        invoice["next_retry_at"] = due + timedelta(days=RETRY_AFTER_DAYS[0])
        org.status = sub_row["status"] = "past_due"
        report.payments_failed.append(invoice["id"])
    writes.invoices.append(invoice)


def _first_charge(env: Env, card_token: str | None, invoice: dict[str, Any]) -> ChargeResult | None:
    """What ``collect`` does on an invoice's first attempt: nothing to charge at zero (None), a decline
    without a card, else one gateway call keyed by the invoice and attempt."""
    if invoice["total"] <= 0:
        return None
    return attempt_charge(env.gateway, card_token, amount=invoice["total"], currency=invoice["currency"],
                          idempotency_key=f"{invoice['id']}:1")


class _Tally:
    def __init__(self, progress: Callable[[SweepProgress], None] | None) -> None:
        self.progress, self.started = progress, time.monotonic()
        self.renewed = self.retried = self.claimed = self.batches = 0

    def add(self, batch: _Batch) -> None:
        self.renewed += len(batch.report.renewed)
        self.retried += len(batch.report.retried_paid) + len(batch.report.retried_failed)
        self.claimed += batch.claimed
        self.batches += 1
        if self.progress is not None:
            self.progress(SweepProgress(self.renewed, self.retried, self.claimed, time.monotonic() - self.started))


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
