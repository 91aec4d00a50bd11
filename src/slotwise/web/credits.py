"""Billing → the Credits panel (SPEC §11): both pools, the Top Up Now dialog and Auto-Recharge.

Every number comes from ``services.credits``; the two forms go through ``services.topups`` and
``services.recharges`` after the API's own validators (``TopUpIn``, ``AutoRechargeIn``), so a page and
an API call are refused for the same reasons, in the same words.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form
from pydantic import Field, ValidationError
from starlette.responses import Response

from slotwise.api import credit_schemas as cs
from slotwise.api import schemas as s
from slotwise.api.idempotency import claim_once
from slotwise.api.schemas import OrganizationOut
from slotwise.catalog import CreditPack
from slotwise.clock import wall_now
from slotwise.errors import InvalidRequest, OwnerOnly, PaymentRequired
from slotwise.services import recharges, topups
from slotwise.services.context import require_owner
from slotwise.services.credits import CreditsOverview, credits_overview
from slotwise.web.billing import org_overview
from slotwise.web.deps import FormDep, JsonPageDep, Page, act, quantity_or_none
from slotwise.web.render import Flash, long_date, money

router = APIRouter(include_in_schema=False)
CREDITS = "/billing/credits"
PURCHASES = "Credit purchases"  # "Credit purchases are Owner Only. …", as the service words it
ASK_PACKS = f"Enter how many packs to buy: a whole number from {topups.MIN_PACKS} to {topups.MAX_PACKS}."
ASK = {
    "threshold": "Enter the threshold as a whole number of credits, from 0 to 1,000,000,000.",
    "max_per_month": "Enter the max recharges per month as a whole number from 1 to 100.",
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why Top Up Now can't go through right now, and the one link that helps."""

    message: str
    href: str
    label: str


@dataclass(frozen=True, slots=True)
class CreditsPanel:
    view: CreditsOverview
    card: str | None  # "Visa ending in 4242"
    refusal: Refusal | None  # for the Owner: why Top Up Now would be refused
    top_up: dict[str, str] | None = None  # the dialog's first numbers (Owner only)
    submission: str = ""  # this render's one-time id for the Top Up Now form

    min_packs: int = topups.MIN_PACKS
    max_packs: int = topups.MAX_PACKS

    @property
    def pack(self) -> CreditPack:
        return self.view.auto_recharge.pack

    @property
    def pack_text(self) -> str:
        return pack_text(self.pack)

    @property
    def plan_left(self) -> str:
        return f"{self.view.plan_remaining:,} of {self.view.plan_allowance:,} left"

    @property
    def refills(self) -> str:
        when = self.view.refills_at
        if when is None:
            return "Refills once your current period is paid"
        return f"Refills on {when:%b} {when.day}"

    @property
    def recharges_used(self) -> str:
        ar = self.view.auto_recharge
        return f"{ar.used_this_month}/{ar.max_per_month} recharges used this month"

    @property
    def last_recharged(self) -> str:
        return long_date(self.view.auto_recharge.last_recharged_at) or "Never"


def pack_text(pack: CreditPack) -> str:
    return f"{pack.credits:,} credits for {money(pack.price, pack.currency)}"


def top_up_refusal(overview: OrganizationOut) -> Refusal | None:
    """Why ``topups.top_up`` would refuse now, in its words; it checks again when it charges."""
    sub = overview.subscription
    if sub is None or sub.status == "canceled":
        return Refusal(topups.NEEDS_SUBSCRIPTION, "/billing/plans", "See plans")
    if sub.status == "unpaid":
        return Refusal(PaymentRequired.default_message, "/billing#payment-method", "Update your card")
    if overview.payment_method is None:
        return Refusal(topups.NEEDS_CARD, "/billing#payment-method", "Add a card")
    return None


def top_up_display(pack: CreditPack, packs: int, refusal: Refusal | None) -> dict[str, str]:
    """The Top Up Now dialog's numbers; the same keys fill the page and the JSON updates."""
    return {
        "quantity": str(packs),
        "credits": f"{packs * pack.credits:,} credits",
        "charge_now": money(packs * pack.price, pack.currency),
        "message": refusal.message if refusal is not None else "",
    }


def credits_panel(page: Page, overview: OrganizationOut) -> CreditsPanel:
    view = credits_overview(page.db, page.env, page.org.id)
    card = overview.payment_method
    card_text = f"{card.brand.title()} ending in {card.last4}" if card is not None else None
    if not page.is_owner:
        return CreditsPanel(view, card_text, None)
    refusal = top_up_refusal(overview)
    return CreditsPanel(view, card_text, refusal, top_up_display(view.auto_recharge.pack, 1, refusal),
                        secrets.token_urlsafe(16))


def _packs(count: int | None) -> int:
    """A number of packs through the API's ``TopUpIn`` (1–100, a strict integer)."""
    try:
        return cs.TopUpIn.model_validate({"packs": count}).packs
    except ValidationError:
        raise InvalidRequest(ASK_PACKS, field="packs") from None


class TopUpPreview(s.Body):
    action: Literal["top-up"]
    quantity: int = Field(strict=True)


@router.post(CREDITS + "/top-up/preview")
def top_up_preview(body: TopUpPreview, page: JsonPageDep) -> dict[str, Any]:
    """The dialog's live price: what ``top_up`` charges for that many packs, or why it would refuse."""
    require_owner(page.actor, PURCHASES)
    packs = _packs(body.quantity)
    refusal = top_up_refusal(org_overview(page))
    return {"allowed": refusal is None, "display": top_up_display(page.env.catalog.credits.pack, packs, refusal)}


TextField = Annotated[str, Form()]


@router.post(CREDITS + "/top-up")
def top_up(page: FormDep, packs: TextField = "", submission: TextField = "") -> Response:
    def action() -> Flash:
        require_owner(page.actor, PURCHASES)
        # The form's one-time id: a resubmitted form (double click, back button, a retried POST)
        # must never charge the card twice.
        if submission and not claim_once(page.db, scope=f"web:{page.org.id}", key=submission, now=page.now):
            return Flash("error", "This purchase form was already submitted, so nothing more was charged.",
                         "Check your credits below before buying again.")
        count = _packs(quantity_or_none(packs))
        done = topups.top_up(page.db, env=page.env, actor=page.actor, packs=count, at=page.now)
        invoice, pack = done.invoice, page.env.catalog.credits.pack
        return Flash("success", done.message,
                     f"{count * pack.credits:,} credits were added to your Top-up Credits; "
                     f"{money(invoice.total, invoice.currency)} was charged (invoice #{invoice.number}).",
                     f"/billing/invoices/{invoice.id}", "View invoice")

    return act(page, "/billing#credits", action)


def _settings(enabled: str, threshold: str, max_per_month: str) -> recharges.RechargeSettings:
    """The form's settings, through the API's ``AutoRechargeIn`` (the checkbox sends ``on`` or nothing)."""
    if enabled not in ("", "on"):
        raise InvalidRequest("Turn auto-recharge on or off with its switch.", field="enabled")
    values = {"threshold": quantity_or_none(threshold), "max_per_month": quantity_or_none(max_per_month)}
    for field, value in values.items():
        if value is None:
            raise InvalidRequest(ASK[field], field=field)
    try:
        body = cs.AutoRechargeIn.model_validate({"enabled": enabled == "on", **values})
    except ValidationError as error:
        field = str(error.errors()[0]["loc"][0])
        raise InvalidRequest(ASK.get(field, "Check the auto-recharge settings."), field=field) from None
    return recharges.RechargeSettings(enabled=body.enabled, threshold=body.threshold,
                                      max_per_month=body.max_per_month)


@router.post(CREDITS + "/auto-recharge")
def save_auto_recharge(page: FormDep, enabled: TextField = "", threshold: TextField = "",
                       max_per_month: TextField = "") -> Response:
    def action() -> Flash:
        if not page.is_owner:  # who is asking before what they sent (the service refuses them too)
            raise OwnerOnly(recharges.OWNER_ONLY)
        settings = _settings(enabled, threshold, max_per_month)
        queued = recharges.update_settings(page.db, actor=page.actor, settings=settings, at=page.now,
                                           wall_now=wall_now())
        detail = None
        if queued is not None:
            detail = (f"Your balance is below {settings.threshold or 0:,} credits, so one pack "
                      f"({pack_text(page.env.catalog.credits.pack)}) is being bought now.")
        return Flash("success", recharges.SETTINGS_UPDATED, detail)

    return act(page, "/billing#auto-recharge", action)
