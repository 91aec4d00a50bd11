"""The public paywall (SPEC §13): ``/pay/{agent}`` — "This Chatbot is Monetized by the Creator". A
visitor, who has no slotwise account, buys a pass with an email and a card: the sandbox's card-number
field, or with Stripe a card Element whose number goes only to Stripe (the browser creates the
payment method and posts its ``pm_…`` id). The receipt shows the visitor token once.

No sign-in, so no session: the form carries a double-submit CSRF token (a cookie only this site's
pages set, SameSite=Lax, so another site's form arrives without it) and a one-time checkout id of its
own, which the service turns into the pass id and the charge's idempotency key — a resubmitted form
charges once and shows the first pass.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from slotwise.api.deps import AppState, SessionDep, StateDep, refuse_impossible_ids
from slotwise.errors import InvalidRequest, NotFound, PaymentActionRequired, SlotwiseError
from slotwise.services import paid_access
from slotwise.web.auth import account_email
from slotwise.web.deps import PageNotFound
from slotwise.web.render import is_site_path, redirect, render
from slotwise.web.sessions import secure_cookies

router = APIRouter(include_in_schema=False)
PAY_CSRF_COOKIE = "slotwise_pay_csrf"
HEADLINE = "This Chatbot is Monetized by the Creator"
SANDBOX_CARDS = (  # the sandbox's test numbers (gateway/sandbox.py), as the paywall lists them
    ("4242 4242 4242 4242", "paid"),
    ("4000 0000 0000 0341", "declined when charged"),
    ("4000 0000 0000 0002", "refused when entered"),
    ("4000 0025 0000 3155", "your bank asks you to verify"),
)
STRIPE_JS = "https://js.stripe.com/v3/"
Field = Annotated[str, Form()]
# Refusals after which the card was not charged: the page says so beside the reason.
NOT_CHARGED = {"payment_failed", "card_declined", "gateway_unavailable", "gateway_error", "invalid_request",
               "forbidden"}


def _csrf(request: Request) -> str:
    return request.cookies.get(PAY_CSRF_COOKIE) or secrets.token_urlsafe(32)


def _stripe(state: AppState) -> dict[str, str] | None:
    """Stripe.js and the publishable key, with ``SLOTWISE_GATEWAY=stripe`` (a local fake Stripe serves
    its stand-in Stripe.js under its API base, as the gateway's card setup says)."""
    if state.env.gateway.name != "stripe":
        return None
    base = state.settings.stripe_api_base
    js = f"{base.rstrip('/')}/js.stripe.com/v3/" if base else STRIPE_JS
    return {"js_url": js, "publishable_key": state.settings.stripe_publishable_key or ""}


def _stripe_csp(js_url: str) -> str:
    origin = "/".join(js_url.split("/")[:3])
    return (f"default-src 'self'; img-src 'self' data: {origin}; style-src 'self'; script-src 'self' {origin}; "
            f"connect-src 'self' {origin} https://api.stripe.com; "
            f"frame-src {origin} https://js.stripe.com https://hooks.stripe.com; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _not_for_sale(request: Request) -> Response:
    return render(request, "error.html", {
        "title": "This chatbot is not for sale",
        "message": "There is no paid chatbot at this address. Check the link you were given, or ask its creator.",
    }, status_code=404)


def _wall(request: Request, db: SessionDep) -> paid_access.Paywall | None:
    try:
        refuse_impossible_ids(request)  # the API's rule for ids, so a NUL never reaches a lookup
    except NotFound:
        raise PageNotFound() from None
    try:
        return paid_access.paywall(db, agent_id=request.path_params["agent_id"])
    except NotFound:
        return None


def _form(request: Request, state: AppState, wall: paid_access.Paywall, *, email: str = "",
          error: SlotwiseError | None = None, status_code: int = 200) -> Response:
    token, stripe = _csrf(request), _stripe(state)
    field = error.details.get("field") if error is not None else None
    response = render(request, "paywall.html", {
        "wall": wall, "headline": HEADLINE, "csrf": token, "checkout": secrets.token_urlsafe(18),
        "email": email, "error": error, "error_field": field if isinstance(field, str) else None,
        "not_charged": error is not None and error.code in NOT_CHARGED, "stripe": stripe,
        "sandbox_cards": SANDBOX_CARDS, "action": f"/pay/{wall.agent_id}",
    }, status_code=status_code)
    return _with_csrf(request, response, token, stripe)


def _with_csrf(request: Request, response: Response, token: str, stripe: dict[str, str] | None) -> Response:
    """A paywall form's response: its double-submit CSRF cookie, and with Stripe the page's policy."""
    response.set_cookie(PAY_CSRF_COOKIE, token, max_age=3600, path="/pay", httponly=True, samesite="lax",
                        secure=secure_cookies(request))
    if stripe is not None:
        response.headers["Content-Security-Policy"] = _stripe_csp(stripe["js_url"])
    return response


@router.get("/pay/{agent_id}")
def paywall_page(agent_id: str, request: Request, db: SessionDep, state: StateDep) -> Response:
    wall = _wall(request, db)
    return _not_for_sale(request) if wall is None else _form(request, state, wall)


@router.post("/pay/{agent_id}")
def buy(agent_id: str, request: Request, db: SessionDep, state: StateDep, email: Field = "",
        card_number: Field = "", payment_method: Field = "", checkout: Field = "", csrf_token: Field = "") -> Response:
    """The receipt with the visitor token; a refusal returns to the form with why (a new checkout id,
    since a declined attempt's id is spent at the processor); a resubmitted form shows its pass."""
    wall = _wall(request, db)
    if wall is None:
        return _not_for_sale(request)
    cookie = request.cookies.get(PAY_CSRF_COOKIE, "")
    typed_email = "".join(ch for ch in email if ch >= " ")[:320]
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf_token.encode()):
        expired = InvalidRequest("This form expired, so nothing was charged. Please try again.", field="form")
        return _form(request, state, wall, email=typed_email, error=expired, status_code=403)
    address = account_email(email)
    if address is None:
        wrong = InvalidRequest("Enter your email address, such as you@example.com.", field="email")
        return _form(request, state, wall, email=typed_email, error=wrong, status_code=422)
    # With the sandbox the number typed stands in for a processor's payment method.
    method = payment_method.strip() or card_number.strip()
    if not method:
        missing = InvalidRequest("Enter your card.", field="card")
        return _form(request, state, wall, email=typed_email, error=missing, status_code=422)
    now: datetime = state.clock.now(db)
    savepoint = db.begin_nested()
    try:
        bought = paid_access.buy_pass(db, env=state.env, agent_id=agent_id, email=address, payment_method=method,
                                      checkout_key=checkout, at=now)
    except PaymentActionRequired as error:  # the bank asks the visitor: the waiting checkout is kept
        savepoint.commit()
        url = error.details.get("verify_url")
        return redirect(url if isinstance(url, str) and is_site_path(url) else f"/pay/{agent_id}")
    except SlotwiseError as error:
        savepoint.rollback()
        if error.code == "not_found":
            return _not_for_sale(request)
        return _form(request, state, wall, email=typed_email, error=error, status_code=error.status)
    savepoint.commit()
    sold: Any = bought.pass_
    return render(request, "pay_receipt.html", {
        "wall": wall, "headline": HEADLINE, "sold": sold, "token": bought.visitor_token,
        "replayed": bought.replayed, "status": paid_access.status_of(sold, now),
    }, status_code=200 if bought.replayed else 201)


# --- a payment the visitor's bank must verify (SCA) -------------------------------------------------

def _stripe_action(state: AppState, intent_id: str) -> dict[str, str] | None:
    """With Stripe: what Stripe.js needs to show the bank's check (the intent's client secret)."""
    stripe = _stripe(state)
    if stripe is None:
        return None
    waiting = state.env.gateway.complete_verification(intent_id=intent_id)
    if waiting.action is None:
        return None  # answered already: the form's post settles it
    return {**stripe, "client_secret": waiting.action.client_secret,
            "payment_method": waiting.action.payment_method_id or ""}


@router.get("/pay/{agent_id}/verify")
def verify_page(agent_id: str, request: Request, db: SessionDep, state: StateDep, checkout: str = "") -> Response:
    """The pass's payment waiting for the visitor's bank: what it buys, and the bank's check (Stripe's
    3-D Secure, or the sandbox's stand-in bank). A pass already made shows its receipt."""
    wall = _wall(request, db)
    if wall is None:
        return _not_for_sale(request)
    waiting = paid_access.waiting_checkout(db, agent_id=agent_id, checkout_key=checkout[:128])
    if waiting is None:
        return render(request, "error.html", {
            "title": "Nothing to verify",
            "message": "No payment for this chatbot is waiting for your bank. If you paid, your receipt was shown "
                       "then; otherwise start again from the chatbot's page.",
        }, status_code=404)
    token, stripe = _csrf(request), _stripe_action(state, waiting.action_intent)
    response = render(request, "pay_verify.html", {
        "wall": wall, "headline": HEADLINE, "waiting": waiting, "csrf": token, "checkout": waiting.checkout_key,
        "stripe": stripe, "action": f"/pay/{agent_id}/verify",
    })
    return _with_csrf(request, response, token, stripe)


@router.post("/pay/{agent_id}/verify")
def verify(agent_id: str, request: Request, db: SessionDep, state: StateDep, checkout: Field = "",
           verdict: Field = "", csrf_token: Field = "") -> Response:
    """The bank's answer: the receipt with the token, or back to the paywall with why (nothing made)."""
    wall = _wall(request, db)
    if wall is None:
        return _not_for_sale(request)
    cookie = request.cookies.get(PAY_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf_token.encode()):
        expired = InvalidRequest("This form expired. Open the verification again from your bank's step.",
                                 field="form")
        return _form(request, state, wall, error=expired, status_code=403)
    now: datetime = state.clock.now(db)
    answer: Any = verdict if verdict in ("approve", "fail") else None
    savepoint = db.begin_nested()
    try:
        bought = paid_access.verify_pass(db, env=state.env, agent_id=agent_id, checkout_key=checkout[:128],
                                         verdict=answer, at=now)
    except SlotwiseError as error:
        if error.keeps:
            savepoint.commit()
        else:
            savepoint.rollback()
        if error.code == "verification_pending":
            return redirect(paid_access.verify_url(agent_id, checkout[:128]))
        return _form(request, state, wall, error=error, status_code=error.status)
    savepoint.commit()
    sold: Any = bought.pass_
    return render(request, "pay_receipt.html", {
        "wall": wall, "headline": HEADLINE, "sold": sold, "token": bought.visitor_token,
        "replayed": bought.replayed, "status": paid_access.status_of(sold, now),
    }, status_code=200 if bought.replayed else 201)
