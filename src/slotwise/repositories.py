"""Every query slotwise makes, named for what it returns."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, bindparam, delete, func, insert, literal, select, tuple_, union, update
from sqlalchemy.dialects.postgresql import JSON
from sqlalchemy.engine import Row
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.schema import Table
from sqlalchemy.sql import Executable, Select, TableValuedAlias, any_, cast, column
from sqlalchemy.types import ARRAY, BigInteger, String

from slotwise.models import (
    Agent,
    Base,
    CreditUsage,
    IdempotencyRecord,
    Invitation,
    Invoice,
    LoginFailure,
    OrgAddon,
    Organization,
    QuantityChange,
    Subscription,
    User,
    UTCDateTime,
    email_key,
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
    db.execute(_INSERT_AGENT, {"id": agent_id, "org_id": org_id, "name": name, "archived_at": None, "created_at": at})


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
        .where(Invoice.subscription_id == subscription_id, Invoice.status == "open")
        .order_by(Invoice.number)
    )
    return db.scalars(query).all()


def open_invoice_ids_of_org(db: Session, org_id: str) -> Sequence[str]:
    query = select(Invoice.id).where(Invoice.org_id == org_id, Invoice.status == "open").order_by(Invoice.number)
    return db.scalars(query).all()


def org_has_due_work(db: Session, org_id: str, at: datetime) -> bool:
    """Whether a renewal, a scheduled retry or a credit refill of this organization came due by ``at``
    (one round trip)."""
    renewal = select(Subscription.id).where(Subscription.org_id == org_id, Subscription.period_end <= at,
                                            Subscription.status.in_(("active", "past_due")))
    retry = select(Invoice.id).where(Invoice.org_id == org_id, Invoice.status == "open",
                                     Invoice.next_retry_at <= at)
    refill = select(_ACCOUNTS.c.org_id).where(_ACCOUNTS.c.org_id == org_id, _ACCOUNTS.c.refills_at <= at)
    return db.execute(union(renewal, retry, refill).limit(1)).first() is not None


def first_due_retry_of_org(db: Session, org_id: str, at: datetime) -> Invoice | None:
    """The open invoice of this organization whose scheduled retry is earliest and due by ``at``."""
    query = (select(Invoice).where(Invoice.org_id == org_id, Invoice.status == "open", Invoice.next_retry_at <= at)
             .order_by(Invoice.next_retry_at, Invoice.number).limit(1))
    return db.scalar(query)


def void_open_invoices_of_org(db: Session, org_id: str) -> Sequence[str]:
    """Mark every open invoice of the organization void (never collected); returns their ids."""
    ids = open_invoice_ids_of_org(db, org_id)
    if ids:
        db.execute(update(Invoice).where(Invoice.id.in_(ids)).values(status="void", next_retry_at=None)
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


# --- the billing sweep: hundreds of organizations per transaction (services/renewals.py) -----------
# Core statements over plain rows, built once. Each table is written with one statement per batch: on
# PostgreSQL the rows travel as one JSON document read by json_to_recordset (one small statement the
# server plans once, however many rows, and one parameter the driver passes as it is); SQLite's
# executemany is already an in-process loop.

_TABLES = Base.metadata.tables
_SUBSCRIPTIONS, _ORGANIZATIONS, _ORG_ADDONS = _TABLES["subscriptions"], _TABLES["organizations"], _TABLES["org_addons"]
_INVOICES, _ACCOUNTS = _TABLES["invoices"], _TABLES["credit_accounts"]
_RENEWING_STATUSES = ("active", "past_due")


def _claim_due(*, skip_locked: bool) -> Select[str, int, str | None, datetime | None]:
    orgs, subs, at = _ORGANIZATIONS.c, _SUBSCRIPTIONS.c, bindparam("at", type_=UTCDateTime())
    # OFFSET 0 keeps each EXISTS a probe of the organization at hand: without it PostgreSQL may hash
    # every due subscription once per batch instead, which makes a sweep quadratic in its size.
    renewal = (select(subs.id).where(subs.org_id == orgs.id, subs.period_end <= at,
                                     subs.status.in_(_RENEWING_STATUSES)).offset(0))
    retry = (select(_INVOICES.c.id).where(_INVOICES.c.org_id == orgs.id, _INVOICES.c.status == "open",
                                          _INVOICES.c.next_retry_at <= at).offset(0))
    refills_at = select(_ACCOUNTS.c.refills_at).where(_ACCOUNTS.c.org_id == orgs.id).scalar_subquery()
    return (select(orgs.id, orgs.invoice_seq, orgs.card_token, refills_at.label("refills_at"))
            .where(orgs.id > bindparam("after"), renewal.exists() | retry.exists() | (refills_at <= at))
            .order_by(orgs.id).limit(bindparam("limit"))
            .with_for_update(of=_ORGANIZATIONS, skip_locked=skip_locked, key_share=True))  # see locked_organization


_CLAIM_DUE_SKIPPING_HELD, _CLAIM_DUE_WAITING = _claim_due(skip_locked=True), _claim_due(skip_locked=False)


def claim_due_organizations(
    db: Session, at: datetime, *, after: str, limit: int, skip_held: bool
) -> Sequence[Row[str, int, str | None, datetime | None]]:
    """Up to ``limit`` organizations after ``after`` (by id) with a renewal, a scheduled retry or a
    credit refill due by ``at``, row-locked for this transaction: (id, invoice_seq, card_token,
    refills_at — when its credit account is next refilled).

    ``skip_held``: on PostgreSQL, pass over the organizations another transaction holds (SKIP LOCKED),
    so that several sweeps take different organizations instead of queueing behind one another;
    otherwise wait for them. SQLite's one writer at a time makes both the same.
    """
    query = _CLAIM_DUE_SKIPPING_HELD if skip_held else _CLAIM_DUE_WAITING
    return db.execute(query, {"at": at, "after": after, "limit": limit}).all()


def renewal_billing_key(subscription_id: str, period_index: int) -> str:
    """The ``billing_key`` of a period's renewal invoice: one invoice per period, by the unique key."""
    return f"period:{subscription_id}:{period_index}"


@dataclass(frozen=True)
class _PerDialect:
    """A statement as PostgreSQL runs it best, and as the other databases run it."""

    postgresql: Executable
    other: Executable

    def of(self, db: Session) -> Executable:
        return self.postgresql if db.get_bind().dialect.name == "postgresql" else self.other


Among = Callable[[ColumnElement[str]], ColumnElement[bool]]


def _among(build: Callable[[Among], Executable], name: str = "org_ids") -> _PerDialect:
    """``build(among)`` where ``among(column)`` is ``column = ANY(:name)`` on PostgreSQL (one array
    parameter: a long IN list costs the driver more to send than the server to run) and
    ``column IN (:name, …)`` elsewhere."""
    array, expanding = cast(bindparam(name), ARRAY(String)), bindparam(name, expanding=True, type_=String())
    return _PerDialect(build(lambda column: column == any_(array)), build(lambda column: column.in_(expanding)))


_SUBS = _SUBSCRIPTIONS.c
_NEXT_BILLED = select(_INVOICES.c.id).where(  # renewal_billing_key(id, period_index + 1), in SQL
    _INVOICES.c.billing_key == literal("period:") + _SUBS.id + ":" + cast(_SUBS.period_index + 1, String)).exists()
_CURRENT_SUBSCRIPTIONS_OF = _among(lambda among: select(
    _SUBS.org_id, _SUBS.id, _SUBS.status, _SUBS.plan_code, _SUBS.scheduled_plan_code, _SUBS.plan_price,
    _SUBS.currency, _SUBS.anchor_at, _SUBS.period_index, _SUBS.period_start, _SUBS.period_end,
    _NEXT_BILLED.label("next_billed"),
).where(among(_SUBS.org_id), _SUBS.status != "canceled"))


def current_subscriptions_of(db: Session, org_ids: Sequence[str]) -> Sequence[Any]:
    """The current (not canceled) subscription of each of these organizations as plain rows (org_id,
    id, status, plan_code, scheduled_plan_code, plan_price, currency, anchor_at, period_index,
    period_start, period_end), and whether an invoice holds its next period's billing key already
    (``next_billed``)."""
    return db.execute(_CURRENT_SUBSCRIPTIONS_OF.of(db), {"org_ids": list(org_ids)}).all()


_ADDON_SLOTS_OF = _among(lambda among: select(
    _ORG_ADDONS.c.org_id, _ORG_ADDONS.c.addon_code, _ORG_ADDONS.c.active_slots, _ORG_ADDONS.c.renewal_slots,
).where(among(_ORG_ADDONS.c.org_id)))


def addon_slots_of(db: Session, org_ids: Sequence[str]) -> Sequence[Any]:
    """(org_id, addon_code, active_slots, renewal_slots) of every add-on of these organizations."""
    return db.execute(_ADDON_SLOTS_OF.of(db), {"org_ids": list(org_ids)}).all()


_BILLED_KEYS = _among(lambda among: select(_INVOICES.c.billing_key).where(among(_INVOICES.c.billing_key)), "keys")


def billed_keys(db: Session, keys: Sequence[str]) -> list[str]:
    """Which of these billing keys an invoice already holds."""
    return [str(key) for key in db.scalars(_BILLED_KEYS.of(db), {"keys": list(keys)})]


_DUE_AMONG = _among(lambda among: union(
    select(_SUBS.org_id).where(among(_SUBS.org_id), _SUBS.period_end <= bindparam("at", type_=UTCDateTime()),
                               _SUBS.status.in_(_RENEWING_STATUSES)),
    select(_INVOICES.c.org_id).where(among(_INVOICES.c.org_id), _INVOICES.c.status == "open",
                                     _INVOICES.c.next_retry_at <= bindparam("at", type_=UTCDateTime())),
    select(_ACCOUNTS.c.org_id).where(among(_ACCOUNTS.c.org_id),
                                     _ACCOUNTS.c.refills_at <= bindparam("at", type_=UTCDateTime()))))


def organizations_with_due_work(db: Session, org_ids: Sequence[str], at: datetime) -> set[str]:
    """Which of these organizations have a renewal, a scheduled retry or a credit refill due by ``at``
    (one statement, ``org_has_due_work`` for many)."""
    if not org_ids:
        return set()
    return set(db.scalars(_DUE_AMONG.of(db), {"org_ids": list(org_ids), "at": at}))


@dataclass(frozen=True)
class _Write:
    """One statement writing many rows (dicts with the same keys), in each database's fastest form."""

    postgresql: Executable  # the rows as one JSON document, read as a set
    other: Executable  # executemany: one execution per row

    def __call__(self, db: Session, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        if db.get_bind().dialect.name == "postgresql":
            db.execute(self.postgresql, {"rows": json.dumps(rows, default=_json_instant)})
        else:
            db.execute(self.other, list(rows))


def _json_instant(value: object) -> str:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.isoformat()
    raise TypeError(f"not an aware datetime: {value!r}")


def _row_set(table: Table, keys: dict[str, str]) -> TableValuedAlias:
    """``json_to_recordset(:rows) AS anon(k <type>, …)``; ``keys``: each key and the column whose type
    it has."""
    columns = [column(key, table.c[name].type) for key, name in keys.items()]
    rows = func.json_to_recordset(cast(bindparam("rows"), JSON))
    return rows.table_valued(*columns).render_derived(with_types=True)


def _inserting(name: str, columns: Sequence[str] | None = None) -> _Write:
    """Rows: a value for each of ``columns`` (default: every column of the table)."""
    table = _TABLES[name]
    names = list(columns) if columns is not None else [column.name for column in table.columns]
    rows = _row_set(table, {name: name for name in names})
    return _Write(table.insert().from_select(names, select(*rows.c)), table.insert())


def _updating(name: str, keys: Sequence[str], columns: Sequence[str]) -> _Write:
    """Rows: ``key_<column>`` for each key column, and the new value of each of ``columns``."""
    table = _TABLES[name]
    rows = _row_set(table, {**{f"key_{key}": key for key in keys}, **{column: column for column in columns}})
    postgresql = (table.update().where(*[table.c[key] == rows.c[f"key_{key}"] for key in keys])
                  .values({column: rows.c[column] for column in columns}))
    # executemany: SET takes the columns the parameters name
    return _Write(postgresql, table.update().where(*[table.c[key] == bindparam(f"key_{key}") for key in keys]))


def _deleting(name: str, keys: Sequence[str]) -> _Write:
    """Rows: ``key_<column>`` for each key column."""
    table = _TABLES[name]
    rows = _row_set(table, {f"key_{key}": key for key in keys})
    return _Write(table.delete().where(*[table.c[key] == rows.c[f"key_{key}"] for key in keys]),
                  table.delete().where(*[table.c[key] == bindparam(f"key_{key}") for key in keys]))


insert_invoices, insert_invoice_lines, insert_charges = (
    _inserting("invoices"), _inserting("invoice_lines"), _inserting("charges"))
renew_subscriptions = _updating("subscriptions", ["id"], [
    "period_index", "period_start", "period_end", "plan_code", "plan_price", "scheduled_plan_code", "status",
    "canceled_at"])
renew_organizations = _updating("organizations", ["id"], ["invoice_seq", "plan_code"])
keep_addons = _updating("org_addons", ["org_id", "addon_code"], ["active_slots", "unit_price", "updated_at"])
drop_addons = _deleting("org_addons", ["org_id", "addon_code"])


# --- credit refills and expiry (services/refills.py), one organization or a sweep's batch alike ------

_LOCKED_CREDIT_ACCOUNTS = _among(lambda among: select(
    _ACCOUNTS.c.org_id, _ACCOUNTS.c.plan_balance, _ACCOUNTS.c.topup_balance, _ACCOUNTS.c.plan_allowance,
    _ACCOUNTS.c.period_start, _ACCOUNTS.c.refills_at, _ACCOUNTS.c.used_in_period, _ACCOUNTS.c.recharges_in_period,
    _ORGANIZATIONS.c.created_at,
).join(_ORGANIZATIONS, _ORGANIZATIONS.c.id == _ACCOUNTS.c.org_id).where(among(_ACCOUNTS.c.org_id))
    .order_by(_ACCOUNTS.c.org_id).with_for_update(of=_ACCOUNTS, key_share=True))


def locked_credit_accounts(db: Session, org_ids: Sequence[str]) -> Sequence[Any]:
    """The credit accounts of these organizations, row-locked (in id order) until the transaction
    ends, as plain rows: org_id, plan_balance, topup_balance, plan_allowance, period_start, refills_at,
    used_in_period, recharges_in_period, and the organization's created_at (a free one's anchor).
    Spends debit an account under its row lock alone, so what is read here stays true until this
    transaction writes it. Take it after the organizations' locks."""
    return db.execute(_LOCKED_CREDIT_ACCOUNTS.of(db), {"org_ids": list(org_ids)}).all()


def credit_refills_at(db: Session, org_id: str) -> datetime | None:
    """When the organization's plan credits are next refilled (None: waiting for payment, or no account)."""
    return db.scalar(_CREDIT_REFILLS_AT, {"org_id": org_id})


_CREDIT_REFILLS_AT = select(_ACCOUNTS.c.refills_at).where(_ACCOUNTS.c.org_id == bindparam("org_id"))
# A refill's or an expiry's columns: the rest of an entry (a spend's) stays NULL.
CREDIT_ENTRY_COLUMNS = ("id", "org_id", "kind", "plan_delta", "topup_delta", "playground", "invoice_id", "plan_after",
                        "topup_after", "created_at")
insert_credit_entries = _inserting("credit_ledger", CREDIT_ENTRY_COLUMNS)
set_credit_periods = _updating("credit_accounts", ["org_id"], [
    "plan_balance", "plan_allowance", "period_start", "refills_at", "used_in_period", "recharges_in_period",
    "updated_at"])


def credit_usage_by_day(db: Session, org_id: str, *, start: date, end: date,
                        agent_key: str | None) -> list[tuple[date, int, int]]:
    """(day, credits, messages) for each day of ``start``…``end`` that has usage, summed over the
    organization's agents or for one (``agent_key``): a range scan of the roll-up's primary key."""
    rows = db.execute(_CREDIT_USAGE_BY_DAY if agent_key is None else _AGENT_CREDIT_USAGE_BY_DAY,
                      {"org_id": org_id, "start": start, "end": end, "agent_key": agent_key})
    return [(day, credits, messages) for day, credits, messages in rows]


_CREDIT_USAGE_BY_DAY = (
    # PostgreSQL sums a bigint as numeric; the cast keeps the totals integers on both databases
    select(CreditUsage.day, cast(func.sum(CreditUsage.credits), BigInteger),
           cast(func.sum(CreditUsage.messages), BigInteger))
    .where(CreditUsage.org_id == bindparam("org_id"), CreditUsage.day.between(bindparam("start"), bindparam("end")))
    .group_by(CreditUsage.day)
)
_AGENT_CREDIT_USAGE_BY_DAY = (
    select(CreditUsage.day, CreditUsage.credits, CreditUsage.messages)
    .where(CreditUsage.org_id == bindparam("org_id"), CreditUsage.day.between(bindparam("start"), bindparam("end")),
           CreditUsage.agent_key == bindparam("agent_key"))
)
