"""Reads one organization into the pure ``OrgSnapshot`` that capacity rules work on (one statement)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.capacity import OrgSnapshot, Slots
from slotwise.catalog import Catalog
from slotwise.errors import NotFound
from slotwise.hotpath import SnapshotRows, SubscriptionRow, snapshot_rows
from slotwise.models import Organization, Subscription
from slotwise.periods import Period


def locked_org(db: Session, org_id: str) -> Organization:
    """The organization, row-locked for this transaction (see ``repositories.locked_organization``)."""
    org = repo.locked_organization(db, org_id)
    if org is None:
        raise NotFound("No such organization.")
    return org


def subscription_period(sub: Subscription | SubscriptionRow) -> Period:
    return Period(sub.period_index, sub.period_start, sub.period_end)


def snapshot_of(rows: SnapshotRows, catalog: Catalog) -> OrgSnapshot:
    sub = rows.subscription
    plan = catalog.plan(rows.organization.plan_code)
    next_plan = catalog.plan(sub.scheduled_plan_code) if sub and sub.scheduled_plan_code else plan
    return OrgSnapshot(
        catalog=catalog,
        plan=plan,
        next_plan=next_plan,
        usage={"agents": rows.agents, "members": rows.members},
        slots={row.addon_code: Slots(row.active_slots, row.renewal_slots, row.unit_price) for row in rows.addons},
        period=subscription_period(sub) if sub else None,
        unpaid=sub is not None and sub.status == "unpaid",
    )


def read_snapshot(db: Session, catalog: Catalog, org_id: str) -> OrgSnapshot:
    """The organization's snapshot as committed now (after the caller's lock, if it holds one)."""
    rows = snapshot_rows(db, org_id)
    if rows is None:
        raise NotFound("No such organization.")
    return snapshot_of(rows, catalog)


def load_snapshot(db: Session, catalog: Catalog, org: Organization) -> OrgSnapshot:
    return read_snapshot(db, catalog, org.id)
