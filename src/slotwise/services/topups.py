"""Top Up Now (SPEC §11): the Owner buys N packs of credits, charged at once to the card on file.

Invariant: credits land in the top-up pool only together with the paid invoice that bought them; a
declined card raises ``payment_failed`` and the caller's rollback leaves nothing behind; a payment the
bank asks the Owner to verify leaves the invoice open (``payment_action_required``) and the credits
land when it is verified (``verification``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from slotwise import credit_repository as credits_repo
from slotwise import repositories as repo
from slotwise.credit_repository import Balances
from slotwise.errors import NotFound, PaymentFailed, PaymentMethodRequired, PaymentRequired, SubscriptionRequired
from slotwise.gateway import ChargeResult
from slotwise.periods import Period
from slotwise.services import trail
from slotwise.services.audit import by_user
from slotwise.services.context import Actor, Env, require_owner
from slotwise.services.invoices import InvoiceRecord, LineDraft, action_required, charge_and_record

ADDED = "Credits added successfully."
NEEDS_SUBSCRIPTION = "Credits can be bought with an active subscription. Choose a paid plan first."
NEEDS_CARD = "A payment method is required to buy credits."
MIN_PACKS, MAX_PACKS = 1, 100


@dataclass(frozen=True, slots=True)
class TopUp:
    invoice: InvoiceRecord
    balance: Balances
    message: str = ADDED


def top_up(db: Session, *, env: Env, actor: Actor, packs: int, at: datetime) -> TopUp:
    """Charge ``packs`` packs on one invoice, then add their credits to the top-up pool.

    Five statements: the lock (taking the invoice number), the standing (subscription, card), the
    invoice with its line and charge, the pool with its ledger entry.
    """
    require_owner(actor, "Credit purchases")
    taken = repo.take_invoice_number(db, actor.org_id)
    standing = credits_repo.recharge_standing(db, actor.org_id)
    if taken is None or standing is None:
        raise NotFound("No such organization.")
    if standing.sub_id is None:
        raise SubscriptionRequired(NEEDS_SUBSCRIPTION)
    if standing.sub_status == "unpaid":
        raise PaymentRequired()
    if taken.card_token is None:
        raise PaymentMethodRequired(NEEDS_CARD)
    pack = env.catalog.credits.pack
    credits = packs * pack.credits
    period = Period(standing.period_index, standing.period_start, standing.period_end)
    line = LineDraft("credit", "credit_pack", f"Top-up credits × {credits:,}", packs, pack.price,
                     packs * pack.price, period, period.days, period.days)
    invoice = charge_and_record(db, env.gateway, org_id=actor.org_id, card_token=taken.card_token,
                                number=taken.number, kind="topup", subscription_id=standing.sub_id, period=period,
                                currency=pack.currency, lines=[line], at=at,
                                purchase=credits_purchase(credits, "topup"))
    if isinstance(invoice, ChargeResult):
        raise PaymentFailed(invoice.failure_message, decline_code=invoice.failure_code)
    if invoice.status == "open":
        raise action_required(db, org_id=actor.org_id, invoice=invoice, at=at)
    balance = credits_repo.credit_topup_pool(db, org_id=actor.org_id, credits=credits, kind="topup",
                                             invoice_id=invoice.id, at=at)
    trail.paid_purchase(db, org_id=actor.org_id, by=by_user(db, actor), kind="credits.topped_up", invoice=invoice,
                        at=at, before={"topup": balance.topup - credits}, after={"topup": balance.topup,
                                                                                "credits": credits})
    return TopUp(invoice, balance)


def credits_purchase(credits: int, ledger_kind: str) -> dict[str, object]:
    """What a credits invoice waiting for verification grants once paid (``ledger_kind``: ``topup`` or
    ``recharge``, the ledger entry's kind)."""
    return {"kind": "credits", "credits": credits, "ledger_kind": ledger_kind}
