"""Paid agents — "Pay for Access" (SPEC §13), through the API on both databases: access modes and the
Paid Access Configuration, contacts, the paywall's purchase (a pass, a contact, a visitor token;
declines create nothing; one checkout id pays once), the access check with each of its reasons, the
visitor message (a pass credit and the organization's credits, once per reference), refunds and
revenue."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, text

from slotwise.services import audit
from tests.credit_support import set_balances
from tests.factories import Api, Org, error_of

GOOD, DECLINED_AT_CHARGE, DECLINED_AT_ENTRY = "4242424242424242", "4000000000000341", "4000000000000002"
NEEDS_VERIFICATION = "4000002500003155"
CONFIG = {"price": 999, "currency": "usd", "access_days": 30, "message_credits": 3}


def agent_of(org: Org, name: str = "Support bot") -> str:
    response = org.post("/agents", {"name": name})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def set_access(org: Org, agent_id: str, mode: str, paid: dict[str, Any] | None = None, **kw: Any) -> Response:
    body: dict[str, Any] = {"mode": mode}
    if paid is not None:
        body["paid"] = paid
    return org.api.client.put(f"{org.path}/agents/{agent_id}/access", json=body,
                              headers=org.api.bearer(kw.get("token") or org.token))


def paid_agent(api: Api, config: dict[str, Any] = CONFIG) -> tuple[Org, str]:
    org = api.create_org("pro")
    agent_id = agent_of(org)
    response = set_access(org, agent_id, "paid", config)
    assert response.status_code == 200, response.text
    return org, agent_id


def buy(client: TestClient, agent_id: str, email: str = "visitor@example.test", card: str = GOOD,
        checkout: str = "form-1") -> Response:
    return client.post(f"/v1/agents/{agent_id}/checkout",
                       json={"email": email, "card_number": card, "checkout": checkout})


def access(api: Api, agent_id: str, **visitor: str) -> dict[str, Any]:
    response = api.client.post(f"/v1/agents/{agent_id}/access", json=visitor, headers=api.bearer(api.operator_key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def message(api: Api, agent_id: str, reference: str, **visitor: str) -> Response:
    return api.client.post(f"/v1/agents/{agent_id}/messages", json={"reference": reference, **visitor},
                           headers=api.bearer(api.operator_key))


def balance(engine: Engine, org: Org) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("select plan_balance + topup_balance from credit_accounts where org_id = :o"),
                                {"o": org.id}).scalar_one())


def count(engine: Engine, table: str, org: Org) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"select count(*) from {table} where org_id = :o"), {"o": org.id}).scalar_one())


class TestAccessModes:
    def test_an_owner_or_admin_sets_the_mode_a_member_may_not(self, api: Api) -> None:
        org = api.create_org("pro")
        agent_id = agent_of(org)
        admin = api.add_user(org.id, role="admin")["api_token"]
        member = api.add_user(org.id, role="member")["api_token"]
        assert set_access(org, agent_id, "restricted", token=admin).json()["mode"] == "restricted"
        error_of(set_access(org, agent_id, "free", token=member), 403, "forbidden")
        assert org.get(f"/agents/{agent_id}/access").json() == {
            "agent_id": agent_id, "mode": "restricted", "paid": None, "paywall_url": None}

    def test_paid_needs_a_complete_configuration_and_a_subscription(self, api: Api) -> None:
        free = api.create_org("free")
        agent_id = agent_of(free)
        error_of(set_access(free, agent_id, "paid"), 422, "invalid_request")
        error_of(set_access(free, agent_id, "paid", CONFIG), 409, "subscription_required")
        assert free.get(f"/agents/{agent_id}/access").json()["mode"] == "free"  # nothing half-written

        org, paid_id = paid_agent(api)
        shown = org.get(f"/agents/{paid_id}/access").json()
        assert shown == {"agent_id": paid_id, "mode": "paid", "paid": CONFIG, "paywall_url": f"/pay/{paid_id}"}

    @pytest.mark.parametrize("bad", [
        {"price": 0}, {"price": -5}, {"price": 1.5}, {"currency": "dollars"}, {"access_days": 0},
        {"access_days": 3651}, {"message_credits": 0}, {"message_credits": 1_000_001}, {"extra": 1}])
    def test_a_configuration_out_of_bounds_is_refused(self, api: Api, bad: dict[str, Any]) -> None:
        org = api.create_org("pro")
        agent_id = agent_of(org)
        error_of(set_access(org, agent_id, "paid", {**CONFIG, **bad}), 422, "invalid_request")
        assert org.get(f"/agents/{agent_id}/access").json()["paid"] is None

    def test_another_organizations_agent_is_not_found(self, api: Api) -> None:
        org, agent_id = paid_agent(api)
        other = api.create_org("pro")
        error_of(set_access(other, agent_id, "free"), 404, "not_found")
        assert org.get(f"/agents/{agent_id}/access").json()["mode"] == "paid"


class TestContacts:
    def test_added_once_listed_and_paged(self, api: Api) -> None:
        org = api.create_org("pro")
        first = org.post("/contacts", {"email": "Ada@Example.test"})
        assert first.status_code == 201 and first.json()["source"] == "api"
        again = org.post("/contacts", {"email": "ada@example.TEST"})
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
        for n in range(3):
            assert org.post("/contacts", {"email": f"v{n}@example.test"}).status_code == 201
        page = org.get("/contacts?limit=2").json()
        assert len(page["data"]) == 2 and page["has_more"]
        rest = org.get(f"/contacts?limit=10&starting_after={page['data'][-1]['id']}").json()
        assert len(rest["data"]) == 2 and not rest["has_more"]
        assert sorted(c["email"] for c in page["data"] + rest["data"]) == [
            "Ada@Example.test", "v0@example.test", "v1@example.test", "v2@example.test"]
        error_of(org.get("/contacts?starting_after=con_nope"), 422, "invalid_request")

    def test_members_and_other_organizations_see_none(self, api: Api) -> None:
        org = api.create_org("pro")
        org.post("/contacts", {"email": "ada@example.test"})
        member = api.add_user(org.id, role="member")["api_token"]
        error_of(org.get("/contacts", token=member), 403, "forbidden")
        error_of(org.post("/contacts", {"email": "x@example.test"}, token=member), 403, "forbidden")
        other = api.create_org("pro")
        assert other.get("/contacts").json()["data"] == []
        error_of(api.client.get(f"/v1/organizations/{org.id}/contacts", headers=api.bearer(other.token)),
                 404, "not_found")


class TestThePaywall:
    def test_a_purchase_makes_a_pass_a_contact_and_a_token(self, api: Api, client: TestClient,
                                                           engine: Engine) -> None:
        org, agent_id = paid_agent(api)
        shown = client.get(f"/v1/agents/{agent_id}/paywall").json()
        assert shown["headline"] == "This Chatbot is Monetized by the Creator"
        assert (shown["price"], shown["access_days"], shown["message_credits"]) == (999, 30, 3)

        bought = buy(client, agent_id, email="Visitor@Example.test")
        assert bought.status_code == 201, bought.text
        body = bought.json()
        token, sold = body["visitor_token"], body["pass"]
        assert token.startswith("swv_")
        # 5% of 999 = 49.95, rounded half up once: 50 to the platform, 949 to the organization.
        assert (sold["price"], sold["platform_fee"], sold["net"], sold["currency"]) == (999, 50, 949, "usd")
        assert (sold["status"], sold["credits_left"], sold["access_days"]) == ("active", 3, 30)
        assert sold["expires_at"].startswith("2026-12-15")  # the clock starts Nov 15; 30 days
        contacts = org.get("/contacts").json()["data"]
        assert [(c["email"], c["source"]) for c in contacts] == [("Visitor@Example.test", "purchase")]
        with engine.connect() as conn:
            stored = conn.execute(text("select token_hash from passes")).scalar_one()
        assert token not in stored and len(stored) == 64  # only its SHA-256

    @pytest.mark.parametrize(("card", "code"), [(DECLINED_AT_CHARGE, "payment_failed"),
                                                (DECLINED_AT_ENTRY, "card_declined")])
    def test_a_declined_card_creates_nothing(self, api: Api, client: TestClient, engine: Engine,
                                             card: str, code: str) -> None:
        org, agent_id = paid_agent(api)
        error_of(buy(client, agent_id, card=card), 402, code)
        assert count(engine, "passes", org) == 0 and count(engine, "contacts", org) == 0
        assert buy(client, agent_id, checkout="form-2").status_code == 201  # another card works after

    def test_one_checkout_pays_once_and_the_repeat_gets_no_token(self, api: Api, client: TestClient,
                                                                 engine: Engine) -> None:
        org, agent_id = paid_agent(api)
        first = buy(client, agent_id)
        again = buy(client, agent_id)
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["pass"]["id"] == first.json()["pass"]["id"]
        assert again.json()["visitor_token"] is None and again.json()["replay_note"]
        error_of(buy(client, agent_id, email="someone-else@example.test"), 409, "idempotency_conflict")
        assert count(engine, "passes", org) == 1

    def test_an_agent_not_for_sale_has_no_paywall(self, api: Api, client: TestClient) -> None:
        org = api.create_org("pro")
        free_agent = agent_of(org)
        for agent_id in (free_agent, "agt_missing"):
            error_of(client.get(f"/v1/agents/{agent_id}/paywall"), 404, "not_found")
            error_of(buy(client, agent_id), 404, "not_found")

    def test_a_configuration_change_leaves_passes_sold(self, api: Api, client: TestClient) -> None:
        org, agent_id = paid_agent(api)
        sold = buy(client, agent_id).json()["pass"]
        set_access(org, agent_id, "paid", {**CONFIG, "price": 5000, "message_credits": 100})
        [listed] = org.get("/passes").json()["data"]
        assert (listed["id"], listed["price"], listed["message_credits"]) == (sold["id"], 999, 3)
        assert buy(client, agent_id, checkout="form-2").json()["pass"]["price"] == 5000


class TestTheAccessCheckAndMessages:
    def test_a_pass_allows_its_messages_then_credits_used(self, api: Api, client: TestClient,
                                                          engine: Engine) -> None:
        org, agent_id = paid_agent(api)
        token = buy(client, agent_id).json()["visitor_token"]
        answer = access(api, agent_id, visitor_token=token)
        assert (answer["allowed"], answer["reason"], answer["pass"]["credits_left"]) == (True, "none", 3)
        before = balance(engine, org)
        for n in range(3):
            sent = message(api, agent_id, f"m{n}", visitor_token=token)
            assert sent.status_code == 200, sent.text
            assert sent.json()["pass"]["credits_left"] == 2 - n
        assert balance(engine, org) == before - 3  # the organization's credits too
        replay = message(api, agent_id, "m2", visitor_token=token)
        assert replay.json()["replayed"] is True and balance(engine, org) == before - 3
        refused = error_of(message(api, agent_id, "m3", visitor_token=token), 403, "access_denied")
        assert refused["reason"] == "credits_used"
        assert access(api, agent_id, visitor_token=token)["reason"] == "credits_used"
        assert access(api, agent_id, visitor_email="visitor@example.test")["reason"] == "credits_used"

    def test_the_pass_expires_across_a_clock_move(self, api: Api, client: TestClient) -> None:
        _, agent_id = paid_agent(api)
        token = buy(client, agent_id).json()["visitor_token"]
        api.advance(29)
        assert access(api, agent_id, visitor_token=token)["allowed"] is True
        api.advance(1)
        answer = access(api, agent_id, visitor_token=token)
        assert (answer["allowed"], answer["reason"], answer["pass"]["status"]) == (False, "expired", "expired")
        refused = error_of(message(api, agent_id, "late", visitor_token=token), 403, "access_denied")
        assert refused["reason"] == "expired"

    def test_unknown_tokens_and_strangers_are_refused_not_errors(self, api: Api, client: TestClient) -> None:
        _, agent_id = paid_agent(api)
        assert access(api, agent_id, visitor_token="swv_nope") == {"allowed": False, "reason": "no_pass", "pass": None}
        assert access(api, agent_id, visitor_email="stranger@example.test")["reason"] == "no_pass"
        assert access(api, "agt_missing", visitor_token="swv_nope")["reason"] == "agent_not_public"
        error_of(api.client.post(f"/v1/agents/{agent_id}/access", json={"visitor_token": "x"}), 401,
                 "unauthenticated")
        error_of(api.client.post(f"/v1/agents/{agent_id}/access", json={}, headers=api.bearer(api.operator_key)),
                 422, "invalid_request")

    def test_a_restricted_agent_admits_contacts_only(self, api: Api) -> None:
        org = api.create_org("pro")
        agent_id = agent_of(org)
        set_access(org, agent_id, "restricted")
        org.post("/contacts", {"email": "friend@example.test"})
        assert access(api, agent_id, visitor_email="FRIEND@example.test")["allowed"] is True
        assert access(api, agent_id, visitor_email="stranger@example.test")["reason"] == "not_a_contact"
        assert message(api, agent_id, "r1", visitor_email="friend@example.test").status_code == 200
        error_of(message(api, agent_id, "r2", visitor_email="stranger@example.test"), 403, "access_denied")

    def test_a_pass_token_identifies_its_buyer_as_a_contact_on_a_restricted_agent(
            self, api: Api, client: TestClient) -> None:
        org, paid_id = paid_agent(api)
        token = buy(client, paid_id).json()["visitor_token"]
        restricted = agent_of(org, "Members' corner")
        set_access(org, restricted, "restricted")
        assert access(api, restricted, visitor_token=token)["allowed"] is True
        assert access(api, restricted, visitor_token="swv_unknown")["reason"] == "not_a_contact"
        _, other_paid = paid_agent(api)  # another organization's pass does not count here
        foreign = buy(client, other_paid, email="stranger@example.test").json()["visitor_token"]
        assert access(api, restricted, visitor_token=foreign)["reason"] == "not_a_contact"
        # Not even when its buyer's email is a contact here: another organization's pass is not read.
        same_buyer = buy(client, other_paid, checkout="form-9").json()["visitor_token"]
        assert access(api, restricted, visitor_token=same_buyer)["reason"] == "not_a_contact"

    def test_a_free_agent_admits_anyone(self, api: Api) -> None:
        org = api.create_org("pro")
        agent_id = agent_of(org)
        assert access(api, agent_id, visitor_email="anyone@example.test") == {
            "allowed": True, "reason": "none", "pass": None}

    def test_the_organization_out_of_credits_refuses_a_valid_pass(self, api: Api, client: TestClient,
                                                                  engine: Engine) -> None:
        org, agent_id = paid_agent(api)
        token = buy(client, agent_id).json()["visitor_token"]
        set_balances(engine, org, plan=0, topup=0)
        answer = access(api, agent_id, visitor_token=token)
        assert (answer["allowed"], answer["reason"]) == (False, "org_out_of_credits")
        assert answer["pass"]["status"] == "active"
        error_of(message(api, agent_id, "m1", visitor_token=token), 402, "insufficient_credits")
        assert access(api, agent_id, visitor_token=token)["pass"]["credits_left"] == 3  # nothing taken

    def test_an_archived_agent_is_not_public(self, api: Api, client: TestClient) -> None:
        org, agent_id = paid_agent(api)
        token = buy(client, agent_id).json()["visitor_token"]
        assert org.post(f"/agents/{agent_id}/archive").status_code == 200
        assert access(api, agent_id, visitor_token=token)["reason"] == "agent_not_public"


class TestRefundsAndRevenue:
    def test_a_refund_revokes_at_once_and_leaves_the_revenue(self, api: Api, client: TestClient) -> None:
        org, agent_id = paid_agent(api)
        token = buy(client, agent_id).json()["visitor_token"]
        kept = buy(client, agent_id, email="other@example.test", checkout="form-2").json()["pass"]
        revenue = org.get("/revenue").json()
        assert revenue["totals"] == [{"currency": "usd", "gross": 1998, "platform_fee": 100, "net": 1898,
                                      "sales": 2, "refunded": 0}]
        assert revenue["active_subscribers"] == 2 and revenue["this_month"] == revenue["totals"]

        [sold] = [p for p in org.get("/passes").json()["data"] if p["id"] != kept["id"]]
        member = api.add_user(org.id, role="admin")["api_token"]
        error_of(org.post(f"/passes/{sold['id']}/refund", token=member), 403, "owner_only")
        refunded = org.post(f"/passes/{sold['id']}/refund")
        assert refunded.status_code == 200 and refunded.json()["status"] == "refunded"
        assert access(api, agent_id, visitor_token=token)["reason"] == "no_pass"
        error_of(message(api, agent_id, "after", visitor_token=token), 403, "access_denied")
        assert org.post(f"/passes/{sold['id']}/refund").json()["status"] == "refunded"  # once
        revenue = org.get("/revenue").json()
        assert revenue["totals"] == [{"currency": "usd", "gross": 999, "platform_fee": 50, "net": 949,
                                      "sales": 1, "refunded": 999}]
        assert revenue["active_subscribers"] == 1
        assert org.get(f"/revenue?agent_id={agent_id}").json()["totals"] == revenue["totals"]

    @pytest.mark.parametrize("bad", ["%00", "a%0Ab", "x" * 65])
    def test_a_bad_agent_filter_is_refused_not_a_500(self, api: Api, bad: str) -> None:
        org = api.create_org("pro")
        for suffix in ("/passes", "/revenue"):
            error_of(org.get(f"{suffix}?agent_id={bad}"), 422, "invalid_request")

    def test_passes_and_revenue_are_the_owners_and_admins(self, api: Api, client: TestClient) -> None:
        org, agent_id = paid_agent(api)
        buy(client, agent_id)
        member = api.add_user(org.id, role="member")["api_token"]
        error_of(org.get("/passes", token=member), 403, "forbidden")
        error_of(org.get("/revenue", token=member), 403, "forbidden")
        other = api.create_org("pro")
        assert other.get("/passes").json()["data"] == [] and other.get("/revenue").json()["totals"] == []
        [sold] = org.get("/passes").json()["data"]
        error_of(other.post(f"/passes/{sold['id']}/refund"), 404, "not_found")


class TestBankVerification:
    """A pass whose payment the visitor's bank must verify (SCA): nothing until it is verified, then
    the pass once — by the visitor, or by the billing run when the processor was paid unreported."""

    def verify(self, client: TestClient, agent_id: str, verdict: str | None = "approve",
               checkout: str = "form-1") -> Response:
        body: dict[str, Any] = {"checkout": checkout}
        if verdict is not None:
            body["verdict"] = verdict
        return client.post(f"/v1/agents/{agent_id}/checkout/verify", json=body)

    def test_nothing_until_verified_then_the_pass_once(self, api: Api, client: TestClient, engine: Engine) -> None:
        org, agent_id = paid_agent(api)
        waiting = error_of(buy(client, agent_id, card=NEEDS_VERIFICATION), 402, "payment_action_required")
        assert waiting["verify_url"] == f"/pay/{agent_id}/verify?checkout=form-1" and waiting["checkout"] == "form-1"
        assert count(engine, "passes", org) == 0 and count(engine, "contacts", org) == 0
        assert access(api, agent_id, visitor_email="visitor@example.test")["reason"] == "no_pass"
        error_of(buy(client, agent_id, card=NEEDS_VERIFICATION), 402, "payment_action_required")  # still one
        assert count(engine, "pass_checkouts", org) == 1
        error_of(self.verify(client, agent_id, verdict=None), 409, "verification_pending")

        done = self.verify(client, agent_id)
        assert done.status_code == 200, done.text
        token = done.json()["visitor_token"]
        assert token and done.json()["pass"]["status"] == "active"
        assert access(api, agent_id, visitor_token=token)["allowed"] is True
        again = self.verify(client, agent_id)
        assert again.status_code == 200 and again.json()["visitor_token"] is None
        assert count(engine, "passes", org) == 1 and count(engine, "pass_checkouts", org) == 0
        assert org.get("/revenue").json()["totals"][0]["sales"] == 1

    def test_a_refused_verification_makes_nothing(self, api: Api, client: TestClient, engine: Engine) -> None:
        org, agent_id = paid_agent(api)
        error_of(buy(client, agent_id, card=NEEDS_VERIFICATION), 402, "payment_action_required")
        error_of(self.verify(client, agent_id, verdict="fail"), 402, "payment_failed")
        assert count(engine, "passes", org) == 0 and count(engine, "pass_checkouts", org) == 0
        assert count(engine, "contacts", org) == 0
        error_of(self.verify(client, agent_id), 404, "not_found")
        error_of(self.verify(client, "agt_missing"), 404, "not_found")

    def test_the_billing_run_makes_a_pass_the_bank_paid_unreported(
            self, api: Api, client: TestClient, engine: Engine, env: Any) -> None:
        org, agent_id = paid_agent(api)
        error_of(buy(client, agent_id, card=NEEDS_VERIFICATION), 402, "payment_action_required")
        with engine.connect() as conn:
            intent = conn.execute(text("select action_intent from pass_checkouts")).scalar_one()
        assert env.gateway.complete_verification(intent_id=intent, verdict="approve").succeeded
        report = api.advance(0)
        assert report["reconciled"] == [only_pass_id(engine)] and report["refunded"] == []
        assert access(api, agent_id, visitor_email="visitor@example.test")["allowed"] is True
        assert api.advance(0)["reconciled"] == [] and count(engine, "passes", org) == 1


def only_pass_id(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("select id from passes")).scalar_one())


class TestAbandonedVerifications:
    """A pass payment the visitor never verifies is not kept for ever: after the week a purchase may
    wait, the billing run asks the processor once more — paid after all: the pass; otherwise the
    checkout is given up (it granted nothing)."""

    def test_given_up_after_a_week_and_nothing_granted(self, api: Api, client: TestClient, engine: Engine) -> None:
        org, agent_id = paid_agent(api)
        error_of(buy(client, agent_id, card=NEEDS_VERIFICATION), 402, "payment_action_required")
        assert api.advance(6)["expired"] == [] and count(engine, "pass_checkouts", org) == 1
        with engine.connect() as conn:
            pass_id = conn.execute(text("select id from pass_checkouts")).scalar_one()
        assert api.advance(2)["expired"] == [pass_id]
        assert count(engine, "pass_checkouts", org) == 0 and count(engine, "passes", org) == 0
        assert count(engine, "contacts", org) == 0
        assert access(api, agent_id, visitor_email="visitor@example.test")["reason"] == "no_pass"
        error_of(client.post(f"/v1/agents/{agent_id}/checkout/verify", json={"checkout": "form-1"}), 404, "not_found")
        assert api.advance(8)["expired"] == []  # once

    def test_paid_after_all_becomes_the_pass(self, api: Api, client: TestClient, engine: Engine, env: Any) -> None:
        org, agent_id = paid_agent(api)
        error_of(buy(client, agent_id, card=NEEDS_VERIFICATION), 402, "payment_action_required")
        assert api.advance(3)["expired"] == []
        with engine.connect() as conn:
            intent = conn.execute(text("select action_intent from pass_checkouts")).scalar_one()
        assert env.gateway.complete_verification(intent_id=intent, verdict="approve").succeeded
        assert api.advance(5)["expired"] == []
        assert count(engine, "pass_checkouts", org) == 0 and count(engine, "passes", org) == 1
        assert access(api, agent_id, visitor_email="visitor@example.test")["allowed"] is True


class TestEventsAndAudit:
    """What the platform learns (``pass.created``, ``pass.refunded``) and what the Owner reads in the
    audit trail, written with the sale, the refund and the access change — once each."""

    def rows(self, engine: Engine, sql: str, org: Org) -> list[Any]:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), {"o": org.id}).all())

    def test_a_sale_and_its_refund(self, api: Api, client: TestClient, engine: Engine) -> None:
        org, agent_id = paid_agent(api)
        sold = buy(client, agent_id).json()["pass"]
        buy(client, agent_id)  # the same checkout again: no second sale
        error_of(buy(client, agent_id, card=DECLINED_AT_CHARGE, checkout="form-2"), 402, "payment_failed")
        org.post(f"/passes/{sold['id']}/refund")
        org.post(f"/passes/{sold['id']}/refund")  # answered as it is
        events = self.rows(engine, "select type, payload from events where org_id = :o and type like 'pass.%' "
                                   "order by seq", org)
        assert [e.type for e in events] == ["pass.created", "pass.refunded"]
        created, refunded = (json.loads(e.payload) for e in events)
        assert created["pass"] == sold["id"] and created["agent"] == agent_id
        assert (created["price"], created["platform_fee"], created["net"], created["currency"]) == (999, 50, 949, "usd")
        assert created["visitor_email"] == "visitor@example.test" and created["message_credits"] == 3
        assert refunded == {"pass": sold["id"], "agent": agent_id, "amount": 999, "currency": "usd"}

        entries = self.rows(engine, "select kind, actor_type, actor_label, subject_id, amount, currency from "
                                    "audit_entries where org_id = :o and kind like 'pass.%' order by seq", org)
        assert [(e.kind, e.actor_type, e.subject_id, e.amount, e.currency) for e in entries] == [
            ("pass.created", "system", sold["id"], 999, "usd"), ("pass.refunded", "user", sold["id"], 999, "usd")]
        assert entries[0].actor_label == "visitor visitor@example.test"
        [owner] = self.rows(engine, "select id, email from users where org_id = :o and role = 'owner'", org)
        assert entries[1].actor_label == owner.email

    def test_an_access_change_is_audited_once_with_before_and_after(self, api: Api, engine: Engine) -> None:
        org, agent_id = paid_agent(api)
        assert set_access(org, agent_id, "paid").status_code == 200  # no change: no entry
        assert set_access(org, agent_id, "restricted").status_code == 200
        entries = self.rows(engine, "select before, after, subject_id from audit_entries where org_id = :o "
                                    "and kind = 'agent.access_changed' order by seq", org)
        assert [json.loads(e.after)["mode"] for e in entries] == ["paid", "restricted"]
        assert json.loads(entries[0].before) == {"mode": "free", "price": None, "currency": None,
                                                 "access_days": None, "message_credits": None}
        assert json.loads(entries[1].before)["mode"] == "paid" and entries[1].subject_id == agent_id
        with engine.connect() as conn:  # every kind paid agents write is one the trail lists
            written = set(conn.execute(text("select distinct kind from audit_entries")).scalars())
        assert {"agent.access_changed"} <= written <= set(audit.KINDS), written - set(audit.KINDS)
