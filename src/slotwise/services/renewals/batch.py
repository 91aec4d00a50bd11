"""The sweep's set-based renewal round: a batch's active subscriptions renewed together.

The rows are computed here by ``cycle._renew``'s rules (scheduled plan, removals, today's prices, the
credits of the new period) and each table is written with one statement per round; every invoice is
still charged on its own through the gateway. What a round does to credit accounts is collected as
``PeriodStart``s and written once per batch, with the free organizations' monthly refills
(``write_credits``), by the same code as the one-organization path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.capacity import Slots
from slotwise.catalog import Plan
from slotwise.gateway import ChargeResult
from slotwise.models import new_id
from slotwise.periods import period_at_index
from slotwise.services import audit, refills, trail
from slotwise.services.context import Env
from slotwise.services.invoices import attempt_charge, billed_invoice_id, waiting
from slotwise.services.refills import CreditWrites, PeriodStart
from slotwise.services.renewals.cycle import RETRY_AFTER_DAYS, SweepReport, removed, renewal_lines, renewed

LATEST_INSTANT = datetime(9000, 1, 1, tzinfo=UTC)  # periods must still fit in a datetime after it


@dataclass(slots=True)
class _Slots:
    addon_code: str
    active_slots: int
    renewal_slots: int
    unit_price: int = 0


@dataclass(eq=False, slots=True)
class Renewing:
    """A claimed organization as the set-based renewal sees it, kept in step round by round."""

    org_id: str
    invoice_seq: int
    card_token: str | None
    refills_at: datetime | None  # its credit account's, as claimed
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
        (``catch_up`` looks for them only once it is past due), and its credits are refilled by the
        renewal (``refills_at`` is its period's end) unless its account came due before it."""
        return (self.status == "active" and self.period_end <= at
                and (self.refills_at is None or self.refills_at >= self.period_end))

    def account_due_first(self, at: datetime) -> bool:
        """Its credit account came due before its renewal (an account opened after the period started:
        a migrated organization): the current period's credits are granted first."""
        return (self.status == "active" and self.refills_at is not None and self.refills_at <= at
                and self.refills_at < self.period_end)

    def state(self) -> dict[str, object]:
        return trail.plan_state(self.plan_code, self.status, self.scheduled_plan_code, self.period_end)

    @property
    def free(self) -> bool:
        """No subscription in force (none, or it ended this batch): credits on the monthly anchor."""
        return self.status in ("", "canceled")


def renewing(db: Session, claimed: Sequence[Any]) -> list[Renewing]:
    orgs = {row.id: Renewing(row.id, row.invoice_seq, row.card_token, row.refills_at) for row in claimed}
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


def renew_round(db: Session, env: Env, orgs: list[Renewing], report: SweepReport, starts: list[PeriodStart]) -> None:
    """Renew each of ``orgs`` once, at the instant its period ended, by ``_renew``'s rules; the credit
    periods this starts are appended to ``starts``."""
    writes, drafts = _Writes(), []
    unknown: list[str] = []  # billing keys to look up
    billed: list[str] = []
    for org in orgs:
        before, due = org.state(), org.period_end
        next_plan = env.catalog.plan(org.scheduled_plan_code or org.plan_code)
        kept = _settle_slots(db, env, org, next_plan, writes)
        if next_plan.is_free:
            starts.append(refills.free_start(env.catalog, org.org_id, org.period_end))
            _end_on_free(org, writes, report)
            renewed(db, org_id=org.org_id, sub_id=org.sub_id, before=before, after=org.state(), invoice=None, at=due)
            continue
        was_billed, org.next_billed = org.next_billed, None  # what is known of the period renewed now
        invoice, sub_row = _draft_renewal(env, org, next_plan, kept, writes)
        drafts.append((org, next_plan, invoice, sub_row, before))
        if was_billed is None:
            unknown.append(invoice["billing_key"])
        elif was_billed:
            billed.append(invoice["billing_key"])
    # A period billed already is refused before any card is charged (the unique key is the backstop):
    # looked up with the subscriptions for the first round, here for the next ones.
    billed += repo.billed_keys(db, unknown) if unknown else []
    if billed:
        raise RuntimeError(f"renewal periods billed already: {sorted(map(str, billed))}; run `slotwise doctor`")
    for org, plan, invoice, sub_row, before in drafts:
        _collect_first(env, org, invoice, sub_row, writes, report)
        facts = trail.InvoiceFacts.of(invoice)
        renewed(db, org_id=org.org_id, sub_id=org.sub_id, before=before, after=org.state(), invoice=facts,
                at=invoice["created_at"])
        if invoice["action_intent"] is not None:  # the bank asks the Owner to verify (``_collect_first``)
            waiting(db, org_id=org.org_id, invoice=facts, at=invoice["created_at"])
        starts.append(refills.subscription_start(
            org.org_id, invoice["created_at"], plan, invoice["period_start"], invoice["period_end"],
            paid=invoice["status"] == "paid", invoice_id=invoice["id"]))
    repo.insert_invoices(db, writes.invoices)
    repo.insert_invoice_lines(db, writes.lines)
    repo.insert_charges(db, writes.charges)
    repo.renew_subscriptions(db, writes.subscriptions)
    repo.renew_organizations(db, writes.organizations)
    repo.keep_addons(db, writes.kept_addons)
    repo.drop_addons(db, writes.dropped_addons)


def grant_current_periods(env: Env, orgs: Sequence[Renewing], at: datetime) -> list[PeriodStart]:
    """``refills.run_due_refill`` for the active subscriptions whose account came due before their
    renewal: the credits of the period they are in (only active ones: a past-due one's retries come
    first, the one-organization way)."""
    starts = []
    for org in orgs:
        if org.account_due_first(at):
            assert org.refills_at is not None
            starts.append(refills.standalone_start(env.catalog, org, org.refills_at))
            org.refills_at = org.period_end
    return starts


def write_credits(db: Session, env: Env, starts: Sequence[PeriodStart], free: Sequence[str], *, at: datetime,
                  report: SweepReport) -> None:
    """The batch's credit periods, in order, then every monthly refill of its ``free`` organizations due
    by ``at``: the accounts locked and read once, the ledger and the accounts written once."""
    if not starts and not free:
        return
    writes = CreditWrites.locked(db, [start.org_id for start in starts] + list(free))
    report.refilled.extend(start.org_id for start in starts if writes.start(start))
    monthly = refills.free_allowance(env.catalog)
    for org_id in free:
        report.refilled.extend([org_id] * writes.refill_free(org_id, monthly=monthly, at=at))
    writes.write(db)


def _settle_slots(db: Session, env: Env, org: Renewing, next_plan: Plan, writes: _Writes) -> list[_Slots]:
    """``settle_addons_for_period`` on the plain rows."""
    kept = []
    for code in sorted(org.slots):
        row = org.slots[code]
        gone = row.renewal_slots == 0 or next_plan.is_free
        removed(db, org_id=org.org_id, by=audit.SYSTEM, addon=code, before=Slots(row.active_slots, row.renewal_slots),
                kept=0 if gone else row.renewal_slots, at=org.period_end)
        if gone:
            del org.slots[code]
            writes.dropped_addons.append({"key_org_id": org.org_id, "key_addon_code": code})
            continue
        row.active_slots, row.unit_price = row.renewal_slots, env.catalog.addon(code).price_per_slot
        writes.kept_addons.append({"key_org_id": org.org_id, "key_addon_code": code, "active_slots": row.active_slots,
                                   "unit_price": row.unit_price, "updated_at": org.period_end})
        kept.append(row)
    return kept


def _end_on_free(org: Renewing, writes: _Writes, report: SweepReport) -> None:
    """``_renew`` onto the free plan: the subscription ends with its period, and no invoice."""
    org.scheduled_plan_code = None
    writes.subscriptions.append(_subscription_row(org, status="canceled", canceled_at=org.period_end))
    writes.organizations.append({"key_id": org.org_id, "invoice_seq": org.invoice_seq, "plan_code": "free"})
    org.status = "canceled"  # its plan stays the subscription's, as its event tells (``cycle``'s way)
    report.canceled.append(org.sub_id)


def _subscription_row(org: Renewing, *, status: str, canceled_at: datetime | None = None) -> dict[str, Any]:
    return {"key_id": org.sub_id, "period_index": org.period_index, "period_start": org.period_start,
            "period_end": org.period_end, "plan_code": org.plan_code, "plan_price": org.plan_price,
            "scheduled_plan_code": org.scheduled_plan_code, "status": status, "canceled_at": canceled_at}


def _draft_renewal(
    env: Env, org: Renewing, plan: Plan, kept: list[_Slots], writes: _Writes
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The renewal invoice (still open, not yet charged) and its subscription's row; the lines and the
    organization's row go into ``writes``."""
    due, period = org.period_end, period_at_index(org.anchor_at, org.period_index + 1)
    lines = renewal_lines(env, plan, kept, period)
    org.invoice_seq += 1
    billing_key = repo.renewal_billing_key(org.sub_id, period.index)
    invoice = {"id": billed_invoice_id(billing_key), "org_id": org.org_id, "number": org.invoice_seq,
               "subscription_id": org.sub_id, "kind": "renewal", "billing_key": billing_key,
               "period_start": period.start, "period_end": period.end, "currency": org.currency,
               "total": sum(line.amount for line in lines), "status": "open", "created_at": due, "paid_at": None,
               "attempt_count": 1, "next_retry_at": None, "action_intent": None}
    writes.lines.extend(
        {"id": new_id("il"), "invoice_id": invoice["id"], "org_id": org.org_id, "position": position,
         "kind": line.kind, "code": line.code, "description": line.description, "quantity": line.quantity,
         "unit_price": line.unit_price, "amount": line.amount, "period_start": line.period.start,
         "period_end": line.period.end, "days_left": line.days_left, "days_in_period": line.days_in_period}
        for position, line in enumerate(lines, start=1))
    org.period_index, org.period_start, org.period_end = period.index, period.start, period.end
    org.plan_code, org.plan_price, org.scheduled_plan_code = plan.code, plan.price or 0, None
    org.refills_at = period.end  # as the credit period it starts will set it (or NULL, if declined)
    sub_row = _subscription_row(org, status="active")
    writes.subscriptions.append(sub_row)
    writes.organizations.append({"key_id": org.org_id, "invoice_seq": org.invoice_seq, "plan_code": plan.code})
    return invoice, sub_row


def _collect_first(env: Env, org: Renewing, invoice: dict[str, Any], sub_row: dict[str, Any], writes: _Writes,
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
    if result is not None and result.action is not None:  # the bank asks the Owner: a failed attempt too
        invoice["action_intent"] = result.action.intent_id
    if result is None or result.succeeded:
        invoice["status"], invoice["paid_at"] = "paid", due
    else:
        invoice["next_retry_at"] = due + timedelta(days=RETRY_AFTER_DAYS[0])
        org.status = sub_row["status"] = "past_due"
        org.refills_at = None
        report.payments_failed.append(invoice["id"])
    writes.invoices.append(invoice)


def _first_charge(env: Env, card_token: str | None, invoice: dict[str, Any]) -> ChargeResult | None:
    """What ``collect`` does on an invoice's first attempt: nothing to charge at zero (None), a decline
    without a card, else one gateway call keyed by the invoice and attempt. An answer that the
    processor is not answering (retryable) is a failed attempt the dunning retries, as ``collect``
    records it."""
    if invoice["total"] <= 0:
        return None
    return attempt_charge(env.gateway, card_token, amount=invoice["total"], currency=invoice["currency"],
                          invoice_id=invoice["id"], attempt=1, org_id=invoice["org_id"])
