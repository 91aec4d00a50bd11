"""Team (members, invitations, seats) and Agents (the usage that chatbot slots cover)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from pydantic import ValidationError
from starlette.responses import Response

from slotwise.api import schemas as s
from slotwise.errors import InvalidRequest, SlotwiseError
from slotwise.services import agents, members
from slotwise.web.billing import org_overview
from slotwise.web.deps import FormDep, Page, PageDep, act
from slotwise.web.render import Flash, render
from slotwise.web.visibility import VisibilityForm, visibility_section

router = APIRouter(include_in_schema=False)
TEAM = "/team"
AGENTS = "/agents"
TextField = Annotated[str, Form()]


@router.get(TEAM)
def team_page(page: PageDep) -> Response:
    overview = org_overview(page)
    seats = overview.capacity["members"]
    return render(page.request, "team.html", {
        "page": page, "nav": "team", "overview": overview, "seats": seats,
        "members": members.list_members(page.db, actor=page.actor),
        "invitations": members.list_invitations(page.db, actor=page.actor),
        "teams": overview.plan.teams, "at_limit": overview.plan.teams and seats.used >= seats.total,
    })


@router.post(TEAM + "/invitations")
def invite(page: FormDep, email: TextField = "", role: TextField = "member") -> Response:
    def action() -> Flash:
        try:
            body = s.CreateInvitation.model_validate({"email": email, "role": role})
        except ValidationError:
            raise InvalidRequest("Enter a valid email address and choose a role.", field="email") from None
        new = members.invite(page.db, env=page.env, actor=page.actor, email=body.email, role=body.role,
                             at=page.now)
        link = str(page.request.base_url).rstrip("/") + f"/invitations/{new.token}"
        return Flash("success", f"{body.email} was invited.", f"Send them this link to join: {link}")

    return act(page, TEAM, action)


@router.post(TEAM + "/invitations/{invitation_id}/revoke")
def revoke(invitation_id: str, page: FormDep) -> Response:
    def action() -> Flash:
        members.revoke_invitation(page.db, actor=page.actor, invitation_id=invitation_id, at=page.now)
        return Flash("success", "The invitation was revoked and its seat is free again.")

    return act(page, TEAM, action)


@router.post(TEAM + "/members/{user_id}/remove")
def remove_member(user_id: str, page: FormDep) -> Response:
    def action() -> Flash:
        members.remove_member(page.db, actor=page.actor, user_id=user_id, at=page.now)
        return Flash("success", "The member was removed and their seat is free again.")

    return act(page, TEAM, action)


@router.get(AGENTS)
def agents_page(page: PageDep) -> Response:
    return render_agents(page)


def render_agents(page: Page, *, typed: VisibilityForm | None = None, error: SlotwiseError | None = None,
                  status_code: int = 200) -> Response:
    """The Agents page; ``typed`` and ``error`` are a refused Visibility form, shown on its agent."""
    overview = org_overview(page)
    usage = overview.capacity["agents"]
    listed = agents.list_agents(page.db, actor=page.actor)
    return render(page.request, "agents.html", {
        "page": page, "nav": "agents", "overview": overview, "usage": usage,
        "agents": listed, "at_limit": usage.used >= usage.total,
        "visibility": visibility_section(page, listed, typed=typed, error=error),
    }, status_code=status_code)


@router.post(AGENTS)
def create_agent(page: FormDep, name: TextField = "") -> Response:
    def action() -> Flash:
        try:
            body = s.CreateAgent(name=name)
        except ValidationError:
            raise InvalidRequest("Give the agent a name of up to 200 characters.", field="name") from None
        change = agents.create_agent(page.db, env=page.env, actor=page.actor, name=body.name, at=page.now)
        return Flash("success", f"{change.agent.name} was created.", change.notice)

    return act(page, AGENTS, action)


@router.post(AGENTS + "/{agent_id}/archive")
def archive_agent(agent_id: str, page: FormDep) -> Response:
    def action() -> Flash:
        agent = agents.archive_agent(page.db, actor=page.actor, agent_id=agent_id, at=page.now)
        return Flash("success", f"{agent.name} was archived. Its data is kept and it no longer uses a slot.")

    return act(page, AGENTS, action)


@router.post(AGENTS + "/{agent_id}/unarchive")
def unarchive_agent(agent_id: str, page: FormDep) -> Response:
    def action() -> Flash:
        change = agents.unarchive_agent(page.db, env=page.env, actor=page.actor, agent_id=agent_id, at=page.now)
        return Flash("success", f"{change.agent.name} is active again.", change.notice)

    return act(page, AGENTS, action)


@router.post(AGENTS + "/{agent_id}/delete")
def delete_agent(agent_id: str, page: FormDep) -> Response:
    def action() -> Flash:
        agents.delete_agent(page.db, actor=page.actor, agent_id=agent_id, at=page.now)
        return Flash("success", "The agent was deleted.")

    return act(page, AGENTS, action)
