"""Every billing change leaves one audit entry in its own transaction (SPEC §14): who (the user with
their email then, the operator, or slotwise), what, before → after, and the money and invoice where
money moved. None for a change refused or rolled back, none twice for a replay or a change that
changes nothing. On both databases."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from slotwise.clock import SimulatedClock
from slotwise.services import audit
from slotwise.services.context import Env
from tests.credit_support import make_worker, set_account, set_balances, spend
from tests.events.trail_support import counts, entries_of, events_of, kinds
from tests.factories import DECLINED_CARD, Api, Org, change_plan, error_of, invite, set_card


@pytest.fixture
def org(api: Api) -> Org:
    made = api.create_org("business")
    made.summary()
    return made


def _owner_email(org: Org) -> str:
    email: str = org.get("/members").json()["data"][0]["email"]
    return email


def _only(engine: Engine, org: Org, kind: str) -> dict[str, Any]:
    [entry] = entries_of(engine, org.id, kind)
    return entry.data


def _by_owner(entry: dict[str, Any], org: Org) -> bool:
    return (entry["actor_type"], entry["actor_id"], entry["actor_label"]) == ("user", org.owner_id, _owner_email(org))


class TestWho:
    def test_the_operator_creates_the_organization_and_its_first_plan(self, org: Org, engine: Engine) -> None:
        assert kinds(entries_of(engine, org.id)) == ["organization.created", "plan.started"]
        created, started = (entry.data for entry in entries_of(engine, org.id))
        assert (created["actor_type"], created["actor_label"], created["after"]["plan"]) == (
            "operator", "operator", "business")
        invoice = org.invoices()[0]
        assert (started["actor_type"], started["amount"], started["currency"], started["invoice_id"]) == (
            "operator", invoice["total"], "usd", invoice["id"])
        assert started["before"]["plan"] == "free" and started["after"]["plan"] == "business"

    def test_a_user_s_entry_keeps_their_email_as_it_was(self, org: Org, engine: Engine) -> None:
        assert org.add_slots("agent_slots", 1).status_code == 200
        entry = _only(engine, org, "addon.added")
        assert _by_owner(entry, org)
        with engine.begin() as conn:  # a later change of email does not rewrite history
            conn.execute(text("update users set email = 'renamed@example.test' where id = :u"), {"u": org.owner_id})
        assert _only(engine, org, "addon.added")["actor_label"] != "renamed@example.test"

    def test_the_operator_adds_a_member(self, api: Api, org: Org, engine: Engine) -> None:
        user = api.add_user(org.id)
        entry = _only(engine, org, "member.added")
        assert (entry["actor_type"], entry["subject_id"], entry["after"]) == (
            "operator", user["id"], {"email": user["email"], "role": "member"})

    def test_entries_are_immutable(self, org: Org, engine: Engine) -> None:
        with pytest.raises(Exception, match="immutable"), engine.begin() as conn:
            conn.execute(text("update audit_entries set kind = 'x' where org_id = :o"), {"o": org.id})


class TestMoneyAndState:
    def test_adding_and_removing_slots(self, org: Org, engine: Engine) -> None:
        invoice = org.add_slots("agent_slots", 2).json()["invoice"]
        added = _only(engine, org, "addon.added")
        assert (added["before"], added["after"]) == ({"active_slots": 0, "renewal_slots": 0},
                                                     {"active_slots": 2, "renewal_slots": 2})
        assert (added["amount"], added["currency"], added["invoice_id"], added["subject_id"]) == (
            invoice["total"], "usd", invoice["id"], "agent_slots")
        assert org.remove_slots("agent_slots", 1).status_code == 200
        removal = _only(engine, org, "addon.removal_scheduled")
        assert (removal["after"], removal["amount"], removal["invoice_id"]) == (
            {"active_slots": 2, "renewal_slots": 1}, None, None)
        assert org.post("/addons/agent_slots/keep").status_code == 200
        assert _only(engine, org, "addon.removal_cancelled")["after"] == {"active_slots": 2, "renewal_slots": 2}

    def test_a_plan_upgrade_and_downgrade(self, api: Api, engine: Engine) -> None:
        org = api.create_org("pro")
        assert change_plan(org, "business").status_code == 200
        upgraded = _only(engine, org, "plan.upgraded")
        assert (upgraded["before"]["plan"], upgraded["after"]["plan"]) == ("pro", "business")
        assert upgraded["amount"] == org.invoices()[0]["total"] and _by_owner(upgraded, org)
        assert change_plan(org, "pro").status_code == 200
        scheduled = _only(engine, org, "plan.downgrade_scheduled")
        assert (scheduled["before"]["scheduled_plan"], scheduled["after"]["scheduled_plan"]) == (None, "pro")

    def test_the_card_the_billing_details_and_auto_recharge(self, org: Org, engine: Engine) -> None:
        assert set_card(org, "5555555555554444").status_code == 200
        card = _only(engine, org, "payment_method.updated")
        assert (card["before"]["last4"], card["after"]["last4"]) == ("4242", "4444")
        details = {"email": "billing@example.test", "company": "Acme", "address": "1 Main St"}
        for _ in range(2):  # the same details again change nothing
            assert org.put("/billing-details", details).status_code == 200
        assert _only(engine, org, "billing_details.updated")["after"] == details
        for _ in range(2):
            assert org.put("/credits/auto-recharge", {"enabled": True, "threshold": 50}).status_code == 200
        recharge = _only(engine, org, "auto_recharge.updated")
        assert (recharge["before"], recharge["after"]) == ({"enabled": False, "threshold": 100, "max_per_month": 1},
                                                           {"enabled": True, "threshold": 50, "max_per_month": 1})

    def test_a_top_up(self, org: Org, engine: Engine) -> None:
        invoice = org.post("/credits/top-up", {"packs": 2}).json()["invoice"]
        topped = _only(engine, org, "credits.topped_up")
        assert (topped["amount"], topped["invoice_id"], topped["after"]["credits"]) == (4000, invoice["id"], 2000)
        assert _by_owner(topped, org)

    def test_recharges_paid_declined_and_the_turning_off(self, org: Org, engine: Engine,
                                                         sessions: sessionmaker[Session], env: Env,
                                                         clock: SimulatedClock) -> None:
        set_account(engine, org, recharge_enabled=True, recharge_max_per_period=10)
        set_balances(engine, org, plan=0, topup=101)
        worker = make_worker(sessions, env, clock)
        spend(org, 2)
        worker.run_once()
        paid = _only(engine, org, "credits.recharged")
        assert (paid["actor_type"], paid["amount"], paid["after"]["credits"]) == ("system", 2000, 1000)
        [recharged] = events_of(engine, org.id, "credits.recharged")
        assert (recharged.data["invoice"], recharged.data["balance"]["total"]) == (paid["invoice_id"], 1099)
        assert set_card(org, DECLINED_CARD).status_code == 200
        for _ in range(3):
            set_balances(engine, org, plan=0, topup=101)
            set_account(engine, org, recharge_failed_at=None)
            spend(org, 2)
            worker.run_once()
        assert len(entries_of(engine, org.id, "credits.recharge_failed")) == 3
        disabled = _only(engine, org, "auto_recharge.disabled")
        assert (disabled["actor_type"], disabled["after"]["enabled"]) == ("system", False)
        assert kinds(events_of(engine, org.id, "auto_recharge.disabled")) == ["auto_recharge.disabled"]

    def test_renewals_are_the_system_s(self, api: Api, org: Org, engine: Engine) -> None:
        api.clock_to("2026-12-15T10:00:00Z")
        renewed = _only(engine, org, "subscription.renewed")
        [invoice] = [i for i in org.invoices() if i["kind"] == "renewal"]
        assert (renewed["actor_type"], renewed["actor_label"], renewed["amount"], renewed["invoice_id"]) == (
            "system", "slotwise", invoice["total"], invoice["id"])
        assert (renewed["before"]["period_end"][:10], renewed["after"]["period_end"][:10]) == ("2026-12-15",
                                                                                               "2027-01-15")

    def test_a_failed_renewal_then_a_new_card_pays_it(self, api: Api, org: Org, engine: Engine) -> None:
        assert set_card(org, DECLINED_CARD).status_code == 200
        api.clock_to("2026-12-15T10:00:00Z")
        failed = _only(engine, org, "subscription.renewal_failed")
        assert (failed["actor_type"], failed["amount"], failed["after"]["status"]) == ("system", None, "past_due")
        assert set_card(org, "4242424242424242").status_code == 200
        paid = _only(engine, org, "invoice.paid")
        assert _by_owner(paid, org) and paid["invoice_id"] == failed["invoice_id"]
        assert _only(engine, org, "subscription.reactivated")["after"]["status"] == "active"


class TestPeopleAndAgents:
    def test_agents_created_archived_restored_and_deleted(self, org: Org, engine: Engine) -> None:
        [agent_id] = org.create_agents(1)
        for _ in range(2):  # archiving an archived agent changes nothing
            assert org.post(f"/agents/{agent_id}/archive").status_code == 200
        assert org.post(f"/agents/{agent_id}/unarchive").status_code == 200
        assert org.delete(f"/agents/{agent_id}").status_code == 204
        entries = [e for e in entries_of(engine, org.id) if e.kind.startswith("agent.")]
        assert kinds(entries) == ["agent.created", "agent.archived", "agent.restored", "agent.deleted"]
        assert all(e.data["subject_id"] == agent_id and _by_owner(e.data, org) for e in entries)
        assert entries[0].data["before"] is None and entries[0].data["after"]["archived"] is False
        assert entries[-1].data["after"] is None

    def test_invitations_and_members(self, org: Org, engine: Engine) -> None:
        made = invite(org, "new@example.test").json()
        accepted = org.api.client.post(f"/v1/invitations/{made['token']}/accept", json={"password": "long-password-1"})
        assert accepted.status_code == 201, accepted.text
        member_id = accepted.json()["id"]
        assert org.delete(f"/members/{member_id}").status_code == 204
        revoked = invite(org, "other@example.test").json()
        assert org.delete(f"/invitations/{revoked['id']}").status_code == 204
        people = [e for e in entries_of(engine, org.id) if e.kind.split(".")[0] in ("member", "invitation")]
        assert kinds(people) == ["invitation.created", "invitation.accepted", "member.removed", "invitation.created",
                                 "invitation.revoked"]
        accept = people[1].data
        assert (accept["actor_id"], accept["actor_label"], accept["after"]["member"]) == (
            member_id, "new@example.test", member_id)


class TestNothingTwiceNothingRefused:
    def test_refusals_write_nothing(self, org: Org, engine: Engine) -> None:
        member = org.add_member()
        before = counts(engine, org.id)
        error_of(org.add_slots("agent_slots", 1, token=member["api_token"]), 403, "owner_only")
        error_of(change_plan(org, "nonexistent"), 422, "invalid_request")
        error_of(org.post("/subscription/resume"), 409, "cancellation_not_scheduled")
        assert set_card(org, DECLINED_CARD).status_code == 200
        after_card = counts(engine, org.id)
        assert after_card[1] == before[1] + 1  # the card change itself
        error_of(org.post("/credits/top-up", {"packs": 1}), 402, "payment_failed")
        assert counts(engine, org.id) == after_card

    def test_replays_write_nothing_twice(self, org: Org, engine: Engine) -> None:
        for _ in range(2):
            assert org.post("/credits/top-up", {"packs": 1}, key="top-up-once").status_code == 201
            assert change_plan(org, "pro", key="down-once").status_code == 200
        assert len(entries_of(engine, org.id, "credits.topped_up")) == 1
        assert len(entries_of(engine, org.id, "plan.downgrade_scheduled")) == 1

    def test_every_kind_written_is_listed(self, api: Api, org: Org, engine: Engine) -> None:
        self.test_replays_write_nothing_twice(org, engine)
        api.clock_to("2026-12-15T10:00:00Z")
        with engine.connect() as conn:
            written = set(conn.execute(text("select distinct kind from audit_entries")).scalars())
        assert written <= set(audit.KINDS), written - set(audit.KINDS)

