"""Billing → Add-ons & Extras: the cards, the Add Slots and Remove dialogs, and their preview calls; and the
Owner's page for a payment the bank asks them to verify (SCA)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form
from starlette.responses import Response

from slotwise import repositories as repo
from slotwise.api import present
from slotwise.api import schemas as s
from slotwise.api.idempotency import claim_once
from slotwise.api.schemas import OrganizationOut
from slotwise.capacity import AddonQuote
from slotwise.catalog import MAX_SLOTS_PER_CHANGE, MIN_SLOTS_PER_CHANGE
from slotwise.gateway import Verdict
from slotwise.models import Invoice
from slotwise.services import addons, organizations, topups, verification
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


# --- bank verification (SCA): the Owner's page for a payment the bank asks them to confirm ----------

VERIFY = "/billing/invoices/{invoice_id}/verify"
# Stripe.js and the bank's 3-D Secure frame it opens: the only outside origins this page lets in.
STRIPE_FRAMES = "https://js.stripe.com https://hooks.stripe.com"


@dataclass(frozen=True, slots=True)
class StripeVerification:
    """What Stripe.js needs on the page to let the customer confirm a payment with their bank."""

    js_url: str
    publishable_key: str
    client_secret: str
    payment_method: str | None


def _stripe_verification(page: Page, intent_id: str) -> StripeVerification | None:
    """With a real processor: the intent's client secret (from ``complete_verification``, which
    re-reads it) and the publishable key and Stripe.js address (from ``start_card_setup``, the one
    gateway call that answers them). The sandbox has its own stand-in page instead: None."""
    gateway, customer = page.env.gateway, page.org.processor_customer_id
    if gateway.name == "sandbox" or customer is None:
        return None
    state = gateway.complete_verification(intent_id=intent_id)
    setup = gateway.start_card_setup(customer_id=customer)
    if state.action is None or setup.js_url is None or setup.publishable_key is None:
        return None
    return StripeVerification(setup.js_url, setup.publishable_key, state.action.client_secret,
                              state.action.payment_method_id)


def _verify_page_refusal(page: Page) -> Response | None:
    if page.is_owner:
        return None
    return render(page.request, "error.html", {
        "page": page, "title": "Owner only",
        "message": "Only the organization owner can verify a payment with their bank."}, status_code=403)


@router.get(VERIFY)
def verify_page(invoice_id: str, page: PageDep) -> Response:
    refused = _verify_page_refusal(page)
    if refused is not None:
        return refused
    invoice = repo.invoice_in_org(page.db, page.org.id, invoice_id)
    if invoice is None:
        return render(page.request, "error.html", {
            "page": page, "title": "Invoice not found", "message": "There is no such invoice."}, status_code=404)
    waiting = invoice.status == "open" and invoice.action_intent is not None
    stripe = _stripe_verification(page, invoice.action_intent) if waiting and invoice.action_intent else None
    response = render(page.request, "verify.html", {
        "page": page, "nav": "billing", "invoice": invoice, "waiting": waiting, "stripe": stripe,
        "expired": waiting and page.now >= (verification.expires_at(invoice) if invoice.purchase is not None
                                            else invoice.period_end),
    })
    if stripe is not None:
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(stripe.js_url))
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self' {origin}; "
            f"frame-src {origin} {STRIPE_FRAMES}; connect-src 'self' {origin} https://api.stripe.com; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    return response


@router.post(VERIFY)
def verify_payment(invoice_id: str, page: FormDep, verdict: Annotated[str, Form()] = "") -> Response:
    """The stand-in bank's buttons (``verdict``) or, with Stripe, the page after Stripe.js confirmed
    the payment (no verdict: the processor says how it went)."""
    def action() -> Flash:
        answer: Verdict | None = "approve" if verdict == "approve" else "fail" if verdict == "fail" else None
        invoice = verification.verify(page.db, env=page.env, actor=page.actor, invoice_id=invoice_id,
                                      verdict=answer, at=page.now)
        if invoice.status != "paid":
            return Flash("info", f"Invoice #{invoice.number} is {invoice.status}; there is nothing to verify.")
        return Flash("success", verified_message(invoice),
                     f"{money(invoice.total, invoice.currency)} was charged (invoice #{invoice.number}).",
                     f"/billing/invoices/{invoice.id}", "View invoice")

    if page.is_owner and repo.invoice_in_org(page.db, page.org.id, invoice_id) is None:
        return render(page.request, "error.html", {
            "page": page, "title": "Invoice not found", "message": "There is no such invoice."}, status_code=404)
    return act(page, f"/billing/invoices/{invoice_id}", action)


def verified_message(invoice: Invoice) -> str:
    """What the verified payment bought, as the purchase's own success would have said it."""
    kind = json.loads(invoice.purchase).get("kind") if invoice.purchase else None
    if kind == "slots":
        return f"Payment verified. {addons.ADDED}"
    if kind == "credits":
        return f"Payment verified. {topups.ADDED}"
    if kind == "plan_start":
        return "Payment verified. Your plan is active."
    if kind == "upgrade":
        return "Payment verified. Your plan was upgraded."
    return "Payment verified. Your subscription is paid."
