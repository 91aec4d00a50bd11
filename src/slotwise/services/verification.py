"""Bank verification (SCA / 3-D Secure, SPEC §12): settling a payment the customer's bank asked them
to verify, whoever learns its outcome first — the Owner's verify page or route (``verify``), or the
processor's webhook (``services.processor_events``). Both call ``settle_verification``.

Invariants:

* an invoice is paid once and what it buys is granted once: settling is done under the organization
  lock, and an invoice already paid or void is left as it is (any order, any number of times);
* a purchase (``Invoice.purchase``: slots, credits, a plan start or upgrade) grants exactly what was
  recorded when it was bought — the quantity and the unit price then, the credits then, the plan at
  its price then — never re-quoted;
* a plan start or upgrade the organization has moved on from since (``subscriptions.
  apply_plan_purchase``: it ended, renewed or changed plan meanwhile) is not applied: the invoice is
  paid, as the bank paid it, and the payment is refunded in full and recorded (a ``refunded``
  charge), so nothing is applied twice and nobody pays for what they did not get;
* a renewal (no ``purchase``) stays in the dunning while it waits; paying it is a late payment like
  any other (``renewals.paid_late``: active again, the period's credits refilled);
* a verification the bank refused voids a purchase (nothing granted, a failed charge kept); a
  renewal stays open for the dunning, its waiting payment forgotten.
"""

from __future__ import annotations

import json
import logging
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from slotwise import credit_repository as credits_repo
from slotwise import repositories as repo
from slotwise.capacity import Slots
from slotwise.errors import NotFound, PaymentFailed, SlotwiseError
from slotwise.gateway import ChargeOutcome, ChargeResult, Verdict
from slotwise.gateway.errors import GatewayUnavailable, RefundRefused
from slotwise.models import Charge, Invoice, Subscription, new_id
from slotwise.services import audit, recharges, subscriptions, trail
from slotwise.services.addons import grant_slots
from slotwise.services.context import Actor, Env, require_owner
from slotwise.services.renewals.cycle import paid_late

NEEDS_VERIFICATION = "Payment needs verification"
log = logging.getLogger(__name__)


class VerificationPending(SlotwiseError):
    code, status = "verification_pending", 409
    default_message = "Your bank has not confirmed this payment yet. Finish the verification, then try again."


# How long a purchase waits for the customer's bank: a week, or until its period ends if sooner. Then
# it is void (the verify route says so, the billing run does it): nothing was granted, and a plan
# change waiting for it no longer holds the next one back. Should the bank still pay later, the
# billing run's reconciliation refunds the payment of the void invoice.
VERIFICATION_WINDOW = timedelta(days=7)


def expires_at(invoice: Invoice) -> datetime:
    """When a purchase waiting for the bank's verification stops waiting."""
    return min(invoice.period_end, invoice.created_at + VERIFICATION_WINDOW)


class VerificationExpired(SlotwiseError):
    """The payment was not verified in time (``expires_at``): the purchase is void (kept)."""

    code, status, keeps = "verification_expired", 409, True
    default_message = ("This payment can no longer be verified: it was not confirmed in time. "
                       "Nothing was charged and nothing was added.")


class NothingToVerify(SlotwiseError):
    code, status = "nothing_to_verify", 409
    default_message = "This invoice has no payment waiting for verification."


class VerificationFailed(PaymentFailed):
    """The bank refused the verification: a purchase is now void, which the refusal keeps."""

    keeps = True
    default_message = "Your bank did not confirm this payment. Nothing was charged and nothing was added."


def settle_verification(db: Session, *, env: Env, org_id: str, invoice_id: str, result: ChargeResult,
                        at: datetime, by: audit.By = audit.SYSTEM) -> Invoice:
    """Apply the outcome of a payment that waited for the customer's bank to ``invoice_id`` of
    ``org_id``, under the organization lock; see the module's invariants. ``result`` paid: the
    invoice is paid with a succeeded charge (``result.reference``) and what it buys is granted;
    declined: a purchase is void with a failed charge, a renewal stays open; still waiting or
    retryable: nothing changes. ``by``: who learnt the outcome (the Owner, or slotwise from the
    processor)."""
    org = repo.locked_organization(db, org_id)
    invoice = db.get(Invoice, invoice_id, populate_existing=True) if org is not None else None
    if invoice is None or invoice.org_id != org_id:
        raise NotFound("No such invoice.")
    if invoice.status != "open" or result.outcome in (ChargeOutcome.ACTION_REQUIRED, ChargeOutcome.RETRYABLE):
        return invoice
    db.add(Charge(id=new_id("ch"), org_id=org_id, invoice_id=invoice.id, amount=invoice.total,
                  currency=invoice.currency, status="succeeded" if result.succeeded else "failed",
                  failure_code=result.failure_code, gateway_reference=result.reference, created_at=at))
    invoice.action_intent = None
    purchase = _purchase(invoice)
    if purchase is not None and purchase.get("kind") in subscriptions.PLAN_PURCHASES:
        # A plan change was charged by ``collect``, which recorded the attempt that asked for the
        # verification as a charge of its own: the outcome is one more attempt, so that each charge
        # recorded counts one (the other purchases record none until settled).
        invoice.attempt_count += 1
    if result.succeeded:
        invoice.status, invoice.paid_at = "paid", at
        db.flush()
        if purchase is None:
            sub = db.get(Subscription, invoice.subscription_id) if invoice.subscription_id else None
            trail.invoice_settled(db, org_id=org_id, by=by, invoice=invoice, paid=True, at=at)
            # Verified after dunning gave up (``unpaid``): everything owed is paid, so it is active again.
            paid_late(db, env, invoice, sub, at, by=by, reactivate=("past_due", "unpaid"))
        else:
            _grant(db, env, invoice, purchase, result.reference, by, at)
        return invoice
    if purchase is not None:
        invoice.status, invoice.next_retry_at = "void", None
        db.flush()
        if purchase.get("ledger_kind") == "recharge" and _recharge_in_flight(db, invoice):
            recharges.record_decline(db, org_id, at=at)
    trail.invoice_settled(db, org_id=org_id, by=by, invoice=invoice, paid=False, at=at)
    db.flush()
    return invoice


def verify(db: Session, *, env: Env, actor: Actor, invoice_id: str, verdict: Verdict | None,
           at: datetime) -> Invoice:
    """The Owner completes a verification: the processor is asked how it went (the sandbox's stand-in
    page sends its ``verdict``; Stripe's own page has already talked to the bank and ignores it), and
    the outcome is settled. Raises ``payment_failed`` (kept: the purchase is void) if the bank said
    no, ``verification_pending`` if it has not answered, ``verification_expired`` once it stopped
    waiting (``expires_at``). An invoice already paid or void is answered as it is."""
    require_owner(actor, "Payment verifications")
    invoice = waiting_invoice(db, org_id=actor.org_id, invoice_id=invoice_id)
    if invoice.status != "open":
        return invoice
    if invoice.action_intent is None:
        raise NothingToVerify()
    if at >= (expires_at(invoice) if invoice.purchase is not None else invoice.period_end):
        expire(db, invoice, at=at)
        raise VerificationExpired(invoice=invoice.id)
    result = env.gateway.complete_verification(intent_id=invoice.action_intent, verdict=verdict)
    if result.outcome is ChargeOutcome.RETRYABLE:
        raise GatewayUnavailable()
    if result.outcome is ChargeOutcome.ACTION_REQUIRED:
        raise VerificationPending(invoice=invoice.id)
    settled = settle_verification(db, env=env, org_id=actor.org_id, invoice_id=invoice.id, result=result, at=at,
                                  by=audit.by_user(db, actor))
    if not result.succeeded:
        raise VerificationFailed(result.failure_message, invoice=invoice.id, decline_code=result.decline_code)
    return settled


def expire_waiting(factory: sessionmaker[Session], *, env: Env, at: datetime) -> list[str]:
    """The billing run's part: every purchase whose verification ran out of time by ``at`` is asked
    of the processor once more — paid after all: settled; still waiting or refused: void (``expire``).
    One transaction per invoice, under its organization's lock. Returns the invoice ids made void."""
    with factory() as db:
        due = db.execute(select(Invoice.id, Invoice.org_id).where(
            Invoice.status == "open", Invoice.action_intent.is_not(None), Invoice.purchase.is_not(None),
            or_(Invoice.period_end <= at, Invoice.created_at <= at - VERIFICATION_WINDOW))).all()
    expired = []
    for row in due:
        with factory.begin() as db:
            invoice = waiting_invoice(db, org_id=row.org_id, invoice_id=row.id)
            if invoice.status != "open" or invoice.action_intent is None or at < expires_at(invoice):
                continue  # settled meanwhile
            result = env.gateway.complete_verification(intent_id=invoice.action_intent)
            if result.outcome is ChargeOutcome.RETRYABLE:
                continue  # the processor did not answer: the next run asks again
            if result.succeeded:
                settle_verification(db, env=env, org_id=row.org_id, invoice_id=invoice.id, result=result, at=at)
                continue
            expire(db, invoice, at=at)
            expired.append(invoice.id)
    return expired


def waiting_invoice(db: Session, *, org_id: str, invoice_id: str) -> Invoice:
    """The organization's invoice, locked with the organization (any status); 404 if not its own."""
    if repo.locked_organization(db, org_id) is None:
        raise NotFound("No such organization.")
    invoice = repo.invoice_in_org(db, org_id, invoice_id)
    if invoice is None:
        raise NotFound("No such invoice.")
    db.refresh(invoice)
    return invoice


def expire(db: Session, invoice: Invoice, *, at: datetime) -> None:
    """A verification too late for its period: a purchase is void (a recharge in flight is released,
    not counted as a failure); a renewal only forgets the payment it waited for."""
    purchase = _purchase(invoice)
    invoice.action_intent = None
    if purchase is not None:
        invoice.status, invoice.next_retry_at = "void", None
        if purchase.get("ledger_kind") == "recharge" and _recharge_in_flight(db, invoice):
            credits_repo.update_account(db, invoice.org_id, recharge_job_id=None, updated_at=at)
        trail.invoice_expired(db, org_id=invoice.org_id, invoice=invoice, at=at)
    db.flush()


def _purchase(invoice: Invoice) -> dict[str, Any] | None:
    if invoice.purchase is None:
        return None
    value = json.loads(invoice.purchase)
    if not isinstance(value, dict):
        raise ValueError(f"invoice {invoice.id}: purchase is not an object")
    return value


def _grant(db: Session, env: Env, invoice: Invoice, purchase: dict[str, Any], reference: str, by: audit.By,
           at: datetime) -> None:
    """What the paid ``invoice`` bought, with its event and entry as if paid when it was bought."""
    kind, org_id = purchase.get("kind"), invoice.org_id
    if kind in subscriptions.PLAN_PURCHASES:
        if not subscriptions.apply_plan_purchase(db, env=env, invoice=invoice, purchase=purchase, by=by, at=at):
            trail.invoice_settled(db, org_id=org_id, by=by, invoice=invoice, paid=True, at=at)
            _refund(db, env, invoice, reference, at)
        return
    if kind == "slots":
        addon = env.catalog.addon(str(purchase["addon"]))
        row = repo.addons_of_org(db, org_id).get(addon.code)
        before = Slots(row.active_slots, row.renewal_slots) if row is not None else Slots()
        quantity = int(purchase["quantity"])
        grant_slots(db, org_id=org_id, addon=addon, quantity=quantity, unit_price=int(purchase["unit_price"]),
                    held=row is not None, at=at)
        trail.invoice_event(db, "invoice.paid", org_id=org_id, invoice=invoice, at=at)
        trail.addon_changed(db, org_id=org_id, by=by, kind="addon.added", addon=addon.code, before=before,
                            after=Slots(before.active + quantity, before.renewal + quantity), at=at,
                            effective_at=at, invoice=invoice)
    elif kind == "credits":
        ledger_kind, credits = str(purchase["ledger_kind"]), int(purchase["credits"])
        balance = credits_repo.credit_topup_pool(db, org_id=org_id, credits=credits, kind=ledger_kind,
                                                 invoice_id=invoice.id, at=at)
        if ledger_kind == "recharge":
            if _recharge_in_flight(db, invoice):
                credits_repo.count_recharge(db, org_id, at=at)
            recharges.recharged(db, org_id=org_id, invoice=invoice, credits=credits, balance=balance, at=at, by=by)
        else:
            trail.paid_purchase(db, org_id=org_id, by=by, kind="credits.topped_up", invoice=invoice, at=at,
                                before={"topup": balance.topup - credits},
                                after={"topup": balance.topup, "credits": credits})
    else:
        raise ValueError(f"invoice {invoice.id}: unknown purchase {kind!r}")


def _refund(db: Session, env: Env, invoice: Invoice, reference: str, at: datetime) -> None:
    """Give back the whole payment ``reference`` of a paid invoice whose purchase could no longer be
    applied, and record it: a ``refunded`` charge beside the succeeded one, under the refund's own
    reference (the payment stays recorded once, by its succeeded charge)."""
    log.warning("slotwise: invoice %s of %s was verified after the organization moved on; %d refunded",
                invoice.id, invoice.org_id, invoice.total)
    key = f"slotwise-stale-{invoice.id}"
    refunded = key
    if invoice.total > 0:
        # Refused if already given back: an earlier attempt refunded, then its transaction was lost.
        with suppress(RefundRefused):
            refunded = env.gateway.refund(reference=reference, amount=invoice.total, refunded_before=0,
                                          idempotency_key=key).reference
    db.add(Charge(id=new_id("ch"), org_id=invoice.org_id, invoice_id=invoice.id, amount=invoice.total,
                  currency=invoice.currency, status="refunded", failure_code="stale_purchase_refund",
                  gateway_reference=refunded, created_at=at))
    db.flush()


def _recharge_in_flight(db: Session, invoice: Invoice) -> bool:
    """Whether the organization's recharge in flight is the one this invoice waits for."""
    standing = credits_repo.recharge_standing(db, invoice.org_id)
    job_id = standing.recharge_job_id if standing is not None else None
    return job_id is not None and recharges.invoice_id_of_job(job_id) == invoice.id
