"""Signing in and out, and accepting an invitation (which signs the new member in)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from slotwise import repositories as repo
from slotwise.api.deps import SessionDep, StateDep
from slotwise.errors import SlotwiseError
from slotwise.models import User
from slotwise.security import hash_password, hash_secret, verify_password
from slotwise.services import limits, members
from slotwise.web.deps import FormDep
from slotwise.web.render import Flash, redirect, render
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
# Verified when the email is unknown, so a wrong email costs the same time as a wrong password.
_DUMMY_HASH = hash_password("not-a-real-password")

TextField = Annotated[str, Form()]


def safe_next(target: str | None) -> str:
    """Only a path on this site (never ``//host`` or a scheme) may be a post-login destination."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return HOME


@router.get("/")
def home(request: Request, db: SessionDep) -> Response:
    signed_in = find_session(db, request.cookies.get(SESSION_COOKIE))
    return redirect(request, HOME if signed_in else "/login")


def _login_page(request: Request, *, email: str = "", error: str | None = None, next_path: str = "",
                status_code: int = 200) -> Response:
    token = login_csrf(request)
    response = render(request, "login.html", {"csrf": token, "email": email, "error": error,
                                              "next": next_path}, status_code=status_code)
    set_login_csrf_cookie(request, response, token)
    return response


@router.get("/login")
def login_form(request: Request, next: str = "") -> Response:
    return _login_page(request, next_path=next)


@router.post("/login")
def login(request: Request, db: SessionDep, state: StateDep, email: TextField = "", password: TextField = "",
          csrf_token: TextField = "", next: TextField = "") -> Response:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf_token.encode()):
        return _login_page(request, email=email, next_path=next, status_code=403,
                           error="Your sign-in form expired. Please try again.")
    now, address = state.clock.now(db), request.client.host if request.client else "unknown"
    limited = limits.login_refusal(db, email=email, address=address, at=now)
    if limited is not None:
        response = _login_page(request, email=email, next_path=next, status_code=429, error=limited.message)
        response.headers["Retry-After"] = str(limited.details["retry_after"])
        return response
    user = repo.user_by_email(db, email.strip()) if email.strip() else None
    valid = verify_password(user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not valid:
        limits.record_login_failure(db, email=email, address=address, at=now)
        return _login_page(request, email=email, next_path=next, status_code=401,
                           error="That email and password don't match an account.")
    return _signed_in(request, db, user, safe_next(next))


def _signed_in(request: Request, db: SessionDep, user: User, to: str, flash: Flash | None = None) -> Response:
    token, _ = start_session(db, user=user, replacing=request.cookies.get(SESSION_COOKIE))
    response = redirect(request, to, flash)
    set_session_cookie(request, response, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@router.post("/logout")
def logout(page: FormDep) -> Response:
    request = page.request
    end_session(page.db, request.cookies.get(SESSION_COOKIE, ""))
    response = redirect(request, "/login", Flash("info", "You've been signed out."))
    clear_session_cookie(request, response)
    return response


@router.get("/invitations/{token}")
def invitation_form(token: str, request: Request, db: SessionDep) -> Response:
    invitation = repo.invitation_by_token_hash(db, hash_secret(token))
    if invitation is None:
        return render(request, "error.html", {"title": "Invitation not found",
                                              "message": "This invitation is no longer valid."}, status_code=404)
    org = repo.organization(db, invitation.org_id)
    csrf = login_csrf(request)
    response = render(request, "accept.html", {"invitation": invitation, "org": org, "csrf": csrf,
                                               "token": token, "error": None})
    set_login_csrf_cookie(request, response, csrf)
    return response


@router.post("/invitations/{token}")
def accept_invitation(token: str, request: Request, db: SessionDep, state: StateDep, name: TextField = "",
                      password: TextField = "", csrf_token: TextField = "") -> Response:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf_token.encode()):
        return redirect(request, f"/invitations/{token}", Flash("error", "The form expired. Please try again."))
    if len(password) < 8:
        return redirect(request, f"/invitations/{token}",
                        Flash("error", "Choose a password of at least 8 characters."))
    savepoint = db.begin_nested()
    try:
        new = members.accept_invitation(db, token=token, name=name.strip() or None, password=password,
                                        at=state.clock.now(db))
    except SlotwiseError as error:
        savepoint.rollback()
        return redirect(request, "/login", Flash("error", error.message))
    savepoint.commit()
    return _signed_in(request, db, new.user, "/agents", Flash("success", "Welcome aboard! You've joined the team."))
