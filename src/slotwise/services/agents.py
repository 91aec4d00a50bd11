"""Agents: created within capacity, archived to free a slot, unarchived only into a free slot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.capacity import reserve_growth
from slotwise.errors import Conflict, NotFound
from slotwise.models import Agent, new_id
from slotwise.services.context import Actor, Env
from slotwise.services.organizations import apply_restore
from slotwise.services.snapshot import load_snapshot, locked_org, read_snapshot


@dataclass(frozen=True, slots=True)
class NewAgent:
    """An agent as just written (no ORM object is built on the capacity check's path)."""

    id: str
    name: str
    archived_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AgentChange:
    agent: Agent | NewAgent
    restored_slots: int = 0  # a scheduled removal this change undid

    @property
    def notice(self) -> str | None:
        if not self.restored_slots:
            return None
        n = self.restored_slots
        return (
            f"Your scheduled removal of Additional Chatbot Slots was reduced by {n} "
            f"slot{'s' if n != 1 else ''} so this agent stays covered after your next billing date."
        )


def list_agents(db: Session, *, actor: Actor) -> Sequence[Agent]:
    return repo.agents_of_org(db, actor.org_id)


def create_agent(db: Session, *, env: Env, actor: Actor, name: str, at: datetime) -> AgentChange:
    """A new agent if one more fits the capacity paid for, else ``limit_reached``.

    Three round trips: the organization lock, then (ordered after it, so concurrent creations at the
    limit cannot both succeed) the snapshot, then the insert.
    """
    if not repo.lock_organization(db, actor.org_id):
        raise NotFound("No such organization.")
    decision = reserve_growth(read_snapshot(db, env.catalog, actor.org_id), "agents")
    apply_restore(db, actor.org_id, decision.addon, decision.restore_slots, at)
    agent = NewAgent(new_id("agt"), name.strip(), None, at)
    repo.insert_agent(db, agent_id=agent.id, org_id=actor.org_id, name=agent.name, at=at)
    return AgentChange(agent, decision.restore_slots)


def _agent(db: Session, actor: Actor, agent_id: str) -> Agent:
    agent = repo.agent_in_org(db, actor.org_id, agent_id)
    if agent is None:
        raise NotFound("No such agent.")
    return agent


def archive_agent(db: Session, *, actor: Actor, agent_id: str, at: datetime) -> Agent:
    """Archived agents keep their data but count for nothing."""
    locked_org(db, actor.org_id)
    agent = _agent(db, actor, agent_id)
    if agent.archived_at is None:
        agent.archived_at = at
    return agent


def unarchive_agent(db: Session, *, env: Env, actor: Actor, agent_id: str, at: datetime) -> AgentChange:
    """Unarchiving needs a free slot, exactly like creating."""
    org = locked_org(db, actor.org_id)
    agent = _agent(db, actor, agent_id)
    if agent.archived_at is None:
        raise Conflict("This agent is not archived.")
    decision = reserve_growth(load_snapshot(db, env.catalog, org), "agents")
    apply_restore(db, org.id, decision.addon, decision.restore_slots, at)
    agent.archived_at = None
    db.flush()
    return AgentChange(agent, decision.restore_slots)


def delete_agent(db: Session, *, actor: Actor, agent_id: str) -> None:
    locked_org(db, actor.org_id)
    db.delete(_agent(db, actor, agent_id))
    db.flush()
