"""The billing sweep's set-based statements: hundreds of organizations per transaction (services/renewals)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, literal, select, union
from sqlalchemy.dialects.postgresql import JSON
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session
from sqlalchemy.schema import Table
from sqlalchemy.sql import Executable, Select, TableValuedAlias, any_, cast, column
from sqlalchemy.types import ARRAY, BigInteger, String

from slotwise.models import (
    Base,
    CreditUsage,
    UTCDateTime,
)

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
# What ``trail.written_together`` collected (the columns ``events.emit`` and ``audit.entry`` fill).
insert_events = _inserting("events", ["id", "org_id", "type", "payload", "created_at"])
insert_audit_entries = _inserting("audit_entries", [
    "id", "org_id", "actor_type", "actor_id", "actor_label", "kind", "subject_id", "before", "after", "amount",
    "currency", "invoice_id", "created_at"])
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
