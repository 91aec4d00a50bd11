"""Who is looking at a page, and the guards every page and form goes through."""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Form, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from slotwise.api.deps import AppState, SessionDep, StateDep, refuse_impossible_ids, run_what_came_due
from slotwise.errors import Forbidden, InvalidRequest, NotFound, SlotwiseError, Unauthenticated
from slotwise.models import Organization, User, WebSession
from slotwise.services.context import Actor, Env
from slotwise.web.render import Flash, leave_flash, redirect
from slotwise.web.sessions import SESSION_COOKIE, find_session

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class LoginRequired(Exception):
    """No live web session: pages redirect to the sign-in page."""


class CsrfRejected(Exception):
    """A form arrived without this session's CSRF token."""


class PageNotFound(Exception):
    """The page's id can't name anything (it holds a control character): a 404 page."""


@dataclass(frozen=True, slots=True)
class Page:
    """A signed-in request: the database transaction, the billing time and the caller."""

    request: Request
    db: Session
    state: AppState
    now: datetime
    user: User
    org: Organization
    csrf: str
    session: WebSession

    @property
    def env(self) -> Env:
        return self.state.env

    @property
    def actor(self) -> Actor:
        return Actor(user_id=self.user.id, org_id=self.org.id, role=self.user.role)  # type: ignore[arg-type]

    @property
    def is_owner(self) -> bool:
        return self.user.role == "owner"

    @property
    def is_manager(self) -> bool:
        return self.user.role in ("owner", "admin")


def _page(request: Request, db: Session, state: AppState) -> Page | None:
    signed_in = find_session(db, request.cookies.get(SESSION_COOKIE))
    if signed_in is None:
        return None
    now = state.clock.now(db)
    run_what_came_due(state, db, org_id=signed_in.organization.id, at=now)  # no stale period on any page
    return Page(request=request, db=db, state=state, now=now, user=signed_in.user,
                org=signed_in.organization, csrf=signed_in.session.csrf_token, session=signed_in.session)


def signed_in_page(request: Request, db: SessionDep, state: StateDep) -> Page:
    page = _page(request, db, state)
    if page is None:
        raise LoginRequired()
    try:
        refuse_impossible_ids(request)  # the API's rule for ids, so a NUL never reaches a lookup
    except NotFound:
        raise PageNotFound() from None
    return page


def checked_form(page: Annotated[Page, Depends(signed_in_page)],
                 csrf_token: Annotated[str, Form()] = "") -> Page:
    """Every POST form carries the session's CSRF token in a hidden field."""
    if not hmac.compare_digest(csrf_token.encode(), page.csrf.encode()):
        raise CsrfRejected()
    return page


def checked_json(request: Request, db: SessionDep, state: StateDep) -> Page:
    """The dialogs' JSON calls: the session cookie plus the CSRF token in a header; errors as JSON."""
    page = _page(request, db, state)
    if page is None:
        raise Unauthenticated("Sign in again to continue.")
    if not hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode(), page.csrf.encode()):
        raise Forbidden("The CSRF token is missing or wrong. Reload the page.")
    refuse_impossible_ids(request)
    return page


PageDep = Annotated[Page, Depends(signed_in_page)]
FormDep = Annotated[Page, Depends(checked_form)]
JsonPageDep = Annotated[Page, Depends(checked_json)]


def act(page: Page, back: str, action: Callable[[], Flash]) -> Response:
    """Run a change and redirect to ``back`` with its message.

    The change runs in a savepoint: a refusal (say a declined card after the invoice was written)
    rolls back everything it did, exactly as the API's rollback would, and is explained instead.
    """
    savepoint = page.db.begin_nested()
    try:
        flash = action()
    except SlotwiseError as error:
        if error.keeps:  # an invoice left open for the customer's bank to verify
            savepoint.commit()
        else:
            savepoint.rollback()
        flash = explain(error)
    else:
        savepoint.commit()
    leave_flash(page.session, flash)
    return redirect(back)


def explain(error: SlotwiseError) -> Flash:
    """A refusal as the customer should read it, with the one link that helps."""
    details = error.details
    if error.code == "payment_failed":
        return Flash("error", error.message,
                     "Nothing was charged and nothing changed. Update your card, then try again.",
                     "/billing#payment-method", "Update your card")
    if error.code == "verification_pending" and isinstance(details.get("verify_url"), str):
        return Flash("error", error.message, None, details["verify_url"], "Verify the payment")
    if error.code == "payment_action_required" and isinstance(details.get("verify_url"), str):
        return Flash("error", error.message,
                     "Your bank asks you to confirm this payment. Nothing is charged or added until you do.",
                     details["verify_url"], "Verify the payment")
    if error.code in ("payment_method_required", "payment_required"):
        return Flash("error", error.message, None, "/billing#payment-method", "Update your card")
    if error.code == "below_usage":
        href, label = ("/team", "Go to Team") if details.get("resource") == "members" else ("/agents", "Go to Agents")
        return Flash("error", error.message, None, href, label)
    if error.code == "limit_reached" and details.get("addon"):
        return Flash("error", error.message, None, f"/billing/addons?add={details['addon']}", "Add slots")
    if error.code in ("teams_unavailable", "subscription_required"):
        return Flash("error", error.message, None, "/billing/plans", "See plans")
    if error.code == "addon_unavailable":
        return Flash("error", error.message, None, "/billing/addons", "Go to Add-ons & Extras")
    return Flash("error", error.message)


# A count of slots as a person types it: ASCII digits only. ``int()`` alone would also take
# ``1_0`` (ten), ``+3`` and other scripts' digits (``١٠``); ``str.isdigit`` passes ``²``, which
# ``int()`` then refuses.
_QUANTITY = re.compile(r"[0-9]{1,9}")


def quantity_or_none(text: str) -> int | None:
    """The one reading of a quantity for every page form and query parameter; None if not a count."""
    value = text.strip(" \t")
    return int(value) if _QUANTITY.fullmatch(value) else None


def parse_quantity(text: str, message: str) -> int:
    """A form's quantity, or ``invalid_request`` with ``message``; the service checks the range."""
    value = quantity_or_none(text)
    if value is None:
        raise InvalidRequest(message, field="quantity")
    return value
