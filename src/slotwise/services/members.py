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
from slotwise.services.context import Actor, Env, Role, require_manager
from slotwise.services.organizations import NewUser, _new_user, apply_restore
from slotwise.services.snapshot import load_snapshot, locked_org


def list_members(db: Session, *, actor: Actor) -> Sequence[User]:
    return repo.users_of_org(db, actor.org_id)


def remove_member(db: Session, *, actor: Actor, user_id: str) -> None:
    """Frees the seat at once. The Owner can't be removed."""
    require_manager(actor)
    locked_org(db, actor.org_id)
    user = repo.user_in_org(db, actor.org_id, user_id)
    if user is None:
        raise NotFound("No such member.")
    if user.role == "owner":
        raise Forbidden("The organization owner can't be removed.")
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
    apply_restore(db, org.id, decision.addon, decision.restore_slots, at)
    token, token_hash = new_secret("inv")
    invitation = Invitation(id=new_id("ivt"), org_id=org.id, email=email, email_key=email_key(email), role=role,
                            token_hash=token_hash, created_at=at)
    db.add(invitation)
    db.flush()
    return NewInvitation(invitation, token, decision.restore_slots)


def revoke_invitation(db: Session, *, actor: Actor, invitation_id: str) -> None:
    require_manager(actor)
    locked_org(db, actor.org_id)
    invitation = repo.invitation_in_org(db, actor.org_id, invitation_id)
    if invitation is None:
        raise NotFound("No such invitation.")
    db.delete(invitation)
    db.flush()


def withdraw_if_unusable(db: Session, *, token: str) -> InvitationWithdrawn | None:
    """An invitation whose email has an account (made elsewhere) can never be accepted: withdraw it,
    freeing its seat, and return the refusal to show. The caller commits the withdrawal."""
    invitation = repo.invitation_by_token_hash(db, hash_secret(token))
    if invitation is None or repo.user_by_email(db, invitation.email) is None:
        return None
    locked_org(db, invitation.org_id)
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
    org_id, email, role = invitation.org_id, invitation.email, invitation.role
    db.delete(invitation)
    db.flush()
    return _new_user(db, org_id=org_id, email=email, name=name, role=role,  # type: ignore[arg-type]
                     password=password, at=at)
