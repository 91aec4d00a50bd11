"""What a billing change leaves besides itself (SPEC §14): its event for the platform (``events``, the
outbox) and its entry for the Owner (``audit``), both written in the change's own transaction.

The shapes several services share live here, so an add-on, a plan or an invoice reads the same
whichever path changed it (the Owner, the bank's verification, a renewal). Payloads are small: ids
and the new state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.capacity import Slots
from slotwise.services import audit, events


@contextmanager
def written_together(db: Session) -> Iterator[None]:
    """The events and audit entries of the block collected, and written at its end with a statement or
    two per table, instead of three or four statements per change: the renewal sweep's batch renews
    hundreds of organizations in one transaction. The same rows in the same order, in the same
    transaction; a block that raises writes none of them. Nested blocks write with the outermost."""
    if events.COLLECTED in db.info:
        yield
        return
    collected_events: list[dict[str, Any]] = []
    collected_entries: list[dict[str, Any]] = []
    db.info[events.COLLECTED], db.info[audit.COLLECTED] = collected_events, collected_entries
    try:
        yield
    finally:
        del db.info[events.COLLECTED], db.info[audit.COLLECTED]
    if all(entry["actor_label"] is not None for entry in collected_entries):
        repo.insert_audit_entries(db, collected_entries)
    else:  # a user's email is read by each one's INSERT
        db.execute(audit.INSERT, collected_entries)
    if collected_events:
        events.write_many(db, collected_events)


class InvoiceLike(Protocol):
    """An ``Invoice`` or an ``InvoiceRecord`` (the purchase path's, as just written)."""

    @property
    def id(self) -> str: ...
    @property
    def number(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def total(self) -> int: ...
    @property
    def currency(self) -> str: ...


def invoice_data(invoice: InvoiceLike) -> dict[str, Any]:
    return {"invoice": invoice.id, "number": invoice.number, "kind": invoice.kind, "status": invoice.status,
            "amount": invoice.total, "currency": invoice.currency}


def invoice_event(db: Session, type: str, *, org_id: str, invoice: InvoiceLike, at: datetime,
                  **extra: Any) -> None:
    """``invoice.paid``, ``invoice.payment_failed`` or ``payment.action_required`` about ``invoice``."""
    events.emit(db, org_id=org_id, type=type, data={**invoice_data(invoice), **extra}, at=at)


def paid_purchase(db: Session, *, org_id: str, by: audit.By, kind: str, invoice: InvoiceLike, at: datetime,
                  subject_id: str | None = None, before: Mapping[str, Any] | None = None,
                  after: Mapping[str, Any] | None = None) -> None:
    """A purchase paid at once: ``invoice.paid`` and the entry naming what it bought, with its money."""
    invoice_event(db, "invoice.paid", org_id=org_id, invoice=invoice, at=at)
    audit.record(db, org_id=org_id, by=by, kind=kind, at=at, subject_id=subject_id, before=before, after=after,
                 amount=invoice.total, currency=invoice.currency, invoice_id=invoice.id)


def slots_state(slots: Slots) -> dict[str, int]:
    return {"active_slots": slots.active, "renewal_slots": slots.renewal}


def addon_changed(db: Session, *, org_id: str, by: audit.By, kind: str, addon: str, before: Slots, after: Slots,
                  at: datetime, effective_at: datetime, invoice: InvoiceLike | None = None) -> None:
    """``addon.updated`` and its entry (``kind``: ``addon.added``, ``addon.removal_scheduled`` …);
    ``effective_at`` is when the new capacity applies (now, or the next billing date)."""
    events.emit(db, org_id=org_id, type="addon.updated", at=at, data={
        "addon": addon, "change": kind.removeprefix("addon."), **slots_state(after),
        "previous": slots_state(before), "effective_at": effective_at,
        "invoice": invoice.id if invoice is not None else None})
    audit.record(db, org_id=org_id, by=by, kind=kind, at=at, subject_id=addon, before=slots_state(before),
                 after=slots_state(after), amount=invoice.total if invoice is not None else None,
                 currency=invoice.currency if invoice is not None else None,
                 invoice_id=invoice.id if invoice is not None else None)


def subscription_changed(db: Session, *, org_id: str, by: audit.By, kind: str, subscription: str | None,
                         before: Mapping[str, Any], after: Mapping[str, Any], at: datetime,
                         invoice: InvoiceLike | None = None, amount: bool = True) -> None:
    """``subscription.updated`` (the new state: ``after``) and its entry (``kind``: ``plan.upgraded``,
    ``subscription.renewed`` …). ``amount``: the invoice's money moved with this change (not so for a
    declined renewal, whose invoice stays owed)."""
    events.emit(db, org_id=org_id, type="subscription.updated", at=at, data={
        "subscription": subscription, "change": kind, **after,
        "invoice": invoice.id if invoice is not None else None})
    moved = invoice is not None and amount
    audit.record(db, org_id=org_id, by=by, kind=kind, at=at, subject_id=subscription, before=before, after=after,
                 amount=invoice.total if moved and invoice is not None else None,
                 currency=invoice.currency if moved and invoice is not None else None,
                 invoice_id=invoice.id if invoice is not None else None)


def plan_state(plan: str, status: str | None, scheduled: str | None, period_end: datetime | None) -> dict[str, Any]:
    """What ``subscription.updated`` and a plan entry say of a subscription."""
    return {"plan": plan, "status": status, "scheduled_plan": scheduled, "period_end": period_end}


@dataclass(frozen=True, slots=True)
class InvoiceFacts:
    """An invoice the sweep writes as a plain row (``renewals.batch``), as events tell it."""

    id: str
    number: int
    kind: str
    status: str
    total: int
    currency: str

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> InvoiceFacts:
        return cls(row["id"], row["number"], row["kind"], row["status"], row["total"], row["currency"])


def invoice_expired(db: Session, *, org_id: str, invoice: InvoiceLike, at: datetime) -> None:
    """A purchase whose bank verification ran out of time, made void by the billing run: for the
    platform ``invoice.payment_failed`` (``reason``: ``verification_expired``), for the Owner
    ``invoice.voided``, slotwise's."""
    invoice_event(db, "invoice.payment_failed", org_id=org_id, invoice=invoice, at=at, reason="verification_expired")
    audit.record(db, org_id=org_id, by=audit.SYSTEM, kind="invoice.voided", at=at, subject_id=invoice.id,
                 before={"status": "open"}, after={"status": invoice.status, "reason": "verification_expired"},
                 invoice_id=invoice.id)


def payment_refunded(db: Session, *, org_id: str, reference: str, amount: int, currency: str,
                     invoice_id: str | None, at: datetime) -> None:
    """A processor payment slotwise could not apply (reconciliation: its purchase never committed,
    or its invoice was void or paid otherwise), given back in full: the Owner's entry, with the
    money. §14 has no event for it; the platform learns nothing new (no purchase it was told of)."""
    audit.record(db, org_id=org_id, by=audit.SYSTEM, kind="payment.refunded", at=at, subject_id=reference,
                 after={"reason": "reconciled_refund"}, amount=amount, currency=currency, invoice_id=invoice_id)


def invoice_settled(db: Session, *, org_id: str, by: audit.By, invoice: InvoiceLike, paid: bool,
                    at: datetime) -> None:
    """An owed invoice paid or declined on a later attempt (a retry, a new card, the bank's
    verification): ``invoice.paid`` or ``invoice.payment_failed``, and its entry (money, if paid)."""
    kind = "invoice.paid" if paid else "invoice.payment_failed"
    invoice_event(db, kind, org_id=org_id, invoice=invoice, at=at)
    audit.record(db, org_id=org_id, by=by, kind=kind, at=at, subject_id=invoice.id,
                 after={"status": invoice.status}, amount=invoice.total if paid else None,
                 currency=invoice.currency if paid else None, invoice_id=invoice.id)
