"""Issuing invoices and collecting them through the card gateway."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from slotwise.errors import PaymentActionRequired
from slotwise.gateway import CardGateway, ChargeOutcome, ChargeResult, charge_key
from slotwise.gateway.base import ChargeRequest
from slotwise.gateway.errors import GatewayUnavailable
from slotwise.models import Charge, Invoice, InvoiceLine, Organization, new_id
from slotwise.periods import Period, short_range
from slotwise.services.trail import InvoiceLike, invoice_event


@dataclass(frozen=True, slots=True)
class LineDraft:
    kind: str  # plan | addon | credit
    code: str
    description: str
    quantity: int
    unit_price: int
    amount: int
    period: Period
    days_left: int
    days_in_period: int


def line_description(name: str, quantity: int | None, period: Period, days_left: int, start: datetime) -> str:
    """``Additional Chatbot Slots × 2, Nov 26 – Dec 15, 19/30 days`` (factor only when partial)."""
    label = f"{name} × {quantity}" if quantity is not None else name
    text = f"{label}, {short_range(start.date(), period.end.date())}"
    return text if days_left == period.days else f"{text}, {days_left}/{period.days} days"


def issue_invoice(
    db: Session,
    *,
    org: Organization,
    kind: str,
    subscription_id: str | None,
    period: Period,
    currency: str,
    lines: list[LineDraft],
    at: datetime,
    billing_key: str | None = None,
) -> Invoice:
    """A new open invoice numbered after the organization's last. Caller holds the org lock."""
    org.invoice_seq += 1
    invoice = Invoice(
        id=billed_invoice_id(billing_key) if billing_key is not None else new_id("inv"),
        org_id=org.id,
        number=org.invoice_seq,
        subscription_id=subscription_id,
        kind=kind,
        billing_key=billing_key,
        period_start=period.start,
        period_end=period.end,
        currency=currency,
        total=sum(line.amount for line in lines),
        status="open",
        created_at=at,
        attempt_count=0,
    )
    invoice.lines = [
        InvoiceLine(
            id=new_id("il"),
            org_id=org.id,
            position=position,
            kind=line.kind,
            code=line.code,
            description=line.description,
            quantity=line.quantity,
            unit_price=line.unit_price,
            amount=line.amount,
            period_start=line.period.start,
            period_end=line.period.end,
            days_left=line.days_left,
            days_in_period=line.days_in_period,
        )
        for position, line in enumerate(lines, start=1)
    ]
    db.add(invoice)
    db.flush()
    return invoice


def billed_invoice_id(billing_key: str) -> str:
    """The id of the invoice that bills ``billing_key`` (a period): the same in every process and
    after a crash, so its charge's idempotency key (``charge_key(id, attempt)``) is too — a renewal
    redone after the processor charged and before slotwise committed is answered with the payment
    already made, never a second one (reconciliation, SPEC §12)."""
    return "inv_" + hashlib.sha256(billing_key.encode()).hexdigest()[:28]


def attempt_charge(gateway: CardGateway, card_token: str | None, *, amount: int, currency: str,
                   invoice_id: str, attempt: int, org_id: str) -> ChargeResult:
    """One attempt at the card on file: a decline without a card, else one gateway call keyed by
    ``charge_key(invoice_id, attempt)``. Callers settle a total of zero or less without calling.

    A card attached through the processor (``payments.attached_token``: its customer and payment
    method) is charged off-session with the invoice and organization in the charge's metadata; a card
    number the sandbox stored itself is charged as before."""
    if card_token is None:
        return ChargeResult(False, "no_card", "no_payment_method", "There is no card on file.")
    idempotency_key = charge_key(invoice_id, attempt)
    attached = attached_card(card_token)
    if attached is None:
        return gateway.charge(token=card_token, amount=amount, currency=currency, idempotency_key=idempotency_key)
    customer_id, payment_method_id = attached
    return gateway.charge_off_session(ChargeRequest(
        customer_id=customer_id, payment_method_id=payment_method_id, amount=amount, currency=currency.lower(),
        idempotency_key=idempotency_key, invoice_id=invoice_id, org_id=org_id))


ATTACHED = " "  # separates the processor's customer and payment method in an attached card's token


def attached_token(customer_id: str, payment_method_id: str) -> str:
    """The card on file for a payment method attached to the processor's customer: both ids, which
    an off-session charge needs."""
    return f"{customer_id}{ATTACHED}{payment_method_id}"


def attached_card(card_token: str) -> tuple[str, str] | None:
    customer_id, separator, payment_method_id = card_token.partition(ATTACHED)
    return (customer_id, payment_method_id) if separator else None


def collect(db: Session, gateway: CardGateway, org: Organization, invoice: Invoice, at: datetime) -> ChargeResult:
    """Try to collect an open invoice; marks it paid only when the card was charged.

    The gateway's idempotency key is the invoice and attempt number, so a retried request never
    charges the same attempt twice at the processor.
    """
    invoice.attempt_count += 1
    if invoice.total <= 0:
        invoice.status, invoice.paid_at = "paid", at
        return ChargeResult(True, "no_charge")
    result = attempt_charge(gateway, org.card_token, amount=invoice.total, currency=invoice.currency,
                            invoice_id=invoice.id, attempt=invoice.attempt_count, org_id=org.id)
    db.add(
        Charge(
            id=new_id("ch"),
            org_id=org.id,
            invoice_id=invoice.id,
            amount=invoice.total,
            currency=invoice.currency,
            status="succeeded" if result.succeeded else "failed",
            failure_code=result.failure_code,
            gateway_reference=result.reference,
            created_at=at,
        )
    )
    # The payment waiting for the bank, if this attempt asked for one (a renewal stays in dunning
    # meanwhile: the Owner may verify it, or a later attempt may be paid or ask again).
    invoice.action_intent = result.action.intent_id if result.action is not None else None
    if result.succeeded:
        invoice.status, invoice.paid_at = "paid", at
    db.flush()
    return result


# --- the purchase path: charge first, then write the paid invoice, its lines and its charge ------

@dataclass(frozen=True, slots=True)
class LineRecord:
    description: str
    kind: str
    code: str
    quantity: int
    unit_price: int
    amount: int
    period_start: datetime
    period_end: datetime
    days_left: int
    days_in_period: int


@dataclass(frozen=True, slots=True)
class InvoiceRecord:
    """A paid invoice as just written (no ORM object on the purchase path)."""

    id: str
    number: int
    kind: str
    status: str
    currency: str
    total: int
    period_start: datetime
    period_end: datetime
    created_at: datetime
    paid_at: datetime | None
    lines: list[LineRecord]


def charge_and_record(
    db: Session, gateway: CardGateway, *, org_id: str, card_token: str | None, number: int, kind: str,
    subscription_id: str | None, period: Period, currency: str, lines: list[LineDraft], at: datetime,
    invoice_id: str | None = None, purchase: Mapping[str, Any] | None = None,
) -> InvoiceRecord | ChargeResult:
    """Charge the card for ``lines`` and, only if it succeeded, write the paid invoice numbered
    ``number``, its lines and its charge (three statements). A declined charge writes nothing and is
    returned, for the caller to refuse; the caller holds the organization lock and has taken
    ``number`` from the organization's counter in the same transaction. ``invoice_id`` (default: a new
    one) also keys the gateway's idempotency: work retried after a crash passes the same id so the
    card is charged once.

    A charge the customer's bank must verify (SCA) writes the invoice ``open`` with its lines, the
    processor's intent and ``purchase`` (what paying it grants; see ``verification``), never retried
    by the dunning, and returns it (status ``open``): the caller grants nothing and refuses with
    ``action_required``. Without ``purchase`` such a charge is returned like a decline. A processor
    that does not answer raises ``gateway_unavailable`` with nothing written.
    """
    invoice_id, total = invoice_id or new_id("inv"), sum(line.amount for line in lines)
    if total <= 0:
        result = ChargeResult(True, "no_charge")
    else:
        result = attempt_charge(gateway, card_token, amount=total, currency=currency, invoice_id=invoice_id,
                                attempt=1, org_id=org_id)
    if result.retryable:  # the processor did not answer: nothing is written, the same request may succeed
        raise GatewayUnavailable()
    waiting = result.outcome is ChargeOutcome.ACTION_REQUIRED and purchase is not None
    if not result.succeeded and not waiting:
        return result
    status, paid_at = ("paid", at) if result.succeeded else ("open", None)
    record = InvoiceRecord(
        invoice_id, number, kind, status, currency, total, period.start, period.end, at, paid_at,
        [LineRecord(d.description, d.kind, d.code, d.quantity, d.unit_price, d.amount, d.period.start, d.period.end,
                    d.days_left, d.days_in_period) for d in lines])
    db.execute(insert(Invoice), [{
        "id": invoice_id, "org_id": org_id, "number": number, "subscription_id": subscription_id, "kind": kind,
        "billing_key": None, "period_start": period.start, "period_end": period.end, "currency": currency,
        "total": total, "status": status, "created_at": at, "paid_at": paid_at, "attempt_count": 1,
        "next_retry_at": None, "action_intent": result.action.intent_id if waiting and result.action else None,
        "purchase": json.dumps(dict(purchase), sort_keys=True) if waiting and purchase is not None else None}])
    db.execute(insert(InvoiceLine), [{
        "id": new_id("il"), "invoice_id": invoice_id, "org_id": org_id, "position": position, "kind": line.kind,
        "code": line.code, "description": line.description, "quantity": line.quantity,
        "unit_price": line.unit_price, "amount": line.amount, "period_start": line.period_start,
        "period_end": line.period_end, "days_left": line.days_left, "days_in_period": line.days_in_period,
    } for position, line in enumerate(record.lines, start=1)])
    if total > 0 and result.succeeded:
        db.execute(insert(Charge), [{
            "id": new_id("ch"), "org_id": org_id, "invoice_id": invoice_id, "amount": total, "currency": currency,
            "status": "succeeded", "failure_code": None, "gateway_reference": result.reference, "created_at": at}])
    return record


def verify_url(invoice_id: str) -> str:
    """The Owner's page for a payment the bank asks them to verify."""
    return f"/billing/invoices/{invoice_id}/verify"


def action_required(db: Session, *, org_id: str, invoice: InvoiceRecord, at: datetime) -> PaymentActionRequired:
    """The refusal of a purchase left open for verification: it keeps the open invoice (``keeps``),
    and ``payment.action_required``, written here, with it."""
    waiting(db, org_id=org_id, invoice=invoice, at=at)
    return PaymentActionRequired(
        f"Payment needs verification: your bank asks you to confirm the payment of invoice #{invoice.number}. "
        "Nothing is added until it is confirmed.",
        invoice=invoice.id, verify_url=verify_url(invoice.id))


def waiting(db: Session, *, org_id: str, invoice: InvoiceLike, at: datetime) -> None:
    """Tell the platform a payment waits for the customer's bank (``payment.action_required``)."""
    invoice_event(db, "payment.action_required", org_id=org_id, invoice=invoice, at=at,
                  verify_url=verify_url(invoice.id))
