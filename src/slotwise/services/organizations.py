"""Creating organizations and users (the operator's side), and reading an organization."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.capacity import (
    ResourceCapacity,
    Slots,
    monthly_total,
    renewal_capacity,
    reserve_growth,
    resource_capacity,
)
from slotwise.catalog import RESOURCES
from slotwise.errors import EmailTaken, InvalidRequest, NotFound, TeamsUnavailable
from slotwise.hotpath import OrganizationRow, SnapshotRows, SubscriptionRow, snapshot_rows
from slotwise.models import ApiToken, CreditAccount, Organization, User, email_key, new_id
from slotwise.security import hash_password, new_secret
from slotwise.services import audit, events, refills, trail
from slotwise.services.context import Env, Role
from slotwise.services.snapshot import load_snapshot, locked_org, snapshot_of
from slotwise.services.subscriptions import start_subscription

DEFAULT_CARD = "4242424242424242"


@dataclass(frozen=True, slots=True)
class NewUser:
    user: User
    api_token: str  # shown once; only its hash is stored


def _new_user(
    db: Session, *, org_id: str, email: str, name: str | None, role: Role, password: str | None, at: datetime
) -> NewUser:
    email = email.strip()
    if repo.user_by_email(db, email) is not None:
        raise EmailTaken(f"A user with the email {email} already exists.", field="email")
    repo.delete_invitations_to(db, email)  # frees the seats they held in other organizations
    user = User(
        id=new_id("usr"),
        org_id=org_id,
        email=email,
        email_key=email_key(email),
        name=(name or email.split("@")[0]).strip(),
        role=role,
        password_hash=hash_password(password) if password else None,
        created_at=at,
    )
    token, token_hash = new_secret("swt")
    db.add(user)
    db.flush()
    db.add(ApiToken(token_hash=token_hash, user_id=user.id, org_id=org_id, created_at=at))
    return NewUser(user, token)


@dataclass(frozen=True, slots=True)
class NewOrganization:
    organization: Organization
    owner: NewUser


def create_organization(
    db: Session,
    *,
    env: Env,
    name: str,
    owner_email: str,
    owner_name: str | None,
    owner_password: str | None,
    plan_code: str,
    card_number: str | None,
    at: datetime,
) -> NewOrganization:
    """A new organization with its Owner, on ``free`` or subscribed to a paid plan at once.

    A paid plan bills its first period immediately; if the card is declined nothing is created.
    """
    if plan_code not in env.catalog.plans:
        raise InvalidRequest(f"Unknown plan {plan_code!r}.", field="plan")
    # The sandbox stands a test card in when none is given; a real processor's card is entered on its
    # own form later (PUT …/payment-method {payment_method}), so there the organization starts without.
    card = env.gateway.store_card(card_number or DEFAULT_CARD) \
        if card_number is not None or env.gateway.name == "sandbox" else None
    org = Organization(
        id=new_id("org"),
        name=name.strip(),
        plan_code="free",
        invoice_seq=0,
        card_token=card.token if card else None,
        card_brand=card.brand if card else None,
        card_last4=card.last4 if card else None,
        created_at=at,
    )
    db.add(org)
    db.flush()
    # The credit account starts empty and due at once; the refill below (free) or the subscription's
    # start grants the allowance of the plan in force, so a new organization has its credits at once.
    db.add(CreditAccount(org_id=org.id, plan_balance=0, topup_balance=0, plan_allowance=0, refills_at=at,
                         used_in_period=0, last_from_plan=0, recharge_enabled=False, recharge_threshold=100,
                         recharge_max_per_period=1, recharges_in_period=0, recharge_failures=0, updated_at=at))
    owner = _new_user(
        db, org_id=org.id, email=owner_email, name=owner_name, role="owner", password=owner_password, at=at
    )
    created = {"organization": org.id, "name": org.name, "plan": plan_code, "owner": owner.user.id}
    events.emit(db, org_id=org.id, type="organization.created", data=created, at=at)
    audit.record(db, org_id=org.id, by=audit.OPERATOR, kind="organization.created", at=at, subject_id=org.id,
                 after={**created, "owner_email": owner.user.email})
    if plan_code != "free":
        start_subscription(db, env=env, org=org, plan_code=plan_code, by=audit.OPERATOR, at=at)
    else:
        refills.start_period(db, refills.free_start(env.catalog, org.id, at))
    return NewOrganization(org, owner)


def add_user(
    db: Session,
    *,
    env: Env,
    org_id: str,
    email: str,
    name: str | None,
    password: str | None,
    role: Role,
    at: datetime,
) -> NewUser:
    """A member added directly by the operator; takes a seat like an accepted invitation."""
    org = locked_org(db, org_id)
    if role == "owner":
        raise InvalidRequest("An organization has exactly one owner.", field="role")
    snap = load_snapshot(db, env.catalog, org)
    if not snap.plan.teams:
        raise TeamsUnavailable()
    decision = reserve_growth(snap, "members")
    apply_restore(db, org_id, decision.addon, decision.restore_slots, by=audit.OPERATOR, at=at)
    new = _new_user(db, org_id=org_id, email=email, name=name, role=role, password=password, at=at)
    member_changed(db, org_id=org_id, by=audit.OPERATOR, kind="member.added", user=new.user, at=at)
    return new


def member_changed(db: Session, *, org_id: str, by: audit.By, kind: str, user: User, at: datetime) -> None:
    """The entry of a member who came or went (a seat taken or freed)."""
    state = {"email": user.email, "role": user.role}
    added = kind != "member.removed"
    audit.record(db, org_id=org_id, by=by, kind=kind, at=at, subject_id=user.id,
                 before=None if added else state, after=state if added else None)


def apply_restore(db: Session, org_id: str, addon_code: str, restore: int, *, by: audit.By, at: datetime) -> None:
    """Shrink a scheduled removal by ``restore`` slots (usage grew into them)."""
    if restore <= 0:
        return
    row = repo.addons_of_org(db, org_id)[addon_code]
    before = Slots(row.active_slots, row.renewal_slots)
    row.renewal_slots += restore
    row.updated_at = at
    removal_reduced(db, org_id=org_id, by=by, addon=addon_code, before=before, restore=restore, at=at)


def removal_reduced(db: Session, *, org_id: str, by: audit.By, addon: str, before: Slots, restore: int,
                    at: datetime) -> None:
    """``addon.updated`` for a scheduled removal shrunk by ``restore`` slots because usage grew into it
    (``before``: the slots until then)."""
    after = Slots(before.active, before.renewal + restore)
    trail.addon_changed(db, org_id=org_id, by=by, kind="addon.removal_reduced", addon=addon, before=before,
                        after=after, at=at, effective_at=at)


@dataclass(frozen=True, slots=True)
class OrganizationSummary:
    organization: OrganizationRow
    subscription: SubscriptionRow | None
    plan_code: str
    scheduled_plan_code: str | None
    capacity: dict[str, ResourceCapacity]
    renewal_capacity: dict[str, int]
    monthly_total: int
    currency: str


def organization_summary(db: Session, *, env: Env, org_id: str) -> OrganizationSummary:
    """Plan, period, capacity per resource and the monthly total, from one statement."""
    return summary_of(snapshot_rows(db, org_id), env=env)


def summary_of(rows: SnapshotRows | None, *, env: Env) -> OrganizationSummary:
    if rows is None:
        raise NotFound("No such organization.")
    snap = snapshot_of(rows, env.catalog)
    sub = rows.subscription
    return OrganizationSummary(
        organization=rows.organization,
        subscription=sub,
        plan_code=rows.organization.plan_code,
        scheduled_plan_code=sub.scheduled_plan_code if sub else None,
        capacity={r: resource_capacity(snap, r) for r in RESOURCES},
        renewal_capacity={r: renewal_capacity(snap, r) for r in RESOURCES},
        monthly_total=monthly_total(snap),
        currency=snap.plan.currency,
    )
