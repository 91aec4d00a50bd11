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
from slotwise.services import audit
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
    by = audit.by_user(db, actor)
    apply_restore(db, actor.org_id, decision.addon, decision.restore_slots, by=by, at=at)
    agent = NewAgent(new_id("agt"), name.strip(), None, at)
    repo.insert_agent(db, agent_id=agent.id, org_id=actor.org_id, name=agent.name, at=at)
    agent_changed(db, org_id=actor.org_id, by=by, kind="agent.created", agent_id=agent.id, name=agent.name,
                  before=None, after=False, at=at)
    return AgentChange(agent, decision.restore_slots)


def agent_changed(db: Session, *, org_id: str, by: audit.By, kind: str, agent_id: str, name: str,
                  before: bool | None, after: bool | None, at: datetime) -> None:
    """The entry of an agent that came, went, was archived or restored (a slot taken or freed);
    ``before`` and ``after``: whether it was archived (None: it did not exist)."""
    def state(archived: bool | None) -> dict[str, object] | None:
        return None if archived is None else {"name": name, "archived": archived}

    audit.record(db, org_id=org_id, by=by, kind=kind, at=at, subject_id=agent_id, before=state(before),
                 after=state(after))


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
        agent_changed(db, org_id=actor.org_id, by=audit.by_user(db, actor), kind="agent.archived",
                      agent_id=agent.id, name=agent.name, before=False, after=True, at=at)
    return agent


def unarchive_agent(db: Session, *, env: Env, actor: Actor, agent_id: str, at: datetime) -> AgentChange:
    """Unarchiving needs a free slot, exactly like creating."""
    org = locked_org(db, actor.org_id)
    agent = _agent(db, actor, agent_id)
    if agent.archived_at is None:
        raise Conflict("This agent is not archived.")
    decision = reserve_growth(load_snapshot(db, env.catalog, org), "agents")
    by = audit.by_user(db, actor)
    apply_restore(db, org.id, decision.addon, decision.restore_slots, by=by, at=at)
    agent.archived_at = None
    db.flush()
    agent_changed(db, org_id=org.id, by=by, kind="agent.restored", agent_id=agent.id, name=agent.name,
                  before=True, after=False, at=at)
    return AgentChange(agent, decision.restore_slots)


def delete_agent(db: Session, *, actor: Actor, agent_id: str, at: datetime) -> None:
    """Deleted agents are gone (their slot is free at once). ``at``: the billing time."""
    locked_org(db, actor.org_id)
    agent = _agent(db, actor, agent_id)
    agent_changed(db, org_id=actor.org_id, by=audit.by_user(db, actor), kind="agent.deleted", agent_id=agent.id,
                  name=agent.name, before=agent.archived_at is not None, after=None, at=at)
    db.delete(agent)
    db.flush()
