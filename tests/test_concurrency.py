"""Capacity under concurrency: 16 creations at limit − 1 give exactly one success.

Each worker has its own connection and transaction, released together by a barrier. PostgreSQL
serializes them on the organization row lock (SELECT … FOR UPDATE); SQLite on BEGIN IMMEDIATE.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from slotwise.db import transaction
from slotwise.errors import LimitReached
from slotwise.models import Agent, Invitation
from slotwise.services import agents, members, organizations
from slotwise.services.context import Actor, Env

AT = datetime(2026, 11, 20, tzinfo=UTC)
WORKERS = 16


def _pro_org(sessions: sessionmaker[Session], env: Env) -> Actor:
    with transaction(sessions) as db:
        created = organizations.create_organization(
            db, env=env, name="Race", owner_email="race@example.test", owner_name=None, owner_password=None,
            plan_code="pro", card_number=None, at=AT)
        return Actor(created.owner.user.id, created.organization.id, "owner")


def _race(sessions: sessionmaker[Session], attempt: Callable[[Session, int], None]) -> tuple[int, int]:
    barrier = threading.Barrier(WORKERS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        barrier.wait()
        try:
            with transaction(sessions) as db:
                attempt(db, i)
            result = "ok"
        except LimitReached:
            result = "limit"
        except Exception as error:  # anything else is a bug the assertion will show
            result = repr(error)
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(o in ("ok", "limit") for o in outcomes), outcomes
    return outcomes.count("ok"), outcomes.count("limit")


class TestConcurrentCreationsAtTheLimit:
    def test_agents(self, sessions: sessionmaker[Session], env: Env) -> None:
        actor = _pro_org(sessions, env)
        with transaction(sessions) as db:
            for i in range(4):  # pro includes 5 agents
                agents.create_agent(db, env=env, actor=actor, name=f"a{i}", at=AT)

        def create(db: Session, i: int) -> None:
            agents.create_agent(db, env=env, actor=actor, name=f"racer{i}", at=AT)

        ok, refused = _race(sessions, create)

        assert (ok, refused) == (1, WORKERS - 1)
        with sessions() as db:
            count = db.scalar(select(func.count()).select_from(Agent).where(Agent.org_id == actor.org_id))
        assert count == 5

    def test_invitations(self, sessions: sessionmaker[Session], env: Env) -> None:
        actor = _pro_org(sessions, env)
        with transaction(sessions) as db:  # pro includes 3 members: owner + 1 invitation = limit − 1
            members.invite(db, env=env, actor=actor, email="first@example.test", role="member", at=AT)

        def invite(db: Session, i: int) -> None:
            members.invite(db, env=env, actor=actor, email=f"racer{i}@example.test", role="member", at=AT)

        ok, refused = _race(sessions, invite)

        assert (ok, refused) == (1, WORKERS - 1)
        with sessions() as db:
            count = db.scalar(select(func.count()).select_from(Invitation).where(Invitation.org_id == actor.org_id))
        assert count == 2
