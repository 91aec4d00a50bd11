"""The demo organization that ``make demo`` seeds (once) and prints how to use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.models import ApiToken
from slotwise.security import new_secret
from slotwise.services.agents import create_agent
from slotwise.services.context import Actor, Env
from slotwise.services.organizations import add_user, create_organization

OWNER_EMAIL = "owner@demo.slotwise.test"
OWNER_PASSWORD = "demo-password"
MEMBER_EMAIL = "member@demo.slotwise.test"
MEMBER_PASSWORD = "demo-password"


@dataclass(frozen=True, slots=True)
class DemoAccess:
    org_id: str
    owner_token: str
    created: bool


def seed_demo(db: Session, *, env: Env, at_now: datetime) -> DemoAccess:
    """Create the demo organization if it is missing; always hand out a fresh Owner API token."""
    owner = repo.user_by_email(db, OWNER_EMAIL)
    if owner is None:
        created = create_organization(
            db, env=env, name="Acme Robotics", owner_email=OWNER_EMAIL, owner_name="Olivia Owner",
            owner_password=OWNER_PASSWORD, plan_code="pro", card_number=None, at=at_now)
        actor = Actor(created.owner.user.id, created.organization.id, "owner")
        for name in ("Support Assistant", "Sales Concierge", "Docs Helper"):
            create_agent(db, env=env, actor=actor, name=name, at=at_now)
        add_user(db, env=env, org_id=created.organization.id, email=MEMBER_EMAIL, name="Max Member",
                 password=MEMBER_PASSWORD, role="member", at=at_now)
        return DemoAccess(created.organization.id, created.owner.api_token, True)
    token, token_hash = new_secret("swt")
    db.add(ApiToken(token_hash=token_hash, user_id=owner.id, org_id=owner.org_id, created_at=at_now))
    return DemoAccess(owner.org_id, token, False)
