"""Rate limits kept in the database, so that every server process enforces the same count."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert
from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.errors import RateLimited
from slotwise.models import LoginFailure, QuantityChange, new_id

WINDOW = timedelta(hours=1)
LOGIN_WINDOW = timedelta(minutes=15)
# Failed sign-ins allowed per window: per email (guessing one account's password) and per client
# address (trying many accounts). Past either, even the right password waits for the window.
LOGIN_FAILURES_PER_EMAIL = 10
LOGIN_FAILURES_PER_ADDRESS = 50


def quantity_change_refusal(db: Session, *, org_id: str, per_hour: int, at: datetime) -> RateLimited | None:
    """Why one more add or removal of slots would be refused now, or None; changes nothing.

    A sliding hour, not a fixed window, so no burst of twice the cap around a boundary.
    """
    recent = repo.quantity_change_times_since(db, org_id, at - WINDOW)
    if len(recent) < per_hour:
        return None
    frees_at = recent[len(recent) - per_hour] + WINDOW
    wait = max(1, math.ceil((frees_at - at).total_seconds()))
    return RateLimited(
        f"You have changed add-on slots {len(recent)} times in the last hour; the limit is {per_hour}. "
        f"Try again in {_minutes(wait)}.",
        retry_after=wait,
        limit=per_hour,
    )


def count_quantity_change(db: Session, *, org_id: str, per_hour: int, at: datetime) -> None:
    """Record one add or removal of add-on slots, or raise ``rate_limited``.

    The caller holds the organization lock, so concurrent requests count one after another, and the
    record commits (or rolls back) with the change itself: a declined card or a refusal costs
    nothing. Two statements (count, insert); records older than the window only cost disk until
    the billing sweep prunes them (``prune_rate_limit_logs``).
    """
    refusal = quantity_change_refusal(db, org_id=org_id, per_hour=per_hour, at=at)
    if refusal is not None:
        raise refusal
    db.execute(insert(QuantityChange), [{"id": new_id("qc"), "org_id": org_id, "at": at}])


def prune_rate_limit_logs(db: Session, *, at: datetime) -> None:
    """Forget quantity changes and failed sign-ins older than their windows (run by the sweep)."""
    repo.delete_quantity_changes_before_all(db, at - WINDOW)
    repo.delete_login_failures_before_all(db, at - LOGIN_WINDOW)


def _minutes(seconds: int) -> str:
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _email_key(email: str) -> str:
    """The per-account key: the address as typed, or, for text that can't be an address (control
    characters, absurd length), its digest, so such text is still counted but never stored."""
    typed = email.strip().lower()
    if len(typed) <= 320 and not any(ch < " " or ch == "\x7f" for ch in typed):
        return f"email:{typed}"
    return f"email-sha256:{hashlib.sha256(typed.encode(errors='replace')).hexdigest()}"


def _login_keys(email: str, address: str) -> list[tuple[str, int]]:
    return [(_email_key(email), LOGIN_FAILURES_PER_EMAIL), (f"ip:{address}"[:400], LOGIN_FAILURES_PER_ADDRESS)]


def login_refusal(db: Session, *, email: str, address: str, at: datetime) -> RateLimited | None:
    """Why a sign-in attempt must wait now (too many recent failures), or None."""
    for key, cap in _login_keys(email, address):
        recent = repo.login_failure_times_since(db, key, at - LOGIN_WINDOW)
        if len(recent) >= cap:
            wait = max(1, math.ceil((recent[len(recent) - cap] + LOGIN_WINDOW - at).total_seconds()))
            return RateLimited(f"Too many sign-in attempts. Try again in {_minutes(wait)}.", retry_after=wait)
    return None


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """A sign-in attempt, recorded as failed until its password proves right."""

    failure_ids: tuple[str, ...]


def begin_login_attempt(db: Session, *, email: str, address: str, at: datetime) -> LoginAttempt:
    """Count one sign-in attempt against its email and client address, or raise ``rate_limited``.

    The count runs under a lock on both keys and the attempt is written as a failure before its
    password is checked; the caller commits (releasing the lock) before the slow hash and calls
    ``forgive_login_attempt`` if the password was right. So concurrent guesses are counted one
    after another and at most the cap is ever checked in a window, yet no guess waits on
    another's hash.
    """
    keys = _login_keys(email, address)
    repo.lock_keys(db, [key for key, _cap in keys])
    refusal = login_refusal(db, email=email, address=address, at=at)
    if refusal is not None:
        raise refusal
    failures = []
    for key, _cap in keys:
        repo.delete_login_failures_before(db, key, at - LOGIN_WINDOW)
        failures.append(LoginFailure(id=new_id("lf"), key=key, at=at))
    db.add_all(failures)
    db.flush()
    return LoginAttempt(tuple(f.id for f in failures))


def forgive_login_attempt(db: Session, attempt: LoginAttempt) -> None:
    """The password was right: the attempt no longer counts as a failure."""
    repo.delete_login_failures(db, attempt.failure_ids)
