"""Billing → Add-ons & Extras: the cards, the Add Slots and Remove dialogs, and their preview calls."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form
from starlette.responses import Response

from slotwise.api import present
from slotwise.api import schemas as s
from slotwise.api.idempotency import claim_once
from slotwise.api.schemas import OrganizationOut
from slotwise.capacity import AddonQuote
from slotwise.catalog import MAX_SLOTS_PER_CHANGE, MIN_SLOTS_PER_CHANGE
from slotwise.services import addons, organizations
from slotwise.services.addons import AddonView
from slotwise.web.deps import FormDep, JsonPageDep, Page, PageDep, act, parse_quantity, quantity_or_none
from slotwise.web.render import Flash, long_date, money, plural, render

router = APIRouter(include_in_schema=False)
ADDONS = "/billing/addons"
NOUNS = {"agents": ("agent", "agents"), "members": ("team member", "team members")}
BLURBS = {
    "agents": ("More agents beyond your plan's limit",
               "Launch a separate agent for a new brand, product or audience."),
    "members": ("More seats for people in your organization",
                "Bring in extra teammates to build agents or handle conversations."),
}


def org_overview(page: Page) -> OrganizationOut:
    """The organization as the API presents it: plan, period, capacity per resource, monthly total."""
    summary = organizations.organization_summary(page.db, env=page.env, org_id=page.org.id)
    return present.organization(summary, page.env.catalog.plan(summary.plan_code), page.now)


def quote_display(q: AddonQuote) -> dict[str, str]:
    """A quote's numbers as the dialogs show them; the same keys fill the page and the JSON updates."""
    currency, (one, many) = q.addon.currency, NOUNS[q.addon.resource]
    refusal = q.refusal
    must_free = refusal.details.get("must_free") if refusal is not None else None
    to_free = ""
    if isinstance(must_free, int):
        to_free = (f"Agents to archive or delete first: {must_free}" if q.addon.resource == "agents"
                   else f"Members to remove or invitations to revoke first: {must_free}")
    return {
        "quantity": str(q.quantity),
        "price_per_slot": money(q.price_per_slot, currency),
        "charge_now": money(q.charge_now, currency),
        "proration": (f"Pro-rated: {q.days_left} of {q.days_in_period} days left in this billing period."
                      if q.days_left is not None and q.days_in_period else ""),
        "current_monthly_total": money(q.current_monthly_total, currency),
        "new_monthly_total": money(q.new_monthly_total, currency),
        "current_slots": f"+{plural(q.current_slots, 'slot')}",
        "new_slots": f"+{plural(q.new_slots, 'slot')}",
        "removing": plural(q.quantity, "slot"),
        "current_capacity": plural(q.current_capacity, one, many),
        "new_capacity": plural(q.new_capacity, one, many),
        "effective_at": long_date(q.effective_at),
        "message": refusal.message if refusal is not None else "",
        "must_free": to_free,
    }


@dataclass(frozen=True, slots=True)
class AddonCard:
    view: AddonView
    used: int
    total: int
    blurb: tuple[str, str]
    add: dict[str, str] | None = None  # the Add Slots dialog's first numbers (Owner only)
    submission: str = ""  # this render's one-time id for the Add Slots form
    add_allowed: bool = False
    remove: dict[str, str] | None = None
    remove_allowed: bool = False
    remove_all: dict[str, str] | None = None
    remove_all_allowed: bool = False

    @property
    def code(self) -> str:
        return self.view.addon.code

    @property
    def scheduled_removal(self) -> int:
        return self.view.active_slots - self.view.renewal_slots

    @property
    def max_remove(self) -> int:
        return min(self.view.renewal_slots, MAX_SLOTS_PER_CHANGE)


def _card(page: Page, view: AddonView, overview: OrganizationOut, add_quantity: int) -> AddonCard:
    capacity = overview.capacity[view.addon.resource]
    card = AddonCard(view, capacity.used, capacity.total, BLURBS[view.addon.resource])
    if not page.is_owner or not view.available:
        return card
    quote = addons.preview(page.db, env=page.env, actor=page.actor, addon_code=view.addon.code, action="add",
                           quantity=add_quantity, at=page.now)
    extra: dict[str, Any] = {"add": quote_display(quote), "add_allowed": quote.allowed,
                             "submission": secrets.token_urlsafe(16)}
    if view.renewal_slots > 0:
        one = addons.preview(page.db, env=page.env, actor=page.actor, addon_code=view.addon.code,
                             action="remove", quantity=1, at=page.now)
        every = addons.preview(page.db, env=page.env, actor=page.actor, addon_code=view.addon.code,
                               action="remove", quantity=None, at=page.now)
        extra |= {"remove": quote_display(one), "remove_allowed": one.allowed,
                  "remove_all": quote_display(every), "remove_all_allowed": every.allowed}
    return AddonCard(view, capacity.used, capacity.total, BLURBS[view.addon.resource], **extra)


@router.get(ADDONS)
def addons_page(page: PageDep, add: str = "", remove: str = "", quantity: str = "1") -> Response:
    """``?add=<code>`` opens that add-on's Add Slots dialog (where "Buy more seats" lands)."""
    overview = org_overview(page)
    wanted = quantity_or_none(quantity) or 1
    wanted = min(max(wanted, MIN_SLOTS_PER_CHANGE), MAX_SLOTS_PER_CHANGE)
    cards = [_card(page, view, overview, wanted if view.addon.code == add else 1)
             for view in addons.list_addons(page.db, env=page.env, actor=page.actor)]
    codes = {c.code for c in cards}
    open_dialog = f"add-{add}" if add in codes else f"remove-{remove}" if remove in codes else ""
    return render(page.request, "addons.html", {
        "page": page, "nav": "addons", "overview": overview, "cards": cards, "open_dialog": open_dialog,
        "min_qty": MIN_SLOTS_PER_CHANGE, "max_qty": MAX_SLOTS_PER_CHANGE,
    })


@router.post(ADDONS + "/{code}/preview")
def preview(code: str, body: s.PreviewRequest, page: JsonPageDep) -> dict[str, Any]:
    """The dialogs' live numbers: exactly the quote ``add`` / ``remove`` will use, as the API shows it."""
    quote = addons.preview(page.db, env=page.env, actor=page.actor, addon_code=code, action=body.action,
                           quantity=None if body.all else body.quantity, at=page.now)
    return {**present.preview(quote).model_dump(mode="json"), "display": quote_display(quote)}


Quantity = Annotated[str, Form()]


@router.post(ADDONS + "/{code}/add")
def add_slots(code: str, page: FormDep, quantity: Quantity = "",
              submission: Annotated[str, Form()] = "") -> Response:
    def action() -> Flash:
        # The form's one-time id: a resubmitted form (double click, back button, a retried POST)
        # must never charge the card twice.
        if submission and not claim_once(page.db, scope=f"web:{page.org.id}", key=submission, now=page.now):
            return Flash("error", "This purchase form was already submitted, so nothing more was charged.",
                         "Check your add-ons below before buying again.")
        count = parse_quantity(quantity, "Enter how many slots to add, in digits.")
        change = addons.add_slots(page.db, env=page.env, actor=page.actor, addon_code=code, quantity=count,
                                  at=page.now)
        invoice = change.invoice
        if invoice is None:
            return Flash("success", change.message)
        return Flash("success", change.message,
                     f"{money(invoice.total, invoice.currency)} was charged today (invoice #{invoice.number}).",
                     f"/billing/invoices/{invoice.id}", "View invoice")

    return act(page, ADDONS, action)


@router.post(ADDONS + "/{code}/remove")
def remove_slots(code: str, page: FormDep, quantity: Quantity = "",
                 all: Annotated[str, Form()] = "") -> Response:
    def action() -> Flash:
        count = None if all else parse_quantity(quantity, "Enter how many slots to remove, in digits.")
        change = addons.remove_slots(page.db, env=page.env, actor=page.actor, addon_code=code, quantity=count,
                                     at=page.now)
        return Flash("success", change.message,
                     f"The change takes effect on {long_date(change.quote.effective_at)}, your next billing date. "
                     "No refund is issued for the current billing period.")

    return act(page, ADDONS, action)


@router.post(ADDONS + "/{code}/keep")
def keep_slots(code: str, page: FormDep) -> Response:
    def action() -> Flash:
        view = addons.keep_slots(page.db, env=page.env, actor=page.actor, addon_code=code, at=page.now)
        return Flash("success", addons.KEPT, f"You keep +{plural(view.active_slots, 'slot')} of {view.addon.name}.")

    return act(page, ADDONS, action)
