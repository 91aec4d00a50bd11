"""Web sessions: the signed-in browser behind the customer pages.

The cookie carries a random token; the table keeps only its SHA-256, so a copy of the table can't be
replayed. Every sign-in creates a new token (no session fixation), and each session has its own
CSRF token, checked on every form and on the JSON preview calls.

Session expiry runs on the wall clock, not the billing clock: moving the simulated billing clock a
month ahead (demos, tests) must not sign everybody out, and a session's lifetime is a security
property measured in real time.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from slotwise.clock import SystemClock
from slotwise.models import Organization, User, WebSession
from slotwise.security import hash_secret, new_secret

SESSION_COOKIE = "slotwise_session"
LOGIN_CSRF_COOKIE = "slotwise_login_csrf"
SESSION_LIFETIME = timedelta(hours=12)
_wall_clock = SystemClock()


@dataclass(frozen=True, slots=True)
class SignedIn:
    session: WebSession
    user: User
    organization: Organization


def wall_now(db: Session) -> datetime:
    return _wall_clock.now(db)


def start_session(db: Session, *, user: User, replacing: str | None) -> tuple[str, WebSession]:
    """A new session for ``user``; the browser's previous session (if any) is ended first."""
    now = wall_now(db)
    if replacing:
        end_session(db, replacing)
    db.execute(delete(WebSession).where(WebSession.expires_at < now))
    token, token_hash = new_secret("sws")
    row = WebSession(
        token_hash=token_hash, user_id=user.id, org_id=user.org_id, csrf_token=secrets.token_urlsafe(32),
        created_at=now, expires_at=now + SESSION_LIFETIME,
    )
    db.add(row)
    db.flush()
    return token, row


def find_session(db: Session, token: str | None) -> SignedIn | None:
    """The live session for a cookie token, with its user and organization; None if not signed in."""
    if not token:
        return None
    row = db.scalar(select(WebSession).where(WebSession.token_hash == hash_secret(token)))
    if row is None or row.expires_at <= wall_now(db):
        return None
    user = db.get(User, row.user_id)
    org = db.get(Organization, row.org_id)
    if user is None or org is None or user.org_id != org.id:
        return None
    return SignedIn(row, user, org)


def end_session(db: Session, token: str) -> None:
    db.execute(delete(WebSession).where(WebSession.token_hash == hash_secret(token)))


def secure_cookies(request: Request) -> bool:
    """Secure when served over HTTPS (directly or behind a proxy uvicorn trusts) or when configured."""
    forced: bool = request.app.state.slotwise.settings.secure_cookies
    return forced or request.url.scheme == "https"


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE, token, max_age=int(SESSION_LIFETIME.total_seconds()), path="/",
        httponly=True, samesite="lax", secure=secure_cookies(request),
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure_cookies(request))


def login_csrf(request: Request) -> str:
    """The sign-in form's CSRF token: a double-submit cookie, since there is no session yet."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)


def set_login_csrf_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, path="/", httponly=True, samesite="lax",
                        secure=secure_cookies(request))
