"""Team members and invitations. A pending invitation holds a seat until revoked or accepted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.capacity import reserve_growth
from slotwise.errors import (
    Conflict,
    EmailTaken,
    Forbidden,
    InvalidRequest,
    InvitationWithdrawn,
    NotFound,
    TeamsUnavailable,
)
from slotwise.models import Invitation, User, email_key, new_id
from slotwise.security import hash_secret, new_secret
from slotwise.services import audit
from slotwise.services.context import Actor, Env, Role, require_manager
from slotwise.services.organizations import NewUser, _new_user, apply_restore, member_changed
from slotwise.services.snapshot import load_snapshot, locked_org


def list_members(db: Session, *, actor: Actor) -> Sequence[User]:
    return repo.users_of_org(db, actor.org_id)


def remove_member(db: Session, *, actor: Actor, user_id: str, at: datetime) -> None:
    """Frees the seat at once. The Owner can't be removed. ``at``: the billing time."""
    require_manager(actor)
    locked_org(db, actor.org_id)
    user = repo.user_in_org(db, actor.org_id, user_id)
    if user is None:
        raise NotFound("No such member.")
    if user.role == "owner":
        raise Forbidden("The organization owner can't be removed.")
    member_changed(db, org_id=actor.org_id, by=audit.by_user(db, actor), kind="member.removed", user=user, at=at)
    db.delete(user)
    db.flush()


@dataclass(frozen=True, slots=True)
class NewInvitation:
    invitation: Invitation
    token: str  # for the accept link; only its hash is stored
    restored_slots: int = 0


def list_invitations(db: Session, *, actor: Actor) -> Sequence[Invitation]:
    return repo.invitations_of_org(db, actor.org_id)


def invite(db: Session, *, env: Env, actor: Actor, email: str, role: Role, at: datetime) -> NewInvitation:
    """A pending invitation, which takes a seat now. Refused at capacity or on plans without teams."""
    require_manager(actor)
    if role not in ("admin", "member"):
        raise InvalidRequest("Invite people as 'admin' or 'member'.", field="role")
    org = locked_org(db, actor.org_id)
    snap = load_snapshot(db, env.catalog, org)
    if not snap.plan.teams:
        raise TeamsUnavailable()
    email = email.strip()
    existing = repo.user_by_email(db, email)
    if existing is not None and existing.org_id == org.id:
        raise Conflict(f"{email} is already a member of your organization.", field="email")
    # An account elsewhere is not mentioned: the answer must not tell who has an account. Such an
    # invitation can't be accepted; trying withdraws it (``withdraw_if_unusable``).
    if repo.invitation_by_email(db, org.id, email) is not None:
        raise Conflict(f"{email} has already been invited.", field="email")
    decision = reserve_growth(snap, "members")
    by = audit.by_user(db, actor)
    apply_restore(db, org.id, decision.addon, decision.restore_slots, by=by, at=at)
    token, token_hash = new_secret("inv")
    invitation = Invitation(id=new_id("ivt"), org_id=org.id, email=email, email_key=email_key(email), role=role,
                            token_hash=token_hash, created_at=at)
    db.add(invitation)
    db.flush()
    invitation_changed(db, invitation, by=by, kind="invitation.created", at=at)
    return NewInvitation(invitation, token, decision.restore_slots)


def invitation_changed(db: Session, invitation: Invitation, *, by: audit.By, kind: str, at: datetime) -> None:
    """The entry of an invitation made, revoked, withdrawn or accepted (the seat it holds)."""
    state = {"email": invitation.email, "role": invitation.role}
    made = kind == "invitation.created"
    audit.record(db, org_id=invitation.org_id, by=by, kind=kind, at=at, subject_id=invitation.id,
                 before=None if made else state, after=state if made else None)


def revoke_invitation(db: Session, *, actor: Actor, invitation_id: str, at: datetime) -> None:
    """``at``: the billing time."""
    require_manager(actor)
    locked_org(db, actor.org_id)
    invitation = repo.invitation_in_org(db, actor.org_id, invitation_id)
    if invitation is None:
        raise NotFound("No such invitation.")
    invitation_changed(db, invitation, by=audit.by_user(db, actor), kind="invitation.revoked", at=at)
    db.delete(invitation)
    db.flush()


def withdraw_if_unusable(db: Session, *, token: str, at: datetime) -> InvitationWithdrawn | None:
    """An invitation whose email has an account (made elsewhere) can never be accepted: withdraw it,
    freeing its seat, and return the refusal to show. The caller commits the withdrawal."""
    invitation = repo.invitation_by_token_hash(db, hash_secret(token))
    if invitation is None or repo.user_by_email(db, invitation.email) is None:
        return None
    locked_org(db, invitation.org_id)
    invitation_changed(db, invitation, by=audit.SYSTEM, kind="invitation.withdrawn", at=at)
    db.delete(invitation)
    db.flush()
    return InvitationWithdrawn()


def accept_invitation(db: Session, *, token: str, name: str | None, password: str, at: datetime) -> NewUser:
    """The invitee becomes a member; the seat moves from the invitation to them."""
    invitation = repo.invitation_by_token_hash(db, hash_secret(token))
    if invitation is None:
        raise NotFound("This invitation is no longer valid.")
    locked_org(db, invitation.org_id)
    invitation = repo.invitation_by_token_hash(db, hash_secret(token))
    if invitation is None:
        raise NotFound("This invitation is no longer valid.")
    if repo.user_by_email(db, invitation.email) is not None:
        raise EmailTaken(f"{invitation.email} already has an account.")
    org_id, email, role, invitation_id = invitation.org_id, invitation.email, invitation.role, invitation.id
    db.delete(invitation)
    db.flush()
    new = _new_user(db, org_id=org_id, email=email, name=name, role=role,  # type: ignore[arg-type]
                    password=password, at=at)
    audit.record(db, org_id=org_id, by=audit.By("user", new.user.id, email), kind="invitation.accepted", at=at,
                 subject_id=invitation_id, before={"invitation": invitation_id},
                 after={"member": new.user.id, "email": email, "role": role})
    return new
