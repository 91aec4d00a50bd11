"""Reads one organization into the pure ``OrgSnapshot`` that capacity rules work on."""

from __future__ import annotations

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.capacity import OrgSnapshot, Slots
from slotwise.catalog import Catalog
from slotwise.errors import NotFound
from slotwise.models import Organization, Subscription
from slotwise.periods import Period


def locked_org(db: Session, org_id: str) -> Organization:
    """The organization, row-locked for this transaction (see ``repositories.locked_organization``)."""
    org = repo.locked_organization(db, org_id)
    if org is None:
        raise NotFound("No such organization.")
    return org


def subscription_period(sub: Subscription) -> Period:
    return Period(sub.period_index, sub.period_start, sub.period_end)


def load_snapshot(db: Session, catalog: Catalog, org: Organization) -> OrgSnapshot:
    sub = repo.current_subscription(db, org.id)
    plan = catalog.plan(org.plan_code)
    next_plan = catalog.plan(sub.scheduled_plan_code) if sub and sub.scheduled_plan_code else plan
    members = repo.member_count(db, org.id) + repo.pending_invitation_count(db, org.id)
    return OrgSnapshot(
        catalog=catalog,
        plan=plan,
        next_plan=next_plan,
        usage={"agents": repo.active_agent_count(db, org.id), "members": members},
        slots={
            code: Slots(row.active_slots, row.renewal_slots, row.unit_price)
            for code, row in repo.addons_of_org(db, org.id).items()
        },
        period=subscription_period(sub) if sub else None,
        unpaid=sub is not None and sub.status == "unpaid",
    )
