"""Agents, members and invitations: the usage that capacity is counted against."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from slotwise import repositories as repo
from slotwise.api import present
from slotwise.api import schemas as s
from slotwise.api.deps import EnvDep, NowDep, OrgActor, SessionDep
from slotwise.api.idempotency import caller_scope, run_idempotent
from slotwise.services import agents, members
from slotwise.services.context import require_manager

router = APIRouter(tags=["team"])
ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": s.ErrorBody} for code in (401, 403, 404, 409, 422)
}
ORG = "/v1/organizations/{org}"


@router.get(ORG + "/agents", response_model=s.Page[s.AgentOut], responses=ERRORS)
def list_agents(
    actor: OrgActor, db: SessionDep, limit: s.PageLimit = s.DEFAULT_PAGE_SIZE, starting_after: s.StartingAfter = None
) -> s.Page[s.AgentOut]:
    """Oldest first, then by name."""
    after = None if starting_after is None else s.known_cursor(repo.agent_in_org(db, actor.org_id, starting_after))
    return present.page(repo.agents_page(db, actor.org_id, limit=limit, after=after), limit, present.agent)


@router.post(ORG + "/agents", status_code=201, response_model=s.AgentOut, responses=ERRORS)
def create_agent(
    body: s.CreateAgent, actor: OrgActor, request: Request, db: SessionDep, env: EnvDep, now: NowDep
) -> Response:
    def action() -> s.AgentOut:
        change = agents.create_agent(db, env=env, actor=actor, name=body.name, at=now)
        return present.agent(change.agent, change)

    return run_idempotent(request, db, scope=caller_scope(actor.user_id), now=now, body=body, action=action,
                          status_code=201)


@router.post(ORG + "/agents/{agent_id}/archive", response_model=s.AgentOut, responses=ERRORS)
def archive_agent(agent_id: str, actor: OrgActor, db: SessionDep, now: NowDep) -> s.AgentOut:
    return present.agent(agents.archive_agent(db, actor=actor, agent_id=agent_id, at=now))


@router.post(ORG + "/agents/{agent_id}/unarchive", response_model=s.AgentOut, responses=ERRORS)
def unarchive_agent(
    agent_id: str, actor: OrgActor, request: Request, db: SessionDep, env: EnvDep, now: NowDep
) -> Response:
    def action() -> s.AgentOut:
        change = agents.unarchive_agent(db, env=env, actor=actor, agent_id=agent_id, at=now)
        return present.agent(change.agent, change)

    return run_idempotent(request, db, scope=caller_scope(actor.user_id), now=now, body=None, action=action)


@router.delete(ORG + "/agents/{agent_id}", status_code=204, responses=ERRORS)
def delete_agent(agent_id: str, actor: OrgActor, db: SessionDep, now: NowDep) -> Response:
    agents.delete_agent(db, actor=actor, agent_id=agent_id, at=now)
    return Response(status_code=204)


@router.get(ORG + "/members", response_model=s.Page[s.UserOut], responses=ERRORS)
def list_members(
    actor: OrgActor, db: SessionDep, limit: s.PageLimit = s.DEFAULT_PAGE_SIZE, starting_after: s.StartingAfter = None
) -> s.Page[s.UserOut]:
    """Oldest first."""
    after = None if starting_after is None else s.known_cursor(repo.user_in_org(db, actor.org_id, starting_after))
    return present.page(repo.users_page(db, actor.org_id, limit=limit, after=after), limit, present.user)


@router.delete(ORG + "/members/{user_id}", status_code=204, responses=ERRORS)
def remove_member(user_id: str, actor: OrgActor, db: SessionDep, now: NowDep) -> Response:
    members.remove_member(db, actor=actor, user_id=user_id, at=now)
    return Response(status_code=204)


@router.get(ORG + "/invitations", response_model=s.Page[s.InvitationOut], responses=ERRORS)
def list_invitations(
    actor: OrgActor, db: SessionDep, limit: s.PageLimit = s.DEFAULT_PAGE_SIZE, starting_after: s.StartingAfter = None
) -> s.Page[s.InvitationOut]:
    """Oldest first."""
    after = None if starting_after is None else s.known_cursor(
        repo.invitation_in_org(db, actor.org_id, starting_after))
    return present.page(repo.invitations_page(db, actor.org_id, limit=limit, after=after), limit,
                        present.invitation)


@router.post(ORG + "/invitations", status_code=201, response_model=s.CreatedInvitation, responses=ERRORS)
def create_invitation(
    body: s.CreateInvitation, actor: OrgActor, request: Request, db: SessionDep, env: EnvDep, now: NowDep
) -> Response:
    def action() -> s.CreatedInvitation:
        new = members.invite(db, env=env, actor=actor, email=body.email, role=body.role, at=now)
        return s.CreatedInvitation(**present.invitation(new.invitation).model_dump(), token=new.token,
                                   restored_slots=new.restored_slots)

    return run_idempotent(request, db, scope=caller_scope(actor.user_id), now=now, body=body, action=action,
                          authorize=lambda: require_manager(actor), status_code=201)


@router.delete(ORG + "/invitations/{invitation_id}", status_code=204, responses=ERRORS)
def revoke_invitation(invitation_id: str, actor: OrgActor, db: SessionDep, now: NowDep) -> Response:
    members.revoke_invitation(db, actor=actor, invitation_id=invitation_id, at=now)
    return Response(status_code=204)


@router.post("/v1/invitations/{token}/accept", status_code=201, response_model=s.UserWithToken,
             responses=ERRORS)
def accept_invitation(token: str, body: s.AcceptInvitation, db: SessionDep, now: NowDep) -> s.UserWithToken:
    withdrawn = members.withdraw_if_unusable(db, token=token, at=now)
    if withdrawn is not None:
        db.commit()  # the withdrawal (its seat freed) stands although the acceptance is refused
        raise withdrawn
    new = members.accept_invitation(db, token=token, name=body.name, password=body.password, at=now)
    return s.UserWithToken(**present.user(new.user).model_dump(), api_token=new.api_token)
