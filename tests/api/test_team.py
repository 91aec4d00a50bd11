"""People and agents: what counts as usage (SPEC §2) and how seats and slots are freed."""

from __future__ import annotations

from typing import Any

from tests.factories import Api, Org, error_of, invite


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def used(org: Org, resource: str) -> int:
    return org.capacity(resource)["used"]


class TestMemberUsage:
    def test_members_including_the_owner_plus_pending_invitations(self, api: Api) -> None:
        org = api.create_org("business")
        assert used(org, "members") == 1  # the Owner
        org.add_member("admin")
        assert used(org, "members") == 2
        ok(invite(org), 201)
        ok(invite(org, role="admin"), 201)
        assert used(org, "members") == 4
        assert len(org.items("/members")) == 2
        assert len(org.items("/invitations")) == 2

    def test_revoking_an_invitation_frees_the_seat_at_once(self, api: Api) -> None:
        org = api.create_org("pro")  # 3 seats
        org.add_member()
        invitation = ok(invite(org), 201)
        error_of(invite(org), 409, "limit_reached")
        ok(org.delete(f"/invitations/{invitation['id']}"), 204)
        assert used(org, "members") == 2
        assert org.items("/invitations") == []
        ok(invite(org), 201)
        # The revoked invitation's link no longer works.
        error_of(api.client.post(f"/v1/invitations/{invitation['token']}/accept", json={"password": "x" * 10}),
                 404, "not_found")

    def test_removing_a_member_frees_the_seat_and_their_token(self, api: Api) -> None:
        org = api.create_org("pro")
        member = org.add_member()
        org.add_member()
        error_of(invite(org), 409, "limit_reached")
        ok(org.delete(f"/members/{member['id']}"), 204)
        assert used(org, "members") == 2
        assert member["id"] not in {m["id"] for m in org.items("/members")}
        error_of(org.get(token=member["api_token"]), 401, "unauthenticated")
        ok(invite(org), 201)

    def test_an_admin_can_manage_the_team_but_a_member_cannot(self, api: Api) -> None:
        org = api.create_org("business")
        admin, member = org.add_member("admin"), org.add_member("member")
        ok(invite(org, token=admin["api_token"]), 201)
        error_of(invite(org, token=member["api_token"]), 403, "forbidden")
        error_of(org.delete(f"/members/{admin['id']}", token=member["api_token"]), 403, "forbidden")
        ok(org.delete(f"/members/{member['id']}", token=admin["api_token"]), 204)
        assert used(org, "members") == 3

    def test_the_owner_cannot_be_removed(self, api: Api) -> None:
        org = api.create_org("pro")
        admin = org.add_member("admin")
        error_of(org.delete(f"/members/{org.owner_id}", token=admin["api_token"]), 403, "forbidden")
        assert org.summary()["id"] == org.id
        assert used(org, "members") == 2

    def test_inviting_the_same_person_twice_is_refused(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(invite(org, "twice@example.test"), 201)
        response = invite(org, "TWICE@example.test")
        assert response.status_code == 409, response.text
        assert used(org, "members") == 2


class TestAcceptInvitation:
    def test_the_seat_moves_and_the_user_gets_a_token(self, api: Api) -> None:
        org = api.create_org("pro")
        invitation = ok(invite(org, "newcomer@example.test", role="admin"), 201)
        assert used(org, "members") == 2
        user = ok(api.client.post(f"/v1/invitations/{invitation['token']}/accept",
                                  json={"name": "New Comer", "password": "a-long-password"}), 201)
        assert (user["email"], user["role"], user["name"]) == ("newcomer@example.test", "admin", "New Comer")
        assert used(org, "members") == 2  # moved, not added
        assert org.items("/invitations") == []
        assert user["id"] in {m["id"] for m in org.items("/members")}
        # The new token works for this organization, and only for it.
        assert org.get(token=user["api_token"]).json()["id"] == org.id
        other = api.create_org("pro")
        error_of(other.get(token=user["api_token"]), 404, "not_found")

    def test_an_invitation_is_accepted_once(self, api: Api) -> None:
        org = api.create_org("pro")
        invitation = ok(invite(org), 201)
        path = f"/v1/invitations/{invitation['token']}/accept"
        ok(api.client.post(path, json={"password": "a-long-password"}), 201)
        error_of(api.client.post(path, json={"password": "a-long-password"}), 404, "not_found")
        assert used(org, "members") == 2

    def test_a_short_password_is_refused_and_the_invitation_stays(self, api: Api) -> None:
        org = api.create_org("pro")
        invitation = ok(invite(org), 201)
        error_of(api.client.post(f"/v1/invitations/{invitation['token']}/accept", json={"password": "short"}),
                 422, "invalid_request")
        assert len(org.items("/invitations")) == 1


class TestAgents:
    def test_archived_agents_do_not_count(self, api: Api) -> None:
        org = api.create_org("starter")  # 2 agents included
        first, _second = org.create_agents(2)
        error_of(org.post("/agents", {"name": "Third"}), 409, "limit_reached")
        archived = ok(org.post(f"/agents/{first}/archive"))
        assert archived["status"] == "archived" and archived["archived_at"]
        assert used(org, "agents") == 1
        ok(org.post("/agents", {"name": "Third"}), 201)
        agents = org.items("/agents")
        assert len(agents) == 3  # the archived one keeps its data
        assert sorted(a["status"] for a in agents) == ["active", "active", "archived"]

    def test_unarchive_needs_a_free_slot(self, api: Api) -> None:
        org = api.create_org("starter")
        first, second = org.create_agents(2)
        ok(org.post(f"/agents/{first}/archive"))
        org.create_agents(1)
        error = error_of(org.post(f"/agents/{first}/unarchive"), 409, "limit_reached")
        assert error["addon"] == "agent_slots"
        assert used(org, "agents") == 2
        ok(org.post(f"/agents/{second}/archive"))
        back = ok(org.post(f"/agents/{first}/unarchive"))
        assert back["status"] == "active" and back["archived_at"] is None
        assert used(org, "agents") == 2

    def test_unarchiving_an_active_agent_is_refused(self, api: Api) -> None:
        org = api.create_org("starter")
        [agent] = org.create_agents(1)
        response = org.post(f"/agents/{agent}/unarchive")
        assert response.status_code == 409, response.text
        assert used(org, "agents") == 1

    def test_delete_frees_the_slot_and_the_agent_is_gone(self, api: Api) -> None:
        org = api.create_org("free")
        [agent] = org.create_agents(1)
        ok(org.delete(f"/agents/{agent}"), 204)
        assert used(org, "agents") == 0
        assert org.items("/agents") == []
        error_of(org.delete(f"/agents/{agent}"), 404, "not_found")
        error_of(org.post(f"/agents/{agent}/unarchive"), 404, "not_found")
        org.create_agents(1)

    def test_deleting_an_archived_agent(self, api: Api) -> None:
        org = api.create_org("free")
        [agent] = org.create_agents(1)
        ok(org.post(f"/agents/{agent}/archive"))
        ok(org.delete(f"/agents/{agent}"), 204)
        assert org.items("/agents") == []

    def test_every_member_can_create_agents(self, api: Api) -> None:
        org = api.create_org("pro")
        member = org.add_member("member")
        created = ok(org.post("/agents", {"name": "By a member"}, token=member["api_token"]), 201)
        assert created["name"] == "By a member"
        assert used(org, "agents") == 1

    def test_bad_agent_names(self, api: Api) -> None:
        org = api.create_org("pro")
        for body in ({"name": ""}, {"name": "   "}, {"name": "x" * 201}, {}, {"name": "ok", "extra": 1}):
            error_of(org.post("/agents", body), 422, "invalid_request")
        assert used(org, "agents") == 0
