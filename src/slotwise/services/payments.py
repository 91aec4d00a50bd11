"""The card on file. Updating it retries every open invoice at once, or restarts an unpaid
subscription (SPEC §3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.models import Invoice, Organization
from slotwise.services.context import Actor, Env, require_owner
from slotwise.services.renewals import restart_unpaid, retry_invoice
from slotwise.services.snapshot import locked_org


@dataclass(frozen=True, slots=True)
class CardUpdate:
    organization: Organization
    retried: Sequence[Invoice] = ()  # open invoices collected again (paid or still open)
    voided: Sequence[str] = field(default_factory=list)  # stale invoices of an unpaid subscription
    restart_invoice: Invoice | None = None  # the new period of a restarted subscription, paid


def update_payment_method(db: Session, *, env: Env, actor: Actor, card_number: str, at: datetime) -> CardUpdate:
    """Store a new card (brand and last four only), then settle what is owed with it.

    While ``past_due``, every open invoice is retried at once. While ``unpaid`` (dunning ended), the
    stale invoices are voided and a new period starts now, billed in full; if the new card is
    declined for that, nothing changes (``payment_failed``).
    """
    require_owner(actor, "Payment method changes")
    card = env.gateway.store_card(card_number)
    org = locked_org(db, actor.org_id)
    org.card_token, org.card_brand, org.card_last4 = card.token, card.brand, card.last4
    sub = repo.current_subscription(db, org.id)
    if sub is not None and sub.status == "unpaid":
        voided, invoice = restart_unpaid(db, env=env, org=org, sub=sub, at=at)
        return CardUpdate(org, voided=voided, restart_invoice=invoice)
    open_ids = repo.open_invoice_ids_of_org(db, org.id)
    for invoice_id in open_ids:
        retry_invoice(db, env=env, org_id=org.id, invoice_id=invoice_id, at=at)
    return CardUpdate(org, retried=[inv for inv in (db.get(Invoice, i) for i in open_ids) if inv is not None])
