"""The card on file. Updating it retries every open invoice at once, or restarts an unpaid
subscription (SPEC §3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.errors import InvalidRequest
from slotwise.gateway.errors import GatewayError
from slotwise.models import Invoice, Organization
from slotwise.services import audit
from slotwise.services.context import Actor, Env, require_owner
from slotwise.services.invoices import attached_token
from slotwise.services.renewals import restart_unpaid, retry_invoice
from slotwise.services.snapshot import locked_org

MAX_TOKEN_LENGTH = 64  # organizations.card_token


@dataclass(frozen=True, slots=True)
class CardUpdate:
    organization: Organization
    retried: Sequence[Invoice] = ()  # open invoices collected again (paid or still open)
    voided: Sequence[str] = field(default_factory=list)  # stale invoices of an unpaid subscription
    restart_invoice: Invoice | None = None  # the new period of a restarted subscription, paid


def update_payment_method(db: Session, *, env: Env, actor: Actor, card_number: str | None = None,
                          payment_method: str | None = None, at: datetime) -> CardUpdate:
    """Store a new card (brand and last four only), then settle what is owed with it.

    ``payment_method`` is the processor's id for a card entered on its form (Stripe.js's ``pm_…``; the
    sandbox takes a test number there): it is attached to the organization's customer at the
    processor, created on first use, and refused there if the card is (``card_declined``).
    ``card_number`` is the sandbox's own form, which stores the number's behaviour.

    While ``past_due``, every open invoice is retried at once. While ``unpaid`` (dunning ended), the
    stale invoices are voided and a new period starts now, billed in full; if the new card is
    declined for that, nothing changes (``payment_failed``).
    """
    require_owner(actor, "Payment method changes")
    if (card_number is None) == (payment_method is None):
        raise InvalidRequest("Send either card_number or payment_method.", field="payment_method")
    org = locked_org(db, actor.org_id)
    before = {"brand": org.card_brand, "last4": org.card_last4}
    if payment_method is not None:
        customer_id = org.processor_customer_id or env.gateway.create_customer(reference=org.id, name=org.name).id
        card = env.gateway.attach_payment_method(customer_id=customer_id, payment_method=payment_method)
        token = attached_token(customer_id, card.token)
        if len(token) > MAX_TOKEN_LENGTH:
            raise GatewayError("The processor's ids are longer than slotwise stores.")
        org.processor_customer_id, org.card_token = customer_id, token
    else:
        card = env.gateway.store_card(card_number or "")
        org.card_token = card.token
    org.card_brand, org.card_last4 = card.brand, card.last4
    by = audit.by_user(db, actor)
    audit.record(db, org_id=org.id, by=by, kind="payment_method.updated", at=at, before=before,
                 after={"brand": card.brand, "last4": card.last4})
    sub = repo.current_subscription(db, org.id)
    if sub is not None and sub.status == "unpaid":
        voided, invoice = restart_unpaid(db, env=env, org=org, sub=sub, by=by, at=at)
        return CardUpdate(org, voided=voided, restart_invoice=invoice)
    open_ids = repo.open_invoice_ids_of_org(db, org.id)
    for invoice_id in open_ids:
        retry_invoice(db, env=env, org_id=org.id, invoice_id=invoice_id, by=by, at=at)
    return CardUpdate(org, retried=[inv for inv in (db.get(Invoice, i) for i in open_ids) if inv is not None])
