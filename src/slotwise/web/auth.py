"""Signing in and out, and accepting an invitation (which signs the new member in)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Request
from pydantic import TypeAdapter, ValidationError
from starlette.responses import Response

from slotwise import repositories as repo
from slotwise.api.deps import SessionDep, StateDep
from slotwise.api.schemas import AcceptInvitation, Email
from slotwise.errors import RateLimited, SlotwiseError
from slotwise.models import User
from slotwise.security import hash_secret, verify_password
from slotwise.services import limits, members
from slotwise.web.deps import FormDep
from slotwise.web.render import Flash, is_site_path, leave_flash, notice_flash, redirect, render
from slotwise.web.sessions import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    clear_session_cookie,
    end_session,
    find_session,
    login_csrf,
    set_login_csrf_cookie,
    set_session_cookie,
    start_session,
)

router = APIRouter(include_in_schema=False)
HOME = "/billing/addons"
_EMAIL = TypeAdapter(Email)
# Why a refused invitation sends the person to sign in: a fixed notice per error code.
_INVITATION_NOTICES = {"not_found": "invitation-invalid", "email_taken": "invitation-email-taken",
                       "invitation_withdrawn": "invitation-withdrawn"}

TextField = Annotated[str, Form()]


def safe_next(target: str | None) -> str:
    """Only a path on this site (never ``//host`` or a scheme) may be a post-login destination."""
    return target if target is not None and is_site_path(target) else HOME


def account_email(typed: str) -> str | None:
    """The address as the API would accept it, or None when the text can't be an email address."""
    try:
        return _EMAIL.validate_python(typed)
    except ValidationError:
        return None


def _printable(text: str) -> str:
    return "".join(ch for ch in text if ch >= " " and ch != "\x7f")[:320]


@router.get("/")
def home(request: Request, db: SessionDep) -> Response:
    signed_in = find_session(db, request.cookies.get(SESSION_COOKIE))
    return redirect(HOME if signed_in else "/login")


def _login_page(request: Request, *, email: str = "", error: str | None = None, next_path: str = "",
                flash: Flash | None = None, status_code: int = 200) -> Response:
    token = login_csrf(request)
    response = render(request, "login.html", {"csrf": token, "email": _printable(email), "error": error,
                                              "next": next_path if is_site_path(next_path) else "",
                                              "flash": flash}, status_code=status_code)
    set_login_csrf_cookie(request, response, token)
    return response


@router.get("/login")
def login_form(request: Request, next: str = "", notice: str = "") -> Response:
    return _login_page(request, next_path=next, flash=notice_flash(notice))


@router.post("/login")
def login(request: Request, db: SessionDep, state: StateDep, email: TextField = "", password: TextField = "",
          csrf_token: TextField = "", next: TextField = "") -> Response:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf_token.encode()):
        return _login_page(request, email=email, next_path=next, status_code=403,
                           error="Your sign-in form expired. Please try again.")
    now, address = state.clock.now(db), request.client.host if request.client else "unknown"
    try:
        attempt = limits.begin_login_attempt(db, email=email, address=address, at=now)
    except RateLimited as limited:
        response = _login_page(request, email=email, next_path=next, status_code=429, error=limited.message)
        response.headers["Retry-After"] = str(limited.details["retry_after"])
        return response
    typed = account_email(email)  # text that can't be an address is no account, at the same cost
    user = repo.user_by_email(db, typed) if typed else None
    password_hash = user.password_hash if user else None
    # The attempt is committed as a failure before the slow hash: that ends the lock that made the
    # count exact, so concurrent guesses wait only for each other's count, never for a hash.
    db.commit()
    valid = verify_password(password_hash, password)  # one argon2 verification, account or not
    if user is None or not valid:
        return _login_page(request, email=email, next_path=next, status_code=401,
                           error="That email and password don't match an account.")
    limits.forgive_login_attempt(db, attempt)
    return _signed_in(request, db, user, safe_next(next))


def _signed_in(request: Request, db: SessionDep, user: User, to: str, flash: Flash | None = None) -> Response:
    token, session = start_session(db, user=user, replacing=request.cookies.get(SESSION_COOKIE))
    leave_flash(session, flash)
    response = redirect(to)
    set_session_cookie(request, response, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@router.post("/logout")
def logout(page: FormDep) -> Response:
    request = page.request
    end_session(page.db, request.cookies.get(SESSION_COOKIE, ""))
    response = redirect("/login?notice=signed-out")
    clear_session_cookie(request, response)
    return response


def _accept_page(request: Request, db: SessionDep, token: str, *, error: str | None = None,
                 status_code: int = 200) -> Response:
    invitation = repo.invitation_by_token_hash(db, hash_secret(token))
    if invitation is None:
        return render(request, "error.html", {"title": "Invitation not found",
                                              "message": "This invitation is no longer valid."}, status_code=404)
    org = repo.organization(db, invitation.org_id)
    csrf = login_csrf(request)
    response = render(request, "accept.html", {"invitation": invitation, "org": org, "csrf": csrf,
                                               "token": token, "error": error}, status_code=status_code)
    set_login_csrf_cookie(request, response, csrf)
    return response


@router.get("/invitations/{token}")
def invitation_form(token: str, request: Request, db: SessionDep) -> Response:
    return _accept_page(request, db, token)


@router.post("/invitations/{token}")
def accept_invitation(token: str, request: Request, db: SessionDep, state: StateDep, name: TextField = "",
                      password: TextField = "", csrf_token: TextField = "") -> Response:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf_token.encode()):
        return _accept_page(request, db, token, error="The form expired. Please try again.", status_code=403)
    try:  # the API's own rules for the name and the password
        body = AcceptInvitation.model_validate({"name": name if name.strip() else None, "password": password})
    except ValidationError as invalid:
        wrong = {str(e["loc"][0]) for e in invalid.errors() if e["loc"]}
        error = ("Choose a password of 8 to 256 characters." if "password" in wrong else
                 "Enter your name in up to 200 characters, without control characters.")
        return _accept_page(request, db, token, error=error, status_code=422)
    if members.withdraw_if_unusable(db, token=token, at=state.clock.now(db)) is not None:
        db.commit()  # the withdrawal (its seat freed) stands although the acceptance is refused
        return redirect("/login?notice=invitation-withdrawn")
    savepoint = db.begin_nested()
    try:
        new = members.accept_invitation(db, token=token, name=body.name, password=body.password,
                                        at=state.clock.now(db))
    except SlotwiseError as error:
        savepoint.rollback()
        return redirect(f"/login?notice={_INVITATION_NOTICES.get(error.code, 'invitation-failed')}")
    savepoint.commit()
    return _signed_in(request, db, new.user, "/agents", Flash("success", "Welcome aboard! You've joined the team."))
