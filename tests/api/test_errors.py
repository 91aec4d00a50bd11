"""Every error code of SPEC §6 through the HTTP API: its status, its code and the details a client
relies on. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from slotwise.models import Charge
from tests.factories import (
    DECLINED_CARD,
    GOOD_CARD,
    INSUFFICIENT_CARD,
    Api,
    Org,
    change_plan,
    error_of,
    invite,
    preview,
    set_card,
)

OWNER_ONLY = "Add-ons are Owner Only. Ask your organization owner to make the change."


def charges_of(engine: Engine, org: Org) -> int:
    with Session(engine) as db:
        return db.scalar(select(func.count()).select_from(Charge).where(Charge.org_id == org.id)) or 0


class TestUnauthenticated:
    def test_no_token(self, api: Api) -> None:
        org = api.create_org("pro")
        error_of(api.client.get(org.path), 401, "unauthenticated")
        error_of(api.client.post(org.path + "/addons/agent_slots/add", json={"quantity": 1}), 401,
                 "unauthenticated")

    def test_bad_token_and_wrong_scheme(self, api: Api) -> None:
        org = api.create_org("pro")
        error_of(org.get(token="swt_not-a-real-token"), 401, "unauthenticated")
        basic = api.client.get(org.path, headers={"Authorization": f"Basic {org.token}"})
        error_of(basic, 401, "unauthenticated")

    def test_auth_is_checked_before_the_body(self, api: Api) -> None:
        org = api.create_org("pro")
        error_of(org.add_slots("agent_slots", 0, token="nope"), 401, "unauthenticated")
        assert org.capacity("agents")["active_slots"] == 0

    def test_operator_routes_need_the_operator_key(self, api: Api) -> None:
        org = api.create_org("pro")
        body = {"name": "Intruder", "owner_email": "intruder@example.test"}
        error_of(api.client.post("/v1/operator/organizations", json=body), 401, "unauthenticated")
        wrong = api.client.post("/v1/operator/organizations", json=body, headers=api.bearer("wrong-key"))
        error_of(wrong, 401, "unauthenticated")
        as_owner = api.client.post("/v1/operator/organizations", json=body, headers=api.bearer(org.token))
        error_of(as_owner, 401, "unauthenticated")
        error_of(api.client.post("/v1/operator/billing/run", headers=api.bearer("wrong-key")), 401,
                 "unauthenticated")
        error_of(api.client.post("/v1/operator/clock", json={"advance_days": 30}, headers=api.bearer("x")),
                 401, "unauthenticated")
        # The refused clock call moved nothing: no renewal happened.
        assert org.summary()["subscription"]["current_period"]["start"].startswith("2026-11-15")


@pytest.mark.parametrize("role", ["admin", "member"])
class TestOwnerOnly:
    """Only the Owner may buy, remove or change anything billing-related (SPEC §2)."""

    def _refused(self, response: Any, what: str = "Add-ons") -> None:
        error = error_of(response, 403, "owner_only")
        assert error["message"] == OWNER_ONLY.replace("Add-ons", what)

    def test_add_remove_keep_preview(self, api: Api, role: str) -> None:
        org = api.create_org("pro")
        assert org.add_slots("agent_slots", 2).status_code == 200
        assert org.remove_slots("agent_slots", 1).status_code == 200
        token = org.add_member(role)["api_token"]
        before = org.summary()
        invoices = len(org.invoices())

        self._refused(org.add_slots("agent_slots", 1, token=token))
        self._refused(org.remove_slots("agent_slots", 1, token=token))
        self._refused(org.remove_slots("agent_slots", token=token))
        self._refused(org.post("/addons/agent_slots/keep", token=token))
        self._refused(preview(org, "agent_slots", "add", 1, token=token))
        self._refused(preview(org, "agent_slots", "remove", 1, token=token))

        after = org.summary()
        assert after["capacity"] == before["capacity"]
        assert after["monthly_total"] == before["monthly_total"]
        assert len(org.invoices()) == invoices

    def test_plan_and_payment_method(self, api: Api, role: str) -> None:
        org = api.create_org("pro")
        token = org.add_member(role)["api_token"]
        # The refusal says what was refused, in the help page's words.
        self._refused(change_plan(org, "business", token=token), "Plan changes")
        self._refused(change_plan(org, "starter", token=token), "Plan changes")
        self._refused(set_card(org, DECLINED_CARD, token=token), "Payment method changes")
        summary = org.summary()
        assert summary["plan"]["code"] == "pro"
        assert summary["subscription"]["scheduled_plan"] is None
        assert summary["payment_method"]["last4"] == GOOD_CARD[-4:]

    def test_reading_addons_is_allowed(self, api: Api, role: str) -> None:
        org = api.create_org("pro")
        token = org.add_member(role)["api_token"]
        response = org.get("/addons", token=token)
        assert response.status_code == 200
        assert {a["code"] for a in response.json()} == {"agent_slots", "member_slots"}


class TestNotFound:
    """Another organization's ids answer exactly like ids that never existed (SPEC §9)."""

    def test_another_organizations_path(self, api: Api) -> None:
        mine, theirs = api.create_org("pro"), api.create_org("pro")
        for response in (
            mine.api.client.get(theirs.path, headers=api.bearer(mine.token)),
            theirs.get("/invoices", token=mine.token),
            theirs.get("/addons", token=mine.token),
            theirs.get("/agents", token=mine.token),
            theirs.get("/members", token=mine.token),
            theirs.add_slots("agent_slots", 1, token=mine.token),
            theirs.remove_slots("agent_slots", token=mine.token),
            theirs.post("/agents", {"name": "Sneaky"}, token=mine.token),
            change_plan(theirs, "starter", token=mine.token),
            set_card(theirs, DECLINED_CARD, token=mine.token),
        ):
            error_of(response, 404, "not_found")
        cap = theirs.capacity("agents")
        assert (cap["active_slots"], cap["used"]) == (0, 0)
        assert theirs.summary()["payment_method"]["last4"] == GOOD_CARD[-4:]
        assert theirs.summary()["subscription"]["scheduled_plan"] is None

    def test_unknown_organization(self, api: Api) -> None:
        org = api.create_org("pro")
        error_of(api.client.get("/v1/organizations/org_0000000000000000", headers=api.bearer(org.token)),
                 404, "not_found")
        error_of(api.operator("/organizations/org_0000000000000000/users",
                              {"email": "x@example.test", "role": "member"}), 404, "not_found")

    def test_another_organizations_objects_in_my_path(self, api: Api) -> None:
        mine, theirs = api.create_org("pro"), api.create_org("pro")
        agent_id = theirs.create_agents(1)[0]
        invoice_id = theirs.invoices()[0]["id"]
        member_id = theirs.add_member()["id"]
        invitation_id = invite(theirs).json()["id"]

        error_of(mine.get(f"/invoices/{invoice_id}"), 404, "not_found")
        error_of(mine.post(f"/agents/{agent_id}/archive"), 404, "not_found")
        error_of(mine.post(f"/agents/{agent_id}/unarchive"), 404, "not_found")
        error_of(mine.delete(f"/agents/{agent_id}"), 404, "not_found")
        error_of(mine.delete(f"/members/{member_id}"), 404, "not_found")
        error_of(mine.delete(f"/invitations/{invitation_id}"), 404, "not_found")

        assert [a["status"] for a in theirs.items("/agents")] == ["active"]
        assert member_id in {m["id"] for m in theirs.items("/members")}
        assert [i["id"] for i in theirs.items("/invitations")] == [invitation_id]

    def test_unknown_ids_and_addon(self, api: Api) -> None:
        org = api.create_org("pro")
        error_of(org.get("/invoices/inv_0000000000000000"), 404, "not_found")
        error_of(org.post("/agents/agt_0000000000000000/archive"), 404, "not_found")
        error_of(org.add_slots("storage_slots", 1), 404, "not_found")
        error_of(org.remove_slots("storage_slots", 1), 404, "not_found")
        error_of(org.post("/addons/storage_slots/keep"), 404, "not_found")
        error_of(preview(org, "storage_slots", "add", 1), 404, "not_found")
        error_of(api.client.post("/v1/invitations/inv_bogus/accept", json={"password": "long-enough"}),
                 404, "not_found")
        assert len(org.invoices()) == 1


    def test_ids_no_object_can_have(self, api: Api) -> None:
        """A NUL in an id is just an unknown id (PostgreSQL would otherwise fail the lookup: a 500)."""
        org = api.create_org("pro")
        for response in (
            org.get("/invoices/inv%00x"),
            org.post("/agents/agt%00x/archive"),
            org.delete("/agents/agt%00x"),
            org.delete("/members/usr%00x"),
            org.delete("/invitations/ivt%00x"),
            api.client.post("/v1/operator/organizations/org%00x/users", json={"email": "n@example.test",
                                                                                "role": "member"},
                            headers=api.bearer(api.operator_key)),
        ):
            error_of(response, 404, "not_found")


class TestInvalidRequest:
    @pytest.mark.parametrize(("path", "body"), [
        ("/agents", {"name": "Sales\u0000Bot"}),
        ("/agents", {"name": "Line\nbreak"}),
        ("/invitations", {"email": "nul\u0000@example.test"}),
    ])
    def test_control_characters_in_stored_text(self, api: Api, path: str, body: dict[str, Any]) -> None:
        org = api.create_org("pro")
        error_of(org.post(path, body), 422, "invalid_request")
        assert org.capacity("agents")["used"] == 0 and org.capacity("members")["used"] == 1

    def test_control_characters_in_a_new_organization(self, api: Api) -> None:
        for body in ({"name": "Acme\u0000", "owner_email": "ctl1@example.test"},
                     {"name": "Acme", "owner_email": "ctl\u0000@example.test"},
                     {"name": "Acme", "owner_email": "ctl2@example.test", "owner_name": "A\u0007B"}):
            error_of(api.operator("/organizations", body), 422, "invalid_request")

    @pytest.mark.parametrize("body", [
        {"quantity": 0}, {"quantity": 101}, {"quantity": -1}, {"quantity": "2"}, {"quantity": 2.5},
        {"quantity": None}, {}, {"quantity": 2, "price": 1}, [2],
    ], ids=["zero", "101", "negative", "string", "float", "null", "missing", "extra-field", "not-object"])
    def test_bad_add_bodies_change_nothing(self, api: Api, body: Any) -> None:
        org = api.create_org("pro")
        error = error_of(org.post("/addons/agent_slots/add", body), 422, "invalid_request")
        assert error["message"]
        assert org.capacity("agents")["total"] == 5
        assert len(org.invoices()) == 1

    def test_malformed_json(self, api: Api) -> None:
        org = api.create_org("pro")
        response = api.client.post(org.path + "/addons/agent_slots/add", content=b"{quantity: 2",
                                   headers={**api.bearer(org.token), "Content-Type": "application/json"})
        error_of(response, 422, "invalid_request")

    @pytest.mark.parametrize("body", [
        {"quantity": 1, "all": True}, {}, {"all": False}, {"quantity": 0}, {"quantity": 101},
    ], ids=["all-and-quantity", "neither", "all-false", "zero", "101"])
    def test_bad_remove_bodies(self, api: Api, body: dict[str, Any]) -> None:
        org = api.create_org("pro")
        assert org.add_slots("agent_slots", 2).status_code == 200
        error_of(org.post("/addons/agent_slots/remove", body), 422, "invalid_request")
        assert org.capacity("agents")["renewal_slots"] == 2

    def test_preview_bodies(self, api: Api) -> None:
        org = api.create_org("pro")
        error_of(org.post("/addons/agent_slots/preview", {"action": "add"}), 422, "invalid_request")
        error_of(org.post("/addons/agent_slots/preview", {"action": "buy", "quantity": 1}), 422,
                 "invalid_request")
        error_of(org.post("/addons/agent_slots/preview", {"action": "remove", "quantity": 1, "all": True}),
                 422, "invalid_request")

    def test_remove_more_than_you_have(self, api: Api) -> None:
        org = api.create_org("pro")
        assert org.add_slots("agent_slots", 2).status_code == 200
        error = error_of(org.remove_slots("agent_slots", 3), 422, "invalid_request")
        assert error["field"] == "quantity"
        assert "2" in error["message"]
        assert org.capacity("agents")["renewal_slots"] == 2
        assert org.remove_slots("agent_slots", 2).status_code == 200
        error_of(org.remove_slots("agent_slots", 1), 422, "invalid_request")
        error_of(org.remove_slots("agent_slots"), 422, "invalid_request")

    def test_remove_an_addon_never_bought(self, api: Api) -> None:
        org = api.create_org("pro")
        error_of(org.remove_slots("member_slots", 1), 422, "invalid_request")

    def test_keep_without_a_scheduled_removal(self, api: Api) -> None:
        org = api.create_org("pro")
        assert org.add_slots("agent_slots", 2).status_code == 200
        error_of(org.post("/addons/agent_slots/keep"), 422, "invalid_request")

    @pytest.mark.parametrize("card", ["4242424242424241", "abcd", "4242", "4242-4242-4242-4242-4242-4242"])
    def test_bad_card_number(self, api: Api, card: str) -> None:
        org = api.create_org("pro")
        error = error_of(set_card(org, card), 422, "invalid_request")
        assert error["message"]
        assert org.summary()["payment_method"]["last4"] == GOOD_CARD[-4:]

    def test_bad_card_number_at_creation(self, api: Api) -> None:
        body = {"name": "Bad Card", "owner_email": "badcard@example.test", "plan": "pro",
                "card_number": "4242424242424241"}
        error = error_of(api.operator("/organizations", body), 422, "invalid_request")
        assert error["field"] == "card_number"

    def test_unknown_plan(self, api: Api) -> None:
        org = api.create_org("pro")
        error_of(change_plan(org, "platinum"), 422, "invalid_request")
        error_of(api.operator("/organizations", {"name": "X", "owner_email": "x1@example.test",
                                                 "plan": "platinum"}), 422, "invalid_request")

    def test_clock_needs_exactly_one_of_advance_days_or_to(self, api: Api) -> None:
        error_of(api.operator("/clock", {}), 422, "invalid_request")
        error_of(api.operator("/clock", {"advance_days": 1, "to": "2027-01-01T00:00:00Z"}), 422,
                 "invalid_request")
        error_of(api.operator("/clock", {"advance_days": -1}), 422, "invalid_request")

    def test_the_clock_moves_at_most_3660_days_at_once_either_way(self, api: Api) -> None:
        error_of(api.operator("/clock", {"advance_days": 3661}), 422, "invalid_request")
        error_of(api.operator("/clock", {"to": "2046-01-01T00:00:00Z"}), 422, "invalid_request")
        assert api.clock_to("2027-01-01T00:00:00Z")["at"] == "2027-01-01T00:00:00Z"


class TestSubscriptionRequired:
    def test_free_org_cannot_add_slots(self, api: Api) -> None:
        org = api.create_org("free")
        error = error_of(org.add_slots("agent_slots", 1), 409, "subscription_required")
        assert error["message"]
        assert org.capacity("agents")["total"] == 1
        assert org.invoices() == []

    def test_free_org_preview_says_why(self, api: Api) -> None:
        org = api.create_org("free")
        response = preview(org, "agent_slots", "add", 1)
        assert response.status_code == 200
        body = response.json()
        assert body["allowed"] is False
        assert body["reason"] == "subscription_required"
        addons = {a["code"]: a for a in org.get("/addons").json()}
        assert addons["agent_slots"]["available"] is False


class TestAddonUnavailable:
    def test_member_slots_on_starter(self, api: Api) -> None:
        org = api.create_org("starter")
        error = error_of(org.add_slots("member_slots", 1), 409, "addon_unavailable")
        assert error["addon"] == "member_slots"
        assert org.capacity("members")["total"] == 1
        assert len(org.invoices()) == 1
        addons = {a["code"]: a for a in org.get("/addons").json()}
        assert addons["member_slots"]["available"] is False and addons["member_slots"]["reason"]
        assert addons["agent_slots"]["available"] is True

    def test_downgrade_refused_while_an_addon_the_new_plan_lacks_has_slots(self, api: Api) -> None:
        org = api.create_org("pro")
        assert org.add_slots("member_slots", 1).status_code == 200
        error = error_of(change_plan(org, "starter"), 409, "addon_unavailable")
        assert error["addon"] == "member_slots"
        assert "Additional Team Member Slots" in error["message"]
        assert org.summary()["subscription"]["scheduled_plan"] is None
        # Removing the add-on first lets the downgrade through.
        assert org.remove_slots("member_slots").status_code == 200
        assert change_plan(org, "starter").status_code == 200
        assert org.summary()["subscription"]["scheduled_plan"] == "starter"

    def test_no_new_member_slots_once_a_plan_without_teams_is_scheduled(self, api: Api) -> None:
        org = api.create_org("pro")
        assert change_plan(org, "starter").status_code == 200
        error = error_of(org.add_slots("member_slots", 1), 409, "addon_unavailable")
        assert error["addon"] == "member_slots"


class TestTeamsUnavailable:
    @pytest.mark.parametrize("plan", ["free", "starter"])
    def test_invite_on_a_plan_without_teams(self, api: Api, plan: str) -> None:
        org = api.create_org(plan)
        error = error_of(invite(org), 409, "teams_unavailable")
        assert "Upgrade to use team" in error["message"]
        assert org.items("/invitations") == []
        assert org.capacity("members")["used"] == 1

    def test_operator_adding_a_user_on_starter(self, api: Api) -> None:
        org = api.create_org("starter")
        response = api.operator(f"/organizations/{org.id}/users", {"email": "s@example.test", "role": "member"})
        error_of(response, 409, "teams_unavailable")


class TestLimitReached:
    def test_agent_creation_at_capacity(self, api: Api) -> None:
        org = api.create_org("pro")
        org.create_agents(5)
        error = error_of(org.post("/agents", {"name": "One too many"}), 409, "limit_reached")
        assert error["addon"] == "agent_slots"
        assert "Additional Chatbot Slots" in error["message"]
        assert len(org.items("/agents")) == 5
        # Buying the add-on the error named lifts the limit.
        assert org.add_slots(error["addon"], 1).status_code == 200
        assert org.post("/agents", {"name": "Now it fits"}).status_code == 201

    def test_invitation_at_capacity(self, api: Api) -> None:
        org = api.create_org("pro")  # 3 members: the owner and two more
        org.add_member()
        assert invite(org).status_code == 201
        error = error_of(invite(org), 409, "limit_reached")
        assert error["addon"] == "member_slots"
        assert len(org.items("/invitations")) == 1
        assert org.capacity("members")["used"] == 3

    def test_operator_adding_a_user_at_capacity(self, api: Api) -> None:
        org = api.create_org("pro")
        org.add_member()
        org.add_member()
        response = api.operator(f"/organizations/{org.id}/users", {"email": "four@example.test", "role": "member"})
        error = error_of(response, 409, "limit_reached")
        assert error["addon"] == "member_slots"
        assert len(org.items("/members")) == 3

    def test_free_plan_limit(self, api: Api) -> None:
        org = api.create_org("free")
        org.create_agents(1)
        error = error_of(org.post("/agents", {"name": "Second"}), 409, "limit_reached")
        assert error["addon"] == "agent_slots"


class TestBelowUsage:
    def test_agents_must_free_is_exact(self, api: Api) -> None:
        org = api.create_org("pro")  # 5 agents included
        assert org.add_slots("agent_slots", 3).status_code == 200
        org.create_agents(7)
        error = error_of(org.remove_slots("agent_slots", 3), 409, "below_usage")
        assert error["must_free"] == 7 - 5
        assert error["addon"] == "agent_slots"
        assert "2 agents" in error["message"]
        error = error_of(org.remove_slots("agent_slots"), 409, "below_usage")
        assert error["must_free"] == 2
        assert error_of(org.remove_slots("agent_slots", 2), 409, "below_usage")["must_free"] == 1
        assert org.capacity("agents")["renewal_slots"] == 3
        # Removing only what is unused is allowed.
        assert org.remove_slots("agent_slots", 1).status_code == 200

    def test_preview_gives_the_same_refusal(self, api: Api) -> None:
        org = api.create_org("pro")
        assert org.add_slots("agent_slots", 3).status_code == 200
        org.create_agents(8)
        body = preview(org, "agent_slots", "remove", 3).json()
        assert (body["allowed"], body["reason"], body["must_free"]) == (False, "below_usage", 3)

    def test_members_count_pending_invitations(self, api: Api) -> None:
        org = api.create_org("pro")  # 3 members included
        assert org.add_slots("member_slots", 2).status_code == 200
        org.add_member()
        org.add_member()
        assert invite(org).status_code == 201
        assert invite(org).status_code == 201  # owner + 2 members + 2 invitations = 5
        error = error_of(org.remove_slots("member_slots"), 409, "below_usage")
        assert error["must_free"] == 5 - 3
        assert error["addon"] == "member_slots"

    def test_downgrade_above_usage(self, api: Api) -> None:
        org = api.create_org("pro")
        org.create_agents(4)  # starter allows 2
        error = error_of(change_plan(org, "starter"), 409, "below_usage")
        assert error["must_free"] == 2
        assert org.summary()["subscription"]["scheduled_plan"] is None


class TestPaymentFailed:
    @pytest.mark.parametrize(("card", "decline_code"), [
        (DECLINED_CARD, "card_declined"), (INSUFFICIENT_CARD, "insufficient_funds"),
    ])
    def test_adding_slots_with_a_failing_card_changes_nothing(
        self, api: Api, engine: Engine, card: str, decline_code: str
    ) -> None:
        org = api.create_org("pro")
        assert set_card(org, card).status_code == 200
        before = org.summary()
        invoices = org.invoices()

        error = error_of(org.add_slots("agent_slots", 2), 402, "payment_failed")
        assert error["decline_code"] == decline_code
        error = error_of(org.add_slots("agent_slots", 2, key="pay-1"), 402, "payment_failed")

        after = org.summary()
        assert after["capacity"] == before["capacity"]
        assert after["monthly_total"] == before["monthly_total"]
        assert org.invoices() == invoices
        assert {a["code"]: a["active_slots"] for a in org.get("/addons").json()} == {
            "agent_slots": 0, "member_slots": 0}
        # The next invoice after the failures still takes the next number.
        assert set_card(org, GOOD_CARD).status_code == 200
        ok = org.add_slots("agent_slots", 2)
        assert ok.status_code == 200
        assert ok.json()["invoice"]["number"] == invoices[0]["number"] + 1

    def test_creating_a_paid_org_with_a_declined_card_creates_nothing(self, api: Api) -> None:
        body = {"name": "Declined", "owner_email": "declined@example.test", "plan": "pro",
                "card_number": DECLINED_CARD}
        error_of(api.operator("/organizations", body), 402, "payment_failed")
        # Nothing was created: the same owner email is still free.
        response = api.operator("/organizations", {**body, "card_number": GOOD_CARD})
        assert response.status_code == 201, response.text

    def test_upgrade_with_a_declined_card_keeps_the_plan(self, api: Api) -> None:
        org = api.create_org("starter")
        assert set_card(org, INSUFFICIENT_CARD).status_code == 200
        error_of(change_plan(org, "pro"), 402, "payment_failed")
        summary = org.summary()
        assert summary["plan"]["code"] == "starter"
        assert summary["capacity"]["agents"]["total"] == 2
        assert len(org.invoices()) == 1


class TestIdempotency:
    def test_replay_returns_the_first_answer_and_charges_once(self, api: Api, engine: Engine) -> None:
        org = api.create_org("pro")
        charges = charges_of(engine, org)
        first = org.add_slots("agent_slots", 2, key="buy-2")
        second = org.add_slots("agent_slots", 2, key="buy-2")
        assert first.status_code == second.status_code == 200
        assert second.json()["invoice"]["id"] == first.json()["invoice"]["id"]
        assert second.headers.get("Idempotent-Replayed") == "true"
        assert [i["id"] for i in org.invoices()].count(first.json()["invoice"]["id"]) == 1
        assert len(org.invoices()) == 2
        assert charges_of(engine, org) == charges + 1
        assert org.capacity("agents")["active_slots"] == 2

    def test_same_key_different_body_conflicts(self, api: Api) -> None:
        org = api.create_org("pro")
        assert org.add_slots("agent_slots", 2, key="k1").status_code == 200
        error_of(org.add_slots("agent_slots", 3, key="k1"), 409, "idempotency_conflict")
        error_of(org.add_slots("member_slots", 2, key="k1"), 409, "idempotency_conflict")
        error_of(org.remove_slots("agent_slots", 2, key="k1"), 409, "idempotency_conflict")
        assert org.capacity("agents")["active_slots"] == 2
        assert org.capacity("members")["active_slots"] == 0
        assert len(org.invoices()) == 2

    def test_keys_belong_to_one_organization(self, api: Api) -> None:
        a, b = api.create_org("pro"), api.create_org("pro")
        assert a.add_slots("agent_slots", 1, key="shared").status_code == 200
        response = b.add_slots("agent_slots", 1, key="shared")
        assert response.status_code == 200
        assert response.headers.get("Idempotent-Replayed") is None
        assert b.capacity("agents")["active_slots"] == 1

    def test_a_refusal_is_replayed_too(self, api: Api) -> None:
        org = api.create_org("pro")
        org.create_agents(5)
        assert org.add_slots("agent_slots", 1).status_code == 200
        org.create_agents(1)
        first = error_of(org.remove_slots("agent_slots", 1, key="try"), 409, "below_usage")
        agent = org.get("/agents").json()["data"][0]["id"]
        assert org.post(f"/agents/{agent}/archive").status_code == 200
        # The same key answers as it did the first time; a new key removes.
        replay = org.remove_slots("agent_slots", 1, key="try")
        assert error_of(replay, 409, "below_usage") == first and replay.headers["Idempotent-Replayed"] == "true"
        assert org.remove_slots("agent_slots", 1, key="try-again").status_code == 200

    def test_a_declined_card_is_not_replayed_after_the_card_is_fixed(self, api: Api) -> None:
        """The API and the pages agree: a decline changed nothing, so the same request may be sent
        again once the card is fixed, under the same key, and then it buys, once."""
        org = api.create_org("pro")
        assert set_card(org, DECLINED_CARD).status_code == 200
        error_of(org.add_slots("agent_slots", 1, key="try"), 402, "payment_failed")
        assert set_card(org, GOOD_CARD).status_code == 200
        assert org.add_slots("agent_slots", 1, key="try").status_code == 200
        again = org.add_slots("agent_slots", 1, key="try")
        assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
        assert org.capacity("agents")["active_slots"] == 1

    def test_agent_creation_and_plan_change_honour_the_key(self, api: Api) -> None:
        org = api.create_org("starter")
        one = org.post("/agents", {"name": "Once"}, key="agent-1")
        two = org.post("/agents", {"name": "Once"}, key="agent-1")
        assert one.status_code == two.status_code == 201
        assert one.json()["id"] == two.json()["id"]
        assert len(org.items("/agents")) == 1
        up1 = change_plan(org, "pro", key="up")
        up2 = change_plan(org, "pro", key="up")
        assert up1.status_code == up2.status_code == 200
        assert up1.json()["invoice"]["id"] == up2.json()["invoice"]["id"]
        assert len(org.invoices()) == 2
