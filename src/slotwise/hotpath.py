"""The request path's reads, each one statement: who is calling (with the billing time and whether
anything came due for their organization) and an organization's whole snapshot.

They select columns, never ORM objects: a request that only reads builds no object graph, and each
statement is built once and compiled once (SQLAlchemy caches the compiled form). Every other query
lives in ``repositories``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import FromClause, Select, and_, bindparam, exists, func, literal, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from slotwise.models import (
    Agent,
    ApiToken,
    ClockState,
    CreditAccount,
    Invitation,
    Invoice,
    OrgAddon,
    Organization,
    Subscription,
    User,
    UTCDateTime,
)

RENEWING = ("active", "past_due")  # statuses whose periods renew (as in services.renewals)


@dataclass(frozen=True, slots=True)
class Caller:
    """The user behind an API token, the billing time read with it, and whether a renewal or retry
    of their organization came due by then (SPEC §3: it runs before the request)."""

    user_id: str
    org_id: str
    role: str
    now: datetime | None  # None: the simulated clock has no row yet (read it through the Clock)
    due: bool


def _due_by(org_id: Any, now: ColumnElement[Any]) -> ColumnElement[bool]:
    renewal = exists().where(Subscription.org_id == org_id, Subscription.status.in_(RENEWING),
                             Subscription.period_end <= now)
    retry = exists().where(Invoice.org_id == org_id, Invoice.status == "open", Invoice.next_retry_at <= now)
    refill = exists().where(CreditAccount.org_id == org_id, CreditAccount.refills_at <= now)  # SPEC §11
    return or_(renewal, retry, refill)


def _billing_time(simulated: bool) -> ColumnElement[Any]:
    return (select(ClockState.now).where(ClockState.id == 1).scalar_subquery() if simulated
            else bindparam("now", type_=UTCDateTime()))


@cache
def time_statement(simulated: bool) -> Select[*tuple[Any, ...]]:
    """The billing time and whether organization ``org_id`` has work due by then (a caller with no
    user row: the operator key)."""
    now = _billing_time(simulated)
    return select(now.label("now"), _due_by(bindparam("org_id"), now).label("due"))


@cache
def caller_statement(simulated: bool) -> Select[*tuple[Any, ...]]:
    now = _billing_time(simulated)
    return (select(User.id.label("caller_id"), User.org_id.label("caller_org"), User.role.label("caller_role"),
                   now.label("now"), _due_by(User.org_id, now).label("due"))
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(ApiToken.token_hash == bindparam("token_hash")))


def caller(db: Session, token_hash: str, *, wall_now: datetime | None) -> Caller | None:
    """One round trip: the token's user, the time (``wall_now``, or the simulated clock's when it is
    None) and whether their organization has work due."""
    params: dict[str, Any] = {"token_hash": token_hash}
    if wall_now is not None:
        params["now"] = wall_now
    return caller_of(db.execute(caller_statement(wall_now is None), params).one_or_none(), wall_now)


def caller_of(row: Any, wall_now: datetime | None) -> Caller | None:
    """The ``Caller`` in a row of ``caller_statement`` (None: no such token)."""
    if row is None:
        return None
    now = wall_now if wall_now is not None else row.now
    return Caller(row.caller_id, row.caller_org, row.caller_role, now, bool(row.due) if now is not None else False)


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    id: str
    plan_code: str
    plan_price: int
    currency: str
    status: str
    period_index: int
    period_start: datetime
    period_end: datetime
    scheduled_plan_code: str | None


@dataclass(frozen=True, slots=True)
class OrganizationRow:
    id: str
    name: str
    plan_code: str
    card_brand: str | None
    card_last4: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AddonRow:
    addon_code: str
    active_slots: int
    renewal_slots: int
    unit_price: int


@dataclass(frozen=True, slots=True)
class SnapshotRows:
    """An organization as one statement reads it: the row, its live subscription, usage counts and
    add-on rows."""

    organization: OrganizationRow
    subscription: SubscriptionRow | None
    members: int  # the Owner included, plus pending invitations
    agents: int  # not archived
    addons: Sequence[AddonRow]


def _snapshot_columns() -> list[Any]:
    org = Organization.id
    members = select(func.count()).select_from(User).where(User.org_id == org).scalar_subquery()
    invited = select(func.count()).select_from(Invitation).where(Invitation.org_id == org).scalar_subquery()
    agents = (select(func.count()).select_from(Agent)
              .where(Agent.org_id == org, Agent.archived_at.is_(None)).scalar_subquery())
    return [Organization.id, Organization.name, Organization.plan_code, Organization.card_brand,
            Organization.card_last4, Organization.created_at,
            Subscription.id.label("sub_id"), Subscription.plan_code.label("sub_plan"), Subscription.plan_price,
            Subscription.currency, Subscription.status, Subscription.period_index, Subscription.period_start,
            Subscription.period_end, Subscription.scheduled_plan_code,
            (members + invited).label("members"), agents.label("agents"),
            OrgAddon.addon_code, OrgAddon.active_slots, OrgAddon.renewal_slots, OrgAddon.unit_price]


def _with_subscription_and_addons(organizations: FromClause) -> FromClause:
    org = Organization.id
    return (organizations
            .outerjoin(Subscription, and_(Subscription.org_id == org, Subscription.status != literal("canceled")))
            .outerjoin(OrgAddon, OrgAddon.org_id == org))


@cache
def snapshot_statement() -> Select[*tuple[Any, ...]]:
    return (select(*_snapshot_columns()).select_from(_with_subscription_and_addons(Organization.__table__))
            .where(Organization.id == bindparam("org_id")))


@cache
def caller_snapshot_statement(simulated: bool) -> Select[*tuple[Any, ...]]:
    """``caller_statement`` and ``snapshot_statement`` of organization ``org_id`` in one round trip: no
    row without the token; the snapshot's columns are NULL unless the caller belongs to ``org_id``.
    (Reading needs no lock: it answers what is committed.)"""
    caller = caller_statement(simulated).subquery("caller")
    organizations = caller.outerjoin(Organization, and_(Organization.id == caller.c.caller_org,
                                                        Organization.id == bindparam("org_id")))
    return select(*caller.c, *_snapshot_columns()).select_from(_with_subscription_and_addons(organizations))


def snapshot_rows(db: Session, org_id: str) -> SnapshotRows | None:
    """One round trip (a row per add-on the organization holds, at least one). Run it after taking the
    organization lock when deciding a change: a statement's reads are not ordered after a lock taken
    by the same statement."""
    return snapshot_of_rows(db.execute(snapshot_statement(), {"org_id": org_id}).all())


def snapshot_of_rows(rows: Sequence[Any]) -> SnapshotRows | None:
    """The ``SnapshotRows`` in the rows of ``snapshot_statement`` (None: no such organization)."""
    if not rows or rows[0].id is None:
        return None
    first = rows[0]
    sub = None if first.sub_id is None else SubscriptionRow(
        first.sub_id, first.sub_plan, first.plan_price, first.currency, first.status, first.period_index,
        first.period_start, first.period_end, first.scheduled_plan_code)
    return SnapshotRows(
        organization=OrganizationRow(first.id, first.name, first.plan_code, first.card_brand, first.card_last4,
                                     first.created_at),
        subscription=sub,
        members=int(first.members),
        agents=int(first.agents),
        addons=[AddonRow(r.addon_code, r.active_slots, r.renewal_slots, r.unit_price)
                for r in rows if r.addon_code is not None],
    )
