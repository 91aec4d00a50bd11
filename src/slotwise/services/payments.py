"""The card on file. Updating it retries every open invoice at once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.models import Invoice, Organization
from slotwise.services.context import Actor, Env, require_owner
from slotwise.services.renewals import retry_invoice
from slotwise.services.snapshot import locked_org


def update_payment_method(
    db: Session, *, env: Env, actor: Actor, card_number: str, at: datetime
) -> tuple[Organization, Sequence[Invoice]]:
    """Store a new card (brand and last four only) and retry the organization's open invoices."""
    require_owner(actor)
    card = env.gateway.store_card(card_number)
    org = locked_org(db, actor.org_id)
    org.card_token, org.card_brand, org.card_last4 = card.token, card.brand, card.last4
    open_ids = repo.open_invoice_ids_of_org(db, org.id)
    for invoice_id in open_ids:
        retry_invoice(db, env=env, org_id=org.id, invoice_id=invoice_id, at=at, scheduled=False)
    return org, [inv for inv in (db.get(Invoice, i) for i in open_ids) if inv is not None]
