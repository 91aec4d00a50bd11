"""Every query slotwise makes, named for what it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, bindparam, delete, func, insert, literal, select, tuple_, union, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from slotwise.models import (
    Agent,
    CreditAccount,
    IdempotencyRecord,
    Invitation,
    Invoice,
    LoginFailure,
    OrgAddon,
    Organization,
    QuantityChange,
    Subscription,
    User,
    email_key,
)
from slotwise.repositories.batch import (  # the sweep's statements, as repo.<name>
    CREDIT_ENTRY_COLUMNS as CREDIT_ENTRY_COLUMNS,
)
from slotwise.repositories.batch import (
    addon_slots_of as addon_slots_of,
)
from slotwise.repositories.batch import (
    billed_keys as billed_keys,
)
from slotwise.repositories.batch import (
    claim_due_organizations as claim_due_organizations,
)
from slotwise.repositories.batch import (
    credit_refills_at as credit_refills_at,
)
from slotwise.repositories.batch import (
    credit_usage_by_day as credit_usage_by_day,
)
from slotwise.repositories.batch import (
    current_subscriptions_of as current_subscriptions_of,
)
from slotwise.repositories.batch import (
    drop_addons as drop_addons,
)
from slotwise.repositories.batch import (
    insert_audit_entries as insert_audit_entries,
)
from slotwise.repositories.batch import (
    insert_charges as insert_charges,
)
from slotwise.repositories.batch import (
    insert_credit_entries as insert_credit_entries,
)
from slotwise.repositories.batch import (
    insert_events as insert_events,
)
from slotwise.repositories.batch import (
    insert_invoice_lines as insert_invoice_lines,
)
from slotwise.repositories.batch import (
    insert_invoices as insert_invoices,
)
from slotwise.repositories.batch import (
    keep_addons as keep_addons,
)
from slotwise.repositories.batch import (
    locked_credit_accounts as locked_credit_accounts,
)
from slotwise.repositories.batch import (
    organizations_with_due_work as organizations_with_due_work,
)
from slotwise.repositories.batch import (
    renew_organizations as renew_organizations,
)
from slotwise.repositories.batch import (
    renew_subscriptions as renew_subscriptions,
)
from slotwise.repositories.batch import (
    renewal_billing_key as renewal_billing_key,
)
from slotwise.repositories.batch import (
    set_credit_periods as set_credit_periods,
)

T = TypeVar("T")


def organization(db: Session, org_id: str) -> Organization | None:
    return db.get(Organization, org_id)


def locked_organization(db: Session, org_id: str) -> Organization | None:
    """The organization row, locked until the transaction ends.

    Every change to an organization's capacity, slots, plan or invoices takes this lock first, so
    check-then-change is atomic (SQLite gets the same from BEGIN IMMEDIATE) and locks are always
    taken in the same order.

    On PostgreSQL it is ``FOR NO KEY UPDATE`` (as an UPDATE of the row takes), not ``FOR UPDATE``: it
    excludes every other holder of this lock alike, but lets through the key-share lock a foreign-key
    check takes. A credit spend debits its account without this lock and then inserts its ledger
    entry, whose check on ``organizations`` would otherwise wait behind a holder of this lock that is
    itself waiting for that account (a refill, a top-up): a deadlock. Organizations are never deleted
    and their ids never change, so nothing needs the stronger lock.
    """
    return db.get(Organization, org_id, with_for_update={"key_share": True}, populate_existing=True)


def lock_organization(db: Session, org_id: str) -> bool:
    """Take the organization's row lock (as ``locked_organization``) without loading an object; False
    if there is no such organization. The hot paths' first round trip."""
    return db.execute(_LOCK_ORG, {"org_id": org_id}).first() is not None


_LOCK_ORG = (select(Organization.id).where(Organization.id == bindparam("org_id"))
             .with_for_update(key_share=True))  # see locked_organization


def insert_agent(db: Session, *, agent_id: str, org_id: str, name: str, at: datetime) -> None:
    db.execute(_INSERT_AGENT, {"id": agent_id, "org_id": org_id, "name": name, "archived_at": None, "created_at": at,
                                "access_mode": "free"})


_INSERT_AGENT = insert(Agent)


@dataclass(frozen=True, slots=True)
class InvoiceNumber:
    number: int
    card_token: str | None


def take_invoice_number(db: Session, org_id: str) -> InvoiceNumber | None:
    """Lock the organization and take its next invoice number, in one statement (a purchase's first:
    a refusal later rolls the number back with everything else); None if there is no such org."""
    row = db.execute(_TAKE_NUMBER, {"org_id": org_id}).first()
    return None if row is None else InvoiceNumber(row.invoice_seq, row.card_token)


_TAKE_NUMBER = (update(Organization).where(Organization.id == bindparam("org_id"))
                .values(invoice_seq=Organization.invoice_seq + 1)
                .returning(Organization.invoice_seq, Organization.card_token)
                .execution_options(synchronize_session=False))


def change_addon_slots(db: Session, *, org_id: str, addon_code: str, active: int, renewal: int, at: datetime) -> None:
    """Add ``active`` and ``renewal`` (either may be negative) to an existing add-on row."""
    db.execute(update(OrgAddon).where(OrgAddon.org_id == org_id, OrgAddon.addon_code == addon_code)
               .values(active_slots=OrgAddon.active_slots + active, renewal_slots=OrgAddon.renewal_slots + renewal,
                       updated_at=at).execution_options(synchronize_session=False))


def insert_addon_slots(db: Session, *, org_id: str, addon_code: str, slots: int, unit_price: int, currency: str,
                       at: datetime) -> None:
    db.execute(insert(OrgAddon), [{"org_id": org_id, "addon_code": addon_code, "active_slots": slots,
                                   "renewal_slots": slots, "unit_price": unit_price, "currency": currency,
                                   "updated_at": at}])


def delete_quantity_changes_before_all(db: Session, before: datetime) -> None:
    db.execute(delete(QuantityChange).where(QuantityChange.at <= before).execution_options(synchronize_session=False))


def delete_login_failures_before_all(db: Session, before: datetime) -> None:
    db.execute(delete(LoginFailure).where(LoginFailure.at <= before).execution_options(synchronize_session=False))


def user_by_email(db: Session, email: str) -> User | None:
    """The user with this email, compared case-folded (``models.email_key``)."""
    return db.scalar(select(User).where(User.email_key == email_key(email)))


def user_in_org(db: Session, org_id: str, user_id: str) -> User | None:
    return db.scalar(select(User).where(User.id == user_id, User.org_id == org_id))


def users_of_org(db: Session, org_id: str) -> Sequence[User]:
    return db.scalars(select(User).where(User.org_id == org_id).order_by(User.created_at, User.id)).all()


def owner_of_org(db: Session, org_id: str) -> User | None:
    return db.scalar(select(User).where(User.org_id == org_id, User.role == "owner"))


def invitations_of_org(db: Session, org_id: str) -> Sequence[Invitation]:
    query = select(Invitation).where(Invitation.org_id == org_id).order_by(Invitation.created_at, Invitation.id)
    return db.scalars(query).all()


def invitation_in_org(db: Session, org_id: str, invitation_id: str) -> Invitation | None:
    return db.scalar(select(Invitation).where(Invitation.id == invitation_id, Invitation.org_id == org_id))


def invitation_by_email(db: Session, org_id: str, email: str) -> Invitation | None:
    query = select(Invitation).where(Invitation.org_id == org_id, Invitation.email_key == email_key(email))
    return db.scalar(query)


def delete_invitations_to(db: Session, email: str) -> None:
    """Withdraw every pending invitation to ``email`` (it has an account now, so none can be accepted).

    Only lowers usage, so it needs no other organization's lock.
    """
    db.execute(delete(Invitation).where(Invitation.email_key == email_key(email))
               .execution_options(synchronize_session="fetch"))


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
        # a purchase waiting for verification is not owed: it never keeps a subscription past due
        .where(Invoice.subscription_id == subscription_id, Invoice.status == "open", Invoice.purchase.is_(None))
        .order_by(Invoice.number)
    )
    return db.scalars(query).all()


def open_invoice_ids_of_org(db: Session, org_id: str, *, with_purchases: bool = False) -> Sequence[str]:
    """The organization's open invoices, oldest first: what it owes, which a new card collects. A
    purchase waiting for the bank's verification (``purchase`` set) is not owed and is left out unless
    ``with_purchases``: charging it again would take the money without granting what it buys."""
    query = select(Invoice.id).where(Invoice.org_id == org_id, Invoice.status == "open")
    if not with_purchases:
        query = query.where(Invoice.purchase.is_(None))
    return db.scalars(query.order_by(Invoice.number)).all()


def waiting_plan_purchase(db: Session, org_id: str) -> Invoice | None:
    """The organization's plan start or upgrade waiting for the bank's verification, if any (its
    invoice: open, with the processor's intent and what it buys)."""
    query = (select(Invoice).where(Invoice.org_id == org_id, Invoice.status == "open",
                                   Invoice.kind.in_(("subscription", "upgrade")), Invoice.purchase.is_not(None),
                                   Invoice.action_intent.is_not(None))
             .order_by(Invoice.number).limit(1))
    return db.scalar(query)


def org_has_due_work(db: Session, org_id: str, at: datetime) -> bool:
    """Whether a renewal, a scheduled retry or a credit refill of this organization came due by ``at``
    (one round trip)."""
    renewal = select(Subscription.id).where(Subscription.org_id == org_id, Subscription.period_end <= at,
                                            Subscription.status.in_(("active", "past_due")))
    retry = select(Invoice.id).where(Invoice.org_id == org_id, Invoice.status == "open",
                                     Invoice.next_retry_at <= at)
    refill = select(CreditAccount.org_id).where(CreditAccount.org_id == org_id, CreditAccount.refills_at <= at)
    return db.execute(union(renewal, retry, refill).limit(1)).first() is not None


def first_due_retry_of_org(db: Session, org_id: str, at: datetime) -> Invoice | None:
    """The open invoice of this organization whose scheduled retry is earliest and due by ``at``."""
    query = (select(Invoice).where(Invoice.org_id == org_id, Invoice.status == "open", Invoice.next_retry_at <= at)
             .order_by(Invoice.next_retry_at, Invoice.number).limit(1))
    return db.scalar(query)


def void_open_invoices_of_org(db: Session, org_id: str) -> Sequence[str]:
    """Mark every open invoice of the organization void (never collected), purchases waiting for
    verification too (what they buy belongs to the subscription that ended); returns their ids."""
    ids = open_invoice_ids_of_org(db, org_id, with_purchases=True)
    if ids:
        db.execute(update(Invoice).where(Invoice.id.in_(ids))
                   .values(status="void", next_retry_at=None, action_intent=None)
                   .execution_options(synchronize_session="fetch"))
    return ids


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


def _keyset_page(db: Session, model: type[T], org_id: str, order: Sequence[InstrumentedAttribute[Any]], *,
                 limit: int, after: T | None) -> Sequence[T]:
    query = select(model).where(getattr(model, "org_id") == org_id)  # noqa: B009 - every tenant model has it
    if after is not None:
        query = query.where(_sorts_after(order, after))
    return db.scalars(query.order_by(*order).limit(limit + 1)).all()


def agents_page(db: Session, org_id: str, *, limit: int, after: Agent | None) -> Sequence[Agent]:
    """Up to ``limit + 1`` agents of the organization, after ``after``, in ``agents_of_org``'s order."""
    return _keyset_page(db, Agent, org_id, (Agent.created_at, Agent.name, Agent.id), limit=limit, after=after)


def users_page(db: Session, org_id: str, *, limit: int, after: User | None) -> Sequence[User]:
    """Up to ``limit + 1`` members of the organization, after ``after``, oldest first."""
    return _keyset_page(db, User, org_id, (User.created_at, User.id), limit=limit, after=after)


def invitations_page(db: Session, org_id: str, *, limit: int, after: Invitation | None) -> Sequence[Invitation]:
    """Up to ``limit + 1`` pending invitations of the organization, after ``after``, oldest first."""
    return _keyset_page(db, Invitation, org_id, (Invitation.created_at, Invitation.id), limit=limit, after=after)

