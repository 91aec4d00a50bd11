"""Auto-recharge (SPEC §11): its settings, the request for a recharge, and the recharge itself, which a
worker runs off the request that asked for it.

Invariants: at most one recharge is in flight per organization (``recharge_job_id`` names its job;
only the job's handler clears it); at most ``recharge_max_per_period`` are paid per billing period;
credits land in the top-up pool only with a paid invoice; after 3 declines in a row auto-recharge
turns itself off and says why.

A recharge the bank asks the Owner to verify (SCA) stays in flight: its invoice is written open and
``recharge_job_id`` keeps naming the job (whose id the invoice's is made from), so no other recharge
is asked for until the verification settles it (``verification``: paid, the credits land and it
counts; failed, it is a decline) or expires with its period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from slotwise import credit_repository as credits_repo
from slotwise import jobs
from slotwise import repositories as repo
from slotwise.credit_repository import Balances
from slotwise.errors import NotFound, OwnerOnly, PaymentMethodRequired, PaymentRequired, SubscriptionRequired
from slotwise.gateway import ChargeResult
from slotwise.jobs import ClaimedJob, JobContext
from slotwise.periods import Period
from slotwise.services import audit, events, trail
from slotwise.services.context import Actor
from slotwise.services.invoices import InvoiceRecord, LineDraft, charge_and_record, waiting
from slotwise.services.spend import RECHARGE_JOB, RETRY_AFTER_FAILURE
from slotwise.services.topups import credits_purchase

FAILURES_BEFORE_DISABLING = 3
SETTINGS_UPDATED = "Auto-recharge settings updated."
OWNER_ONLY = "Only the organization owner can manage auto-recharge."
NEEDS_SUBSCRIPTION = "An active subscription is required to enable auto-recharge."
NEEDS_CARD = "A payment method is required to enable auto-recharge."
DISABLED_AFTER_FAILURES = ("Auto-recharge was disabled after multiple failed payment attempts. Please update your "
                           "payment method and re-enable.")
LIVE_STATUSES = ("active", "past_due")  # an active subscription (``unpaid``: payment_required)


def request_recharge(db: Session, org_id: str, *, at: datetime, wall_now: datetime) -> str | None:
    """Queue a recharge if one is due, exactly as a spend does (``services.spend``): enabled, the total
    balance below the threshold, under the period's cap, none in flight, and no failure within the
    hour before ``at`` (billing time). The job runs from ``wall_now``. Its id, or None."""
    job_id = jobs.new_job_id()
    if not credits_repo.mark_recharge_requested(db, org_id=org_id, job_id=job_id,
                                                failed_before=at - RETRY_AFTER_FAILURE):
        return None
    return jobs.enqueue(db, RECHARGE_JOB, org_id, None, wall_now, job_id=job_id)


@dataclass(frozen=True, slots=True)
class RechargeSettings:
    enabled: bool
    threshold: int | None = None  # None: keep what is set
    max_per_month: int | None = None


def update_settings(db: Session, *, actor: Actor, settings: RechargeSettings, at: datetime,
                    wall_now: datetime) -> str | None:
    """Save the settings, Owner only. Enabling needs an active subscription and a card; turning it
    on again after it was off (whatever turned it off) starts afresh: the failures in a row, the
    hour's wait after one and the reason it was turned off are forgotten. Saving it enabled with the
    balance already below the threshold queues a recharge at once (its job id is returned)."""
    if not actor.is_owner:
        raise OwnerOnly(OWNER_ONLY)
    if not repo.lock_organization(db, actor.org_id):
        raise NotFound("No such organization.")
    standing = credits_repo.recharge_standing(db, actor.org_id)
    account = credits_repo.account_overview(db, actor.org_id)
    if standing is None or account is None:
        raise NotFound("No such organization.")
    values: dict[str, Any] = {"recharge_enabled": settings.enabled, "updated_at": at}
    if settings.enabled:
        if standing.sub_id is None:
            raise SubscriptionRequired(NEEDS_SUBSCRIPTION)
        if standing.sub_status == "unpaid":
            raise PaymentRequired()
        if standing.card_token is None:
            raise PaymentMethodRequired(NEEDS_CARD)
        if not standing.recharge_enabled:
            values.update(recharge_failures=0, recharge_failed_at=None, recharge_disabled_reason=None)
    if settings.threshold is not None:
        values["recharge_threshold"] = settings.threshold
    if settings.max_per_month is not None:
        values["recharge_max_per_period"] = settings.max_per_month
    credits_repo.update_account(db, actor.org_id, **values)
    before = {"enabled": account.recharge_enabled, "threshold": account.recharge_threshold,
              "max_per_month": account.recharge_max_per_period}
    after = {"enabled": settings.enabled, "threshold": values.get("recharge_threshold", before["threshold"]),
             "max_per_month": values.get("recharge_max_per_period", before["max_per_month"])}
    if after != before:  # saving the same settings again leaves no entry
        audit.record(db, org_id=actor.org_id, by=audit.by_user(db, actor), kind="auto_recharge.updated", at=at,
                     before=before, after=after)
    return request_recharge(db, actor.org_id, at=at, wall_now=wall_now) if settings.enabled else None


@jobs.handler(RECHARGE_JOB)
def run_recharge(db: Session, job: ClaimedJob, ctx: JobContext) -> None:
    """Charge one pack to the card on file for the recharge ``job`` asked for.

    Under the organization lock the request is checked again (still enabled, still under the cap, a
    live subscription); the balance need not still be below the threshold: it was when asked. Paid:
    the pack lands in the top-up pool. Declined: one more failure in a row, and after the third
    auto-recharge turns off. Either way the recharge is no longer in flight.
    """
    org_id = job.org_id
    if org_id is None or not repo.lock_organization(db, org_id):
        return  # the organization is gone: nothing to recharge
    at = ctx.clock.now(db)
    standing = credits_repo.recharge_standing(db, org_id)
    if standing is None or standing.recharge_job_id != job.id:
        return  # a stale job: the recharge it stood for was settled already
    due = (standing.recharge_enabled and standing.recharges_in_period < standing.recharge_max_per_period
           and standing.sub_id is not None and standing.sub_status in LIVE_STATUSES)
    if not due:
        credits_repo.update_account(db, org_id, recharge_job_id=None, updated_at=at)
        return
    pack = ctx.env.catalog.credits.pack
    period = Period(standing.period_index, standing.period_start, standing.period_end)
    purchase = db.begin_nested()  # a decline gives the invoice number back: nothing is issued
    taken = repo.take_invoice_number(db, org_id)
    assert taken is not None  # the organization is locked
    line = LineDraft("credit", "credit_pack", f"Auto-recharge credits × {pack.credits:,}", 1, pack.price,
                     pack.price, period, period.days, period.days)
    # The invoice id comes from the job's: a retry after a crash between the charge and the commit asks
    # the gateway with the same idempotency key, so the card is charged once.
    invoice = charge_and_record(db, ctx.env.gateway, org_id=org_id, card_token=taken.card_token,
                                number=taken.number, kind="recharge", subscription_id=standing.sub_id,
                                period=period, currency=pack.currency, lines=[line], at=at,
                                invoice_id=invoice_id_of_job(job.id),
                                purchase=credits_purchase(pack.credits, "recharge"))
    if isinstance(invoice, ChargeResult):
        purchase.rollback()
        record_decline(db, org_id, at=at, failures=standing.recharge_failures + 1, decline=invoice)
        return
    purchase.commit()
    if invoice.status == "open":  # waiting for the Owner's bank: still in flight, nothing granted (module doc)
        waiting(db, org_id=org_id, invoice=invoice, at=at)
        return
    balance = credits_repo.credit_topup_pool(db, org_id=org_id, credits=pack.credits, kind="recharge",
                                             invoice_id=invoice.id, at=at)
    credits_repo.count_recharge(db, org_id, at=at)
    recharged(db, org_id=org_id, invoice=invoice, credits=pack.credits, balance=balance, at=at)


def recharged(db: Session, *, org_id: str, invoice: InvoiceRecord | trail.InvoiceLike, credits: int,
              balance: Balances, at: datetime, by: audit.By = audit.SYSTEM) -> None:
    """A recharge was paid and its credits landed: ``credits.recharged``, ``invoice.paid`` and the entry."""
    events.emit(db, org_id=org_id, type="credits.recharged", at=at, data={
        "credits": credits, "invoice": invoice.id, "amount": invoice.total, "currency": invoice.currency,
        "balance": {"plan": balance.plan, "topup": balance.topup, "total": balance.total}})
    trail.paid_purchase(db, org_id=org_id, by=by, kind="credits.recharged", invoice=invoice, at=at,
                        before={"topup": balance.topup - credits}, after={"topup": balance.topup, "credits": credits})


def invoice_id_of_job(job_id: str) -> str:
    """The id of the invoice a recharge job issues (the same after a crash and retry)."""
    return "inv_" + job_id.removeprefix("job_")[:28]


def record_decline(db: Session, org_id: str, *, at: datetime, failures: int | None = None,
                   decline: ChargeResult | None = None) -> None:
    """A recharge was declined: one more failure in a row (``failures``, if the caller read it; the
    third turns auto-recharge off, ``auto_recharge.disabled``), and none is in flight. No invoice was
    issued, so the entry (``credits.recharge_failed``) names the decline (``decline``, if known)."""
    if failures is None:
        standing = credits_repo.recharge_standing(db, org_id)
        failures = (standing.recharge_failures if standing is not None else 0) + 1
    values: dict[str, Any] = {"recharge_failures": failures, "recharge_failed_at": at, "recharge_job_id": None,
                              "updated_at": at}
    disabled = failures >= FAILURES_BEFORE_DISABLING
    if disabled:
        values.update(recharge_enabled=False, recharge_disabled_reason=DISABLED_AFTER_FAILURES)
    credits_repo.update_account(db, org_id, **values)
    audit.record(db, org_id=org_id, by=audit.SYSTEM, kind="credits.recharge_failed", at=at,
                 after={"failures": failures, "decline_code": decline.failure_code if decline else None})
    if disabled:
        reason = {"reason": DISABLED_AFTER_FAILURES, "failures": failures}
        events.emit(db, org_id=org_id, type="auto_recharge.disabled", data=reason, at=at)
        audit.record(db, org_id=org_id, by=audit.SYSTEM, kind="auto_recharge.disabled", at=at,
                     before={"enabled": True}, after={"enabled": False, **reason})
