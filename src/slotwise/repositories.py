"""Every query slotwise makes, named for what it returns."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, literal, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from slotwise.models import (
    Agent,
    ApiToken,
    IdempotencyRecord,
    Invitation,
    Invoice,
    LoginFailure,
    OrgAddon,
    Organization,
    QuantityChange,
    Subscription,
    User,
)


def organization(db: Session, org_id: str) -> Organization | None:
    return db.get(Organization, org_id)


def locked_organization(db: Session, org_id: str) -> Organization | None:
    """The organization row, locked until the transaction ends.

    Every change to an organization's capacity, slots, plan or invoices takes this lock first, so
    check-then-change is atomic (SQLite gets the same from BEGIN IMMEDIATE) and locks are always
    taken in the same order.
    """
    return db.get(Organization, org_id, with_for_update=True, populate_existing=True)


def user_for_token_hash(db: Session, token_hash: str) -> User | None:
    return db.scalar(
        select(User).join(ApiToken, ApiToken.user_id == User.id).where(ApiToken.token_hash == token_hash)
    )


def user_by_email(db: Session, email: str) -> User | None:
    return db.scalar(select(User).where(func.lower(User.email) == email.lower()))


def user_in_org(db: Session, org_id: str, user_id: str) -> User | None:
    return db.scalar(select(User).where(User.id == user_id, User.org_id == org_id))


def users_of_org(db: Session, org_id: str) -> Sequence[User]:
    return db.scalars(select(User).where(User.org_id == org_id).order_by(User.created_at, User.id)).all()


def owner_of_org(db: Session, org_id: str) -> User | None:
    return db.scalar(select(User).where(User.org_id == org_id, User.role == "owner"))


def member_count(db: Session, org_id: str) -> int:
    return db.scalar(select(func.count()).select_from(User).where(User.org_id == org_id)) or 0


def pending_invitation_count(db: Session, org_id: str) -> int:
    return db.scalar(select(func.count()).select_from(Invitation).where(Invitation.org_id == org_id)) or 0


def active_agent_count(db: Session, org_id: str) -> int:
    query = select(func.count()).select_from(Agent).where(Agent.org_id == org_id, Agent.archived_at.is_(None))
    return db.scalar(query) or 0


def invitations_of_org(db: Session, org_id: str) -> Sequence[Invitation]:
    query = select(Invitation).where(Invitation.org_id == org_id).order_by(Invitation.created_at, Invitation.id)
    return db.scalars(query).all()


def invitation_in_org(db: Session, org_id: str, invitation_id: str) -> Invitation | None:
    return db.scalar(select(Invitation).where(Invitation.id == invitation_id, Invitation.org_id == org_id))


def invitation_by_email(db: Session, org_id: str, email: str) -> Invitation | None:
    query = select(Invitation).where(Invitation.org_id == org_id, func.lower(Invitation.email) == email.lower())
    return db.scalar(query)


def invitation_by_token_hash(db: Session, token_hash: str) -> Invitation | None:
    return db.scalar(select(Invitation).where(Invitation.token_hash == token_hash))


def agents_of_org(db: Session, org_id: str) -> Sequence[Agent]:
    query = select(Agent).where(Agent.org_id == org_id).order_by(Agent.created_at, Agent.name, Agent.id)
    return db.scalars(query).all()


def agent_in_org(db: Session, org_id: str, agent_id: str) -> Agent | None:
    return db.scalar(select(Agent).where(Agent.id == agent_id, Agent.org_id == org_id))


def current_subscription(db: Session, org_id: str) -> Subscription | None:
    """The organization's subscription that is not canceled (at most one, kept so by the org lock)."""
    query = select(Subscription).where(Subscription.org_id == org_id, Subscription.status != "canceled")
    return db.scalar(query)


def addons_of_org(db: Session, org_id: str) -> dict[str, OrgAddon]:
    rows = db.scalars(select(OrgAddon).where(OrgAddon.org_id == org_id)).all()
    return {row.addon_code: row for row in rows}


def invoices_of_org(db: Session, org_id: str, *, limit: int = 100) -> Sequence[Invoice]:
    query = select(Invoice).where(Invoice.org_id == org_id).order_by(Invoice.number.desc()).limit(limit)
    return db.scalars(query).all()


def invoice_in_org(db: Session, org_id: str, invoice_id: str) -> Invoice | None:
    return db.scalar(select(Invoice).where(Invoice.id == invoice_id, Invoice.org_id == org_id))


def open_invoices_of_subscription(db: Session, subscription_id: str) -> Sequence[Invoice]:
    query = (
        select(Invoice)
        .where(Invoice.subscription_id == subscription_id, Invoice.status == "open")
        .order_by(Invoice.number)
    )
    return db.scalars(query).all()


def open_invoice_ids_of_org(db: Session, org_id: str) -> Sequence[str]:
    query = select(Invoice.id).where(Invoice.org_id == org_id, Invoice.status == "open").order_by(Invoice.number)
    return db.scalars(query).all()


def due_subscriptions(db: Session, at: datetime, *, limit: int) -> Sequence[tuple[str, str]]:
    """(org_id, subscription_id) of subscriptions whose period ended by ``at``, oldest first."""
    query = (
        select(Subscription.org_id, Subscription.id)
        .where(Subscription.status != "canceled", Subscription.period_end <= at)
        .order_by(Subscription.period_end, Subscription.id)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in db.execute(query)]


def due_retries(db: Session, at: datetime, *, limit: int) -> Sequence[tuple[str, str]]:
    """(org_id, invoice_id) of open invoices whose next payment retry is due by ``at``."""
    query = (
        select(Invoice.org_id, Invoice.id)
        .where(Invoice.status == "open", Invoice.next_retry_at <= at)
        .order_by(Invoice.next_retry_at, Invoice.id)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in db.execute(query)]


def next_due_instant(db: Session) -> datetime | None:
    """The earliest renewal or retry that is scheduled at all."""
    renewal = db.scalar(select(func.min(Subscription.period_end)).where(Subscription.status != "canceled"))
    retry = db.scalar(select(func.min(Invoice.next_retry_at)).where(Invoice.status == "open"))
    found = [v for v in (renewal, retry) if v is not None]
    return min(found) if found else None


def idempotency_record(db: Session, scope: str, key: str) -> IdempotencyRecord | None:
    return db.get(IdempotencyRecord, (scope, key), populate_existing=True)


def delete_idempotency_records_before(db: Session, before: datetime) -> int:
    result = db.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < before))
    return int(getattr(result, "rowcount", 0) or 0)


def quantity_change_times_since(db: Session, org_id: str, since: datetime) -> Sequence[datetime]:
    """When the organization's add-on quantity changes after ``since`` were made, oldest first."""
    query = (select(QuantityChange.at).where(QuantityChange.org_id == org_id, QuantityChange.at > since)
             .order_by(QuantityChange.at))
    return db.scalars(query).all()


def delete_quantity_changes_before(db: Session, org_id: str, before: datetime) -> None:
    db.execute(delete(QuantityChange).where(QuantityChange.org_id == org_id, QuantityChange.at <= before))


def login_failure_times_since(db: Session, key: str, since: datetime) -> Sequence[datetime]:
    """When the failed sign-ins under ``key`` after ``since`` happened, oldest first."""
    query = select(LoginFailure.at).where(LoginFailure.key == key, LoginFailure.at > since).order_by(LoginFailure.at)
    return db.scalars(query).all()


def delete_login_failures_before(db: Session, key: str, before: datetime) -> None:
    db.execute(delete(LoginFailure).where(LoginFailure.key == key, LoginFailure.at <= before))


def lock_keys(db: Session, keys: Sequence[str]) -> None:
    """Hold a lock on each key until the transaction ends, for check-then-change on rows that may not
    exist yet (there is no row to lock FOR UPDATE). Taken in sorted order, so two callers never
    deadlock; on SQLite, BEGIN IMMEDIATE already serializes every writer."""
    if db.get_bind().dialect.name != "postgresql":
        return
    for key in sorted(set(keys)):
        db.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


def delete_login_failures(db: Session, ids: Sequence[str]) -> None:
    if ids:
        db.execute(delete(LoginFailure).where(LoginFailure.id.in_(ids)))


# --- lists, a page at a time: a keyset on each list's own order, limit + 1 rows to tell has_more ----

def _sorts_after(order: Sequence[InstrumentedAttribute[Any]], row: object) -> ColumnElement[bool]:
    """Rows that come after ``row`` in the ascending ``order``: one row-value comparison, which SQLite
    and PostgreSQL answer alike, with the cursor's values bound as their columns' types."""
    cursor = [literal(getattr(row, column.key), column.type) for column in order]
    return tuple_(*order) > tuple_(*cursor)


def invoices_page(db: Session, org_id: str, *, limit: int, after: Invoice | None) -> Sequence[Invoice]:
    """Up to ``limit + 1`` invoices of the organization, newest first (by number), after ``after``."""
    query = select(Invoice).where(Invoice.org_id == org_id)
    if after is not None:
        query = query.where(Invoice.number < after.number)
    return db.scalars(query.order_by(Invoice.number.desc()).limit(limit + 1)).all()


def agents_page(db: Session, org_id: str, *, limit: int, after: Agent | None) -> Sequence[Agent]:
    """Up to ``limit + 1`` agents of the organization, after ``after``, in ``agents_of_org``'s order."""
    order = (Agent.created_at, Agent.name, Agent.id)
    query = select(Agent).where(Agent.org_id == org_id)
    if after is not None:
        query = query.where(_sorts_after(order, after))
    return db.scalars(query.order_by(*order).limit(limit + 1)).all()


def users_page(db: Session, org_id: str, *, limit: int, after: User | None) -> Sequence[User]:
    """Up to ``limit + 1`` members of the organization, after ``after``, oldest first."""
    order = (User.created_at, User.id)
    query = select(User).where(User.org_id == org_id)
    if after is not None:
        query = query.where(_sorts_after(order, after))
    return db.scalars(query.order_by(*order).limit(limit + 1)).all()


def invitations_page(db: Session, org_id: str, *, limit: int, after: Invitation | None) -> Sequence[Invitation]:
    """Up to ``limit + 1`` pending invitations of the organization, after ``after``, oldest first."""
    order = (Invitation.created_at, Invitation.id)
    query = select(Invitation).where(Invitation.org_id == org_id)
    if after is not None:
        query = query.where(_sorts_after(order, after))
    return db.scalars(query.order_by(*order).limit(limit + 1)).all()
