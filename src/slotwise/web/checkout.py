"""The checkout page (SPEC §12): a plan, what its first invoice will be, and the card entry — the
sandbox's card-number field, or with Stripe a Stripe Elements card field whose number goes only to
Stripe (the browser confirms a SetupIntent and posts the ``pm_…`` id). ``?mode=card`` is the same
card entry alone: Billing's "Update card" leads there.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Form, Query
from starlette.responses import Response

from slotwise.api.idempotency import claim_once
from slotwise.errors import PaymentActionRequired, SlotwiseError
from slotwise.gateway.base import CardSetup
from slotwise.services import checkout, payments
from slotwise.services.checkout import CheckoutDone, CheckoutQuote
from slotwise.web.deps import FormDep, Page, PageDep, explain
from slotwise.web.portal import OVERVIEW, PLANS, card_updated
from slotwise.web.render import Flash, is_site_path, leave_flash, long_date, money, redirect, render

router = APIRouter(include_in_schema=False)
CHECKOUT = checkout.CHECKOUT_PATH
CANCELED = OVERVIEW + "?checkout=canceled"
PORTAL_CARD = "/billing/portal#payment-method"  # where a card update started from the portal returns
SANDBOX_CARDS = (  # the sandbox's test numbers (gateway/sandbox.py), as the form lists them
    ("4242 4242 4242 4242", "paid"),
    ("4000 0000 0000 0002", "declined"),
    ("4000 0025 0000 3155", "your bank asks you to verify"),
)
Field = Annotated[str, Form()]


def _back(plan: str, mode: str, came_from: str = "") -> str:
    if mode != "card":
        return f"{CHECKOUT}?{urlencode({'plan': plan})}"
    return f"{CHECKOUT}?{urlencode({'mode': 'card', 'from': 'portal'} if came_from == 'portal' else {'mode': 'card'})}"


def _card_home(came_from: str) -> str:
    """Where a card update returns: the billing portal if it started there, else the Billing overview."""
    return PORTAL_CARD if came_from == "portal" else OVERVIEW + "#payment-method"


def _processor_csp(setup: CardSetup) -> str:
    """The page's policy with the processor's script, frames and API let in (only on this page)."""
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(setup.js_url or ""))
    return (f"default-src 'self'; img-src 'self' data: {origin}; style-src 'self'; script-src 'self' {origin}; "
            f"connect-src 'self' {origin} https://api.stripe.com; "
            f"frame-src {origin} https://js.stripe.com https://hooks.stripe.com; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _owner_only(page: Page) -> Response:
    return render(page.request, "error.html", {
        "page": page, "title": "Owner Only",
        "message": "Checkout and the card on file are Owner Only. Ask your organization owner to make the change.",
    }, status_code=403)


@router.get(CHECKOUT)
def checkout_page(page: PageDep, plan: str = "", mode: str = "",
                  came_from: Annotated[str, Query(alias="from")] = "") -> Response:
    if not page.is_owner:
        return _owner_only(page)
    card_only = mode == "card"
    quote: CheckoutQuote | None = None
    if not card_only:
        try:
            quote = checkout.quote(page.db, env=page.env, actor=page.actor, plan_code=plan, at=page.now)
        except SlotwiseError as error:
            leave_flash(page.session, explain(error))
            return redirect(PLANS)
    setup = None
    if page.env.gateway.name == "stripe":
        setup = checkout.card_setup(page.db, env=page.env, actor=page.actor)
    response = render(page.request, "checkout.html", {
        "page": page, "nav": "billing" if card_only else "plans", "quote": quote, "card_only": card_only,
        "setup": setup, "submission": secrets.token_urlsafe(16), "sandbox_cards": SANDBOX_CARDS,
        "cancel_href": _card_home(came_from) if card_only else CANCELED,
        "came_from": "portal" if card_only and came_from == "portal" else "",
        "then": quote.period_end if quote is not None else None,
    })
    if setup is not None and setup.js_url:
        response.headers["Content-Security-Policy"] = _processor_csp(setup)
    return response


def _done(done: CheckoutDone, quote: CheckoutQuote) -> Flash:
    change, invoice, plan = done.change, done.change.invoice, done.plan
    if change.kind == "downgrade_scheduled":
        return Flash("success", f"Your card is saved. Your plan changes to {plan.name} on "
                     f"{long_date(change.effective_at)}.", "Nothing was charged today.")
    detail = []
    if invoice is not None:
        detail.append(f"{money(invoice.total, invoice.currency)} was charged today (invoice #{invoice.number}).")
    if quote.credits_now:
        detail.append(f"{quote.credits_now:,} credits were added.")
    return Flash("success", f"Your {plan.name} plan is active.", " ".join(detail) or None,
                 f"/billing/invoices/{invoice.id}" if invoice is not None else None,
                 "View invoice" if invoice is not None else None)


def _refused(error: SlotwiseError) -> Flash:
    if error.code in ("payment_failed", "card_declined"):
        return Flash("error", error.message,
                     "Nothing was charged and nothing changed. Check the card, or use another one.")
    return explain(error)


@router.post(CHECKOUT)
def submit(page: FormDep, plan: Field = "", mode: Field = "", payment_method: Field = "",
           card_number: Field = "", submission: Field = "",
           came_from: Annotated[str, Form(alias="from")] = "") -> Response:
    """Attach the card, then (unless ``mode=card``) subscribe; a refusal changes nothing and returns
    here with why; a payment the bank must verify goes to its verification page."""
    back = _back(plan, mode, came_from)
    # With the sandbox the number typed is its stand-in for a processor's payment method.
    method = payment_method.strip() or card_number
    savepoint = page.db.begin_nested()
    target, flash = OVERVIEW, None
    try:
        # The form's one-time id: a resubmitted checkout (double click, back button) never pays twice.
        if submission and not claim_once(page.db, scope=f"web:{page.org.id}", key=submission, now=page.now):
            savepoint.rollback()
            leave_flash(page.session, Flash("info", "This checkout was already submitted, so nothing more was "
                                                    "charged.", "Here is where it stands."))
            return redirect(OVERVIEW)
        if mode == "card":
            flash = card_updated(payments.update_payment_method(
                page.db, env=page.env, actor=page.actor, payment_method=method, at=page.now))
            target = _card_home(came_from)
        else:
            quote = checkout.quote(page.db, env=page.env, actor=page.actor, plan_code=plan, at=page.now)
            flash = _done(checkout.complete_checkout(page.db, env=page.env, actor=page.actor, plan_code=plan,
                                                     payment_method=method, at=page.now), quote)
    except PaymentActionRequired as error:  # the card and the open invoice stay; nothing granted yet
        savepoint.commit()
        url: Any = error.details.get("verify_url")
        flash, target = explain(error), url if isinstance(url, str) and is_site_path(url) else OVERVIEW
    except SlotwiseError as error:
        if error.keeps:
            savepoint.commit()
        else:
            savepoint.rollback()
        flash, target = _refused(error), back
    else:
        savepoint.commit()
    leave_flash(page.session, flash)
    return redirect(target)
