"""The demo organization that ``make demo`` seeds (once) and prints how to use."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.catalog import Activity, Model
from slotwise.clock import wall_now
from slotwise.models import Agent, ApiToken
from slotwise.security import new_secret
from slotwise.services.agents import create_agent
from slotwise.services.context import Actor, Env
from slotwise.services.organizations import add_user, create_organization
from slotwise.services.paid_access import PaidConfig, configure_access
from slotwise.services.recharges import RechargeSettings, update_settings
from slotwise.services.spend import SpendRequest, spend

OWNER_EMAIL = "owner@demo.slotwise.test"
OWNER_PASSWORD = "demo-password"
MEMBER_EMAIL = "member@demo.slotwise.test"
MEMBER_PASSWORD = "demo-password"
HISTORY = timedelta(days=21)  # the demo organization signed up three weeks ago, and has been answering since
PAID_AGENT = "Premium Tutor"  # sold to visitors: $9.99 for 30 days and 50 messages (SPEC §13)
PAID_CONFIG = PaidConfig(price=999, currency="usd", access_days=30, message_credits=50)


@dataclass(frozen=True, slots=True)
class DemoAccess:
    org_id: str
    owner_token: str
    created: bool
    paid_agent_id: str | None = None


def seed_demo(db: Session, *, env: Env, at_now: datetime) -> DemoAccess:
    """Create the demo organization if it is missing; always hand out a fresh Owner API token.

    It signed up three weeks before ``at_now`` (so its period is under way), and its agents have
    spent credits every day since, through the real spend, so Billing and Usage have something to show.
    """
    owner = repo.user_by_email(db, OWNER_EMAIL)
    if owner is None:
        since = at_now - HISTORY
        created = create_organization(
            db, env=env, name="Acme Robotics", owner_email=OWNER_EMAIL, owner_name="Olivia Owner",
            owner_password=OWNER_PASSWORD, plan_code="pro", card_number=None, at=since)
        actor = Actor(created.owner.user.id, created.organization.id, "owner")
        agent_ids = [create_agent(db, env=env, actor=actor, name=name, at=since).agent.id
                     for name in ("Support Assistant", "Sales Concierge", "Docs Helper")]
        add_user(db, env=env, org_id=created.organization.id, email=MEMBER_EMAIL, name="Max Member",
                 password=MEMBER_PASSWORD, role="member", at=since)
        _spend_history(db, env=env, org_id=created.organization.id, agent_ids=agent_ids, since=since,
                       until=at_now)
        update_settings(db, actor=actor, settings=RechargeSettings(enabled=True, threshold=1000, max_per_month=3),
                        at=at_now, wall_now=wall_now())
        paid = create_agent(db, env=env, actor=actor, name=PAID_AGENT, at=since).agent.id
        configure_access(db, actor=actor, agent_id=paid, mode="paid", paid=PAID_CONFIG, at=at_now)
        return DemoAccess(created.organization.id, created.owner.api_token, True, paid)
    token, token_hash = new_secret("swt")
    db.add(ApiToken(token_hash=token_hash, user_id=owner.id, org_id=owner.org_id, created_at=at_now))
    paid_id = db.scalar(select(Agent.id).where(Agent.org_id == owner.org_id, Agent.access_mode == "paid").limit(1))
    return DemoAccess(owner.org_id, token, False, paid_id)


# What each demo agent does in a working day: (activity, model, reference prefix, units low–high, spends
# a day low–high). Messages are batched into larger ``units`` to keep ``make demo`` quick (~200 spends).
WORKLOADS: list[list[tuple[Activity, Model, str, int, int, int, int]]] = [
    [("message", "standard", "ans", 25, 60, 3, 5), ("message", "premium", "ans", 2, 6, 0, 2),
     ("tool", "standard", "run", 3, 10, 0, 2)],  # Support Assistant: the busiest
    [("message", "standard", "ans", 10, 35, 2, 4), ("voice", "standard", "rec", 1, 4, 0, 1)],  # Sales Concierge
    [("message", "standard", "ans", 5, 20, 1, 2), ("document", "standard", "doc", 1, 2, 0, 1)],  # Docs Helper
]


def _spend_history(db: Session, *, env: Env, org_id: str, agent_ids: list[str], since: datetime,
                   until: datetime) -> None:
    """Spends on every day from ``since`` to ``until``, quieter at weekends, each with the platform's
    kind of reference (``ans_…``, ``doc_…``, ``rec_…``, ``run_…``); the spend writes the ledger, the
    balance and the daily usage roll-up the Usage page charts."""
    rng = random.Random(2026)
    planned: list[tuple[datetime, str, Activity, Model, str, int]] = []
    for day in range(HISTORY.days + 1):
        start = since + timedelta(days=day)
        pace = 0.5 if start.weekday() >= 5 else 1.0
        for agent_id, workload in zip(agent_ids, WORKLOADS, strict=True):
            for activity, model, prefix, low, high, fewest, most in workload:
                for _ in range(rng.randint(fewest, most)):
                    at = start + timedelta(minutes=rng.randint(0, 11 * 60))
                    units = max(1, round(rng.randint(low, high) * pace))
                    if at <= until:
                        planned.append((at, agent_id, activity, model, prefix, units))
    conn, terms, wall = db.connection(), env.catalog.credits, wall_now()
    for n, (at, agent_id, activity, model, prefix, units) in enumerate(sorted(planned), start=1):
        request = SpendRequest(activity=activity, model=model, units=units, agent_id=agent_id,
                               reference=f"{prefix}_{at:%Y%m%d}_{n:04d}")
        spend(conn, terms=terms, org_id=org_id, request=request, at=at, wall_now=wall)
