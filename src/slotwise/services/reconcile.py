"""Reconciliation (SPEC §12): what the processor says it was paid, against what slotwise recorded.

A charge is made before the transaction that records it commits, so a crash (or a lost connection)
between the two leaves the processor paid and slotwise without the record. Each billing run reads
the processor's recent payments (``CardGateway.recent_charges``: those carrying our metadata) and
settles every one slotwise has no record of, one organization at a time under its lock — after the
lock, whatever transaction made the charge has either committed or is gone for good:

* the invoice it names is **open** (a renewal in dunning, a payment the bank verified and nobody
  reported): it is **completed** — paid with that charge, and what it buys granted, exactly as the
  verification would (``verification.settle_verification``);
* the invoice does not exist: if it bills a period, the organization is first caught up, which
  redoes the renewal with the same invoice id (``invoices.billed_invoice_id``) and so the same
  idempotency key — the processor answers with the payment already made, and the invoice is paid
  with it; an auto-recharge whose job is still queued is left to the job, which does the same.
  Otherwise (a purchase whose request died: the customer was told nothing succeeded) the payment is
  **refunded in full** and recorded as a ``refunded`` charge;
* the invoice is already paid by another payment, or void: the payment is refunded and recorded.

A visitor's pass (paid agents) names its pass id where an invoice id would be; a pass sold with the
payment records it, a pass waiting for the visitor's bank is made with it, and a pass whose commit
never came is refunded like a purchase.

Never a second charge (everything slotwise redoes reuses its key), never a paid charge without its
invoice, and each payment settled once (a recorded reference is skipped; the refund's idempotency key
is the payment's). A payment of a different amount than its open invoice is refunded, not applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from slotwise import credit_repository as credits_repo
from slotwise import repositories as repo
from slotwise.clock import wall_now
from slotwise.gateway import ChargeResult, ProcessorCharge
from slotwise.gateway.errors import RefundRefused
from slotwise.models import Charge, Invoice, Pass, new_id
from slotwise.services import recharges, trail
from slotwise.services.context import Env
from slotwise.services.paid_access import complete_paid_checkout, is_pass_id
from slotwise.services.renewals.cycle import catch_up
from slotwise.services.verification import settle_verification

# How far back each billing run reads the processor's payments: longer than any outage a billing
# run would sit out (it runs every few minutes), shorter than the processor's idempotency window.
WINDOW = timedelta(hours=24)
RECORDED = ("succeeded", "refunded")  # charge statuses that account for a processor payment
CHECK_BATCH = 500  # references looked up per query


@dataclass
class Reconciled:
    completed: list[str] = field(default_factory=list)  # invoice ids paid with a payment found at the processor
    refunded: list[str] = field(default_factory=list)  # the processor's payments given back
    waiting: list[str] = field(default_factory=list)  # payments left to the job that will redo them


def reconcile(factory: sessionmaker[Session], *, env: Env, at: datetime,
              since: datetime | None = None) -> Reconciled:
    """Settle every payment since ``since`` (default: ``WINDOW`` ago, by the wall clock — the
    processor's time, whatever the billing clock says) that slotwise has no record of; ``at`` is
    the billing clock, which dates what is written."""
    done = Reconciled()
    found = list(env.gateway.recent_charges(since=since or wall_now() - WINDOW))
    for charge in unrecorded(factory, found):
        with factory.begin() as db:
            _settle(db, env, charge, at, done)
    return done


def unrecorded(factory: sessionmaker[Session], charges: Iterable[ProcessorCharge]) -> list[ProcessorCharge]:
    """The payments no charge of ours records (a query per ``CHECK_BATCH``, none per payment)."""
    pending = list(charges)
    known: set[str] = set()
    with factory() as db:
        for start in range(0, len(pending), CHECK_BATCH):
            refs = [c.reference for c in pending[start:start + CHECK_BATCH]]
            known.update(db.scalars(select(Charge.gateway_reference).where(
                Charge.gateway_reference.in_(refs), Charge.status.in_(RECORDED))))
            known.update(db.scalars(select(Pass.gateway_reference).where(Pass.gateway_reference.in_(refs))))
    return [c for c in pending if c.reference not in known]


def _settle(db: Session, env: Env, charge: ProcessorCharge, at: datetime, done: Reconciled) -> None:
    if repo.locked_organization(db, charge.org_id) is None:
        return  # not one of ours (another installation on the same processor account): not ours to touch
    if _recorded(db, charge):
        return  # recorded since it was listed
    if is_pass_id(charge.invoice_id):  # a visitor's pass: made now if it waited for the bank, else refunded
        if complete_paid_checkout(db, env=env, pass_id=charge.invoice_id, reference=charge.reference,
                                  amount=charge.amount, at=at):
            done.completed.append(charge.invoice_id)
            return
        _refund(db, env, charge, None, at)
        done.refunded.append(charge.reference)
        return
    invoice = repo.invoice_in_org(db, charge.org_id, charge.invoice_id)
    if invoice is None and _recharge_queued(db, charge):
        done.waiting.append(charge.reference)
        return
    if invoice is None:
        catch_up(db, env=env, org_id=charge.org_id, at=at)  # a renewal redone reuses its key: paid with it
        if _recorded(db, charge):
            done.completed.append(charge.invoice_id)
            return
        invoice = repo.invoice_in_org(db, charge.org_id, charge.invoice_id)
    if invoice is not None:
        db.refresh(invoice)
    if invoice is not None and invoice.status == "open" and invoice.total == charge.amount \
            and invoice.currency.lower() == charge.currency.lower():
        settle_verification(db, env=env, org_id=charge.org_id, invoice_id=invoice.id,
                            result=ChargeResult.paid(charge.reference, amount=charge.amount), at=at)
        done.completed.append(invoice.id)
        return
    _refund(db, env, charge, invoice, at)
    done.refunded.append(charge.reference)


def _recorded(db: Session, charge: ProcessorCharge) -> bool:
    """A charge of ours records it, or a visitor's pass was sold with it (paid agents)."""
    return db.scalar(select(Charge.id).where(Charge.gateway_reference == charge.reference,
                                             Charge.status.in_(RECORDED)).limit(1)) is not None \
        or db.scalar(select(Pass.id).where(Pass.gateway_reference == charge.reference).limit(1)) is not None


def _recharge_queued(db: Session, charge: ProcessorCharge) -> bool:
    """Whether the organization's auto-recharge in flight is the one that issues this invoice (its
    job will charge again with the same key and be answered with this payment)."""
    standing = credits_repo.recharge_standing(db, charge.org_id)
    job_id = standing.recharge_job_id if standing is not None else None
    return job_id is not None and recharges.invoice_id_of_job(job_id) == charge.invoice_id


def _refund(db: Session, env: Env, charge: ProcessorCharge, invoice: Invoice | None, at: datetime) -> None:
    """Give the whole payment back and record it: a charge ``refunded`` (on its invoice, if that
    exists), so the payment is accounted for and never settled again."""
    # Refused if already given back: an earlier run refunded, then crashed before recording it.
    with suppress(RefundRefused):
        env.gateway.refund(reference=charge.reference, amount=charge.amount, refunded_before=0,
                           idempotency_key=f"slotwise-reconcile-{charge.reference}")
    db.add(Charge(id=new_id("ch"), org_id=charge.org_id, invoice_id=invoice.id if invoice is not None else None,
                  amount=charge.amount, currency=invoice.currency if invoice is not None else charge.currency,
                  status="refunded", failure_code="reconciled_refund", gateway_reference=charge.reference,
                  created_at=at))
    db.flush()
    trail.payment_refunded(db, org_id=charge.org_id, reference=charge.reference, amount=charge.amount,
                           currency=invoice.currency if invoice is not None else charge.currency,
                           invoice_id=invoice.id if invoice is not None else None, at=at)
