"""Every billing change writes its event in its own transaction (SPEC §14, the outbox): exactly one per
committed change with the right payload, none for a change refused, declined or rolled back, none
twice for a replay or a change that changes nothing. On both databases; on PostgreSQL the credit
spend's crossings are written by the spend's one statement, on the fast lane and the general path."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from slotwise.services import addons, trail
from slotwise.services.context import Actor, Env
from tests.conftest import START
from tests.credit_support import set_account, set_balances
from tests.events.trail_support import add_endpoint, counts, entries_of, events_of, kinds, owed_types, stream_due
from tests.factories import DECLINED_CARD, Api, Org, change_plan, error_of, set_card

SCA_CARD = "4000002500003155"


@pytest.fixture
def org(api: Api) -> Org:
    made = api.create_org("pro")
    made.summary()  # the simulated clock's row exists, as in any running system
    return made


def _only(engine: Engine, org: Org, type: str) -> dict[str, Any]:
    [event] = events_of(engine, org.id, type)
    return event.data


class TestOrganizationAndPlan:
    def test_a_new_paid_organization_is_created_then_billed_then_subscribed(self, org: Org, engine: Engine) -> None:
        assert kinds(events_of(engine, org.id)) == ["organization.created", "invoice.paid", "subscription.updated"]
        created = _only(engine, org, "organization.created")
        assert (created["organization"], created["plan"], created["owner"]) == (org.id, "pro", org.owner_id)
        invoice = org.invoices()[0]
        paid = _only(engine, org, "invoice.paid")
        assert (paid["invoice"], paid["amount"], paid["status"]) == (invoice["id"], invoice["total"], "paid")
        started = _only(engine, org, "subscription.updated")
        assert (started["change"], started["plan"], started["status"], started["invoice"]) == (
            "plan.started", "pro", "active", invoice["id"])

    def test_a_declined_first_invoice_creates_nothing_and_writes_nothing(self, api: Api, engine: Engine) -> None:
        response = api.operator("/organizations", {"name": "Declined", "owner_email": "d@example.test",
                                                   "plan": "pro", "card_number": DECLINED_CARD})
        assert response.status_code == 402, response.text
        with engine.connect() as conn:
            assert conn.exec_driver_sql("select count(*) from events").scalar_one() == 0
            assert conn.exec_driver_sql("select count(*) from audit_entries").scalar_one() == 0

    def test_upgrade_downgrade_cancel_and_resume_each_write_one(self, org: Org, engine: Engine) -> None:
        before = len(events_of(engine, org.id))
        assert change_plan(org, "business").status_code == 200
        assert kinds(events_of(engine, org.id))[before:] == ["invoice.paid", "subscription.updated"]
        assert change_plan(org, "pro").status_code == 200  # a downgrade, scheduled
        assert change_plan(org, "pro").status_code == 200  # the same again: nothing changes
        assert org.post("/subscription/cancel").status_code == 200
        assert org.post("/subscription/cancel").status_code == 200  # already scheduled
        assert org.post("/subscription/resume").status_code == 200
        changes = [e.data["change"] for e in events_of(engine, org.id, "subscription.updated")]
        assert changes == ["plan.started", "plan.upgraded", "plan.downgrade_scheduled",
                           "subscription.cancel_scheduled", "subscription.resumed"]
        resumed = events_of(engine, org.id, "subscription.updated")[-1].data
        assert (resumed["plan"], resumed["scheduled_plan"], resumed["status"]) == ("business", None, "active")

    def test_a_declined_upgrade_writes_nothing(self, org: Org, engine: Engine) -> None:
        assert set_card(org, DECLINED_CARD).status_code == 200
        before = counts(engine, org.id)
        error_of(change_plan(org, "business"), 402, "payment_failed")
        assert counts(engine, org.id) == before


class TestAddons:
    def test_adding_slots_writes_one_event_with_the_new_state_and_the_invoice(self, org: Org, engine: Engine) -> None:
        response = org.add_slots("agent_slots", 2)
        assert response.status_code == 200, response.text
        invoice = response.json()["invoice"]
        added = _only(engine, org, "addon.updated")
        assert added == {"addon": "agent_slots", "change": "added", "active_slots": 2, "renewal_slots": 2,
                         "previous": {"active_slots": 0, "renewal_slots": 0}, "effective_at": added["effective_at"],
                         "invoice": invoice["id"]}
        assert kinds(events_of(engine, org.id))[-2:] == ["invoice.paid", "addon.updated"]

    def test_removal_scheduled_and_kept(self, org: Org, engine: Engine) -> None:
        assert org.add_slots("agent_slots", 3).status_code == 200
        assert org.remove_slots("agent_slots", 1).status_code == 200
        assert org.post("/addons/agent_slots/keep").status_code == 200
        updates = [e.data for e in events_of(engine, org.id, "addon.updated")]
        assert [(u["change"], u["active_slots"], u["renewal_slots"]) for u in updates] == [
            ("added", 3, 3), ("removal_scheduled", 3, 2), ("removal_cancelled", 3, 3)]
        assert updates[1]["effective_at"].startswith("2026-12-15T")  # the next billing date, in ISO 8601
        assert datetime.fromisoformat(updates[1]["effective_at"]).utcoffset() == timedelta(0)

    def test_an_agent_created_into_a_scheduled_removal_shrinks_it_and_says_so(self, org: Org,
                                                                             engine: Engine) -> None:
        assert org.add_slots("agent_slots", 1).status_code == 200
        assert org.remove_slots("agent_slots", 1).status_code == 200
        capacity = org.capacity("agents")
        made = org.create_agents(capacity["total"] - capacity["used"])  # the last one needs the slot kept
        reduced = events_of(engine, org.id, "addon.updated")[-1].data
        assert (reduced["change"], reduced["active_slots"], reduced["renewal_slots"]) == ("removal_reduced", 1, 1)
        assert [e.data["subject_id"] for e in entries_of(engine, org.id, "agent.created")] == made
        assert len(entries_of(engine, org.id, "addon.removal_reduced")) == 1

    def test_a_declined_card_writes_nothing(self, org: Org, engine: Engine) -> None:
        assert set_card(org, DECLINED_CARD).status_code == 200
        before = counts(engine, org.id)
        error_of(org.add_slots("agent_slots", 1), 402, "payment_failed")
        assert counts(engine, org.id) == before

    def test_a_removal_below_usage_writes_nothing(self, org: Org, engine: Engine) -> None:
        assert org.add_slots("agent_slots", 1).status_code == 200
        capacity = org.capacity("agents")
        org.create_agents(capacity["total"] - capacity["used"])
        before = counts(engine, org.id)
        error_of(org.remove_slots("agent_slots", 1), 409, "below_usage")
        error_of(org.post("/addons/agent_slots/keep"), 422, "invalid_request")  # nothing scheduled: no change
        assert counts(engine, org.id) == before

    def test_a_change_rolled_back_after_its_event_leaves_neither(self, org: Org, engine: Engine,
                                                                 sessions: sessionmaker[Session], env: Env) -> None:
        owner = Actor(user_id=org.owner_id, org_id=org.id, role="owner")
        before = counts(engine, org.id)
        with pytest.raises(RuntimeError), sessions.begin() as db:
            addons.add_slots(db, env=env, actor=owner, addon_code="agent_slots", quantity=1, at=START)
            assert len(events_of_session(db, org.id)) == before[0] + 2  # written, in the transaction
            raise RuntimeError("forced after the event was written")
        assert counts(engine, org.id) == before

    def test_changes_written_together_leave_nothing_if_the_block_raises(
            self, org: Org, engine: Engine, sessions: sessionmaker[Session], env: Env) -> None:
        """``trail.written_together`` (the sweep's batch): the events and entries wait for the block's end,
        and a block that raises writes none of them, though its changes ran."""
        owner = Actor(user_id=org.owner_id, org_id=org.id, role="owner")
        before = counts(engine, org.id)
        with pytest.raises(RuntimeError), sessions.begin() as db, trail.written_together(db):
            addons.add_slots(db, env=env, actor=owner, addon_code="agent_slots", quantity=1, at=START)
            assert len(events_of_session(db, org.id)) == before[0]  # collected, not yet written
            raise RuntimeError("forced inside the block")
        assert counts(engine, org.id) == before
        with sessions.begin() as db, trail.written_together(db):
            addons.add_slots(db, env=env, actor=owner, addon_code="agent_slots", quantity=1, at=START)
        assert kinds(events_of(engine, org.id))[-2:] == ["invoice.paid", "addon.updated"]
        assert counts(engine, org.id) == (before[0] + 2, before[1] + 1)

    def test_a_replay_writes_nothing_twice(self, org: Org, engine: Engine) -> None:
        first = org.add_slots("agent_slots", 1, key="add-once")
        before = counts(engine, org.id)
        again = org.add_slots("agent_slots", 1, key="add-once")
        assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == first.json()
        assert counts(engine, org.id) == before
        assert len(events_of(engine, org.id, "addon.updated")) == 1

    def test_verification_is_asked_for_and_the_slots_come_with_it(self, org: Org, engine: Engine) -> None:
        assert org.put("/payment-method", {"payment_method": SCA_CARD}).status_code == 200  # attached
        waiting = error_of(org.add_slots("agent_slots", 1), 402, "payment_action_required")
        asked = _only(engine, org, "payment.action_required")
        assert (asked["invoice"], asked["status"]) == (waiting["invoice"], "open")
        assert events_of(engine, org.id, "addon.updated") == []
        verified = org.post(f"/invoices/{waiting['invoice']}/verify", {"verdict": "approve"})
        assert verified.status_code == 200, verified.text
        assert kinds(events_of(engine, org.id))[-2:] == ["invoice.paid", "addon.updated"]
        [added] = entries_of(engine, org.id, "addon.added")
        assert (added.data["invoice_id"], added.data["actor_id"]) == (waiting["invoice"], org.owner_id)


def events_of_session(db: Session, org_id: str) -> list[Any]:
    return list(db.execute(text("select type from events where org_id = :o"), {"o": org_id}).scalars())


def _spend(org: Org, units: int, *, general: bool, reference: list[int] = [0]) -> Any:  # noqa: B006
    """A spend on the fast lane (PostgreSQL; SQLite has only the general path) or, with an
    Idempotency-Key the lane leaves to it, on the general route."""
    reference[0] += 1
    key = f"spend-{reference[0]}" if general else None
    response = org.post("/credits/spend", {"activity": "message", "units": units,
                                           "reference": f"r-{reference[0]}"}, key=key)
    return response


class TestCreditCrossings:
    @pytest.mark.parametrize("general", [False, True], ids=["lane", "general"])
    def test_low_once_per_crossing_depleted_once_and_none_on_ordinary_spends(
            self, org: Org, engine: Engine, general: bool) -> None:
        endpoint = add_endpoint(engine, ["credits.low"])
        set_balances(engine, org, plan=0, topup=150)  # the threshold is 100 (auto-recharge off)
        for units, total in ((40, 110), (20, 90), (10, 80), (79, 1)):
            response = _spend(org, units, general=general)
            assert response.status_code == 200, response.text
            assert response.json()["balance"]["total"] == total
        [low] = events_of(engine, org.id, "credits.low")
        assert low.data == {"balance": {"plan": 0, "topup": 90, "total": 90}, "threshold": 100,
                            "reference": low.data["reference"], "recharge_requested": False}
        assert events_of(engine, org.id, "credits.depleted") == []
        assert _spend(org, 1, general=general).status_code == 200  # reaches 0
        error_of(_spend(org, 1, general=general), 402, "insufficient_credits")  # refused: nothing
        [depleted] = events_of(engine, org.id, "credits.depleted")
        assert depleted.data["balance"]["total"] == 0
        set_balances(engine, org, plan=0, topup=120)  # lifted above the line again
        assert _spend(org, 120, general=general).status_code == 200  # both lines at once, in order
        assert kinds([e for e in events_of(engine, org.id) if e.kind.startswith("credits.")]) == [
            "credits.low", "credits.depleted", "credits.low", "credits.depleted"]
        assert owed_types(engine, endpoint) == ["credits.low", "credits.low"]  # only what it takes
        assert stream_due(engine, endpoint, org.id)

    def test_a_replayed_reference_writes_nothing(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=0, topup=101)
        body = {"activity": "message", "units": 2, "reference": "the-answer"}
        assert org.post("/credits/spend", body).json()["balance"]["total"] == 99
        again = org.post("/credits/spend", body)
        assert again.json()["replayed"] is True
        assert len(events_of(engine, org.id, "credits.low")) == 1

    def test_a_spend_that_queues_a_recharge_says_so(self, org: Org, engine: Engine) -> None:
        set_account(engine, org, recharge_enabled=True, recharge_max_per_period=5)
        set_balances(engine, org, plan=0, topup=100)
        assert _spend(org, 1, general=False).status_code == 200
        assert _only(engine, org, "credits.low")["recharge_requested"] is True


class TestRenewals:
    def test_a_renewal_is_the_system_s_with_its_paid_invoice(self, api: Api, org: Org, engine: Engine) -> None:
        assert org.add_slots("agent_slots", 2).status_code == 200
        assert org.remove_slots("agent_slots", 1).status_code == 200
        api.clock_to("2026-12-15T10:00:00Z")
        renewed = events_of(engine, org.id)[-3:]
        assert kinds(renewed) == ["addon.updated", "invoice.paid", "subscription.updated"]
        assert (renewed[0].data["change"], renewed[0].data["active_slots"]) == ("removed", 1)
        update = renewed[2].data
        assert (update["change"], update["status"], update["period_end"][:10]) == (
            "subscription.renewed", "active", "2027-01-15")
        [entry] = entries_of(engine, org.id, "subscription.renewed")
        assert (entry.data["actor_type"], entry.data["invoice_id"], entry.data["amount"]) == (
            "system", update["invoice"], renewed[1].data["amount"])

    def test_a_declined_renewal_then_dunning_s_end(self, api: Api, org: Org, engine: Engine) -> None:
        assert set_card(org, DECLINED_CARD).status_code == 200
        api.clock_to("2026-12-15T10:00:00Z")
        assert kinds(events_of(engine, org.id))[-2:] == ["invoice.payment_failed", "subscription.updated"]
        assert events_of(engine, org.id, "subscription.updated")[-1].data["status"] == "past_due"
        api.clock_to("2026-12-21T10:00:00Z")  # the retries of days 1, 3 and 5 fail
        assert len(events_of(engine, org.id, "invoice.payment_failed")) == 4
        last = events_of(engine, org.id, "subscription.updated")[-1].data
        assert (last["change"], last["status"]) == ("subscription.unpaid", "unpaid")
        assert [e.data["actor_type"] for e in entries_of(engine, org.id, "invoice.payment_failed")] == ["system"] * 3

    def test_a_renewal_the_bank_asks_to_verify(self, api: Api, org: Org, engine: Engine) -> None:
        assert org.put("/payment-method", {"payment_method": SCA_CARD}).status_code == 200
        api.clock_to("2026-12-15T10:00:00Z")
        assert kinds(events_of(engine, org.id))[-3:] == ["invoice.payment_failed", "subscription.updated",
                                                         "payment.action_required"]
        asked = _only(engine, org, "payment.action_required")
        assert asked["verify_url"] == f"/billing/invoices/{asked['invoice']}/verify"

    def test_the_sweep_s_batch_writes_the_same(self, api: Api, engine: Engine) -> None:
        orgs = [api.create_org("pro") for _ in range(3)]
        orgs[0].summary()
        assert api.operator("/clock", {"to": "2026-12-15T10:00:00Z"}).status_code == 200
        for made in orgs:
            update = events_of(engine, made.id, "subscription.updated")[-1].data
            assert update["change"] == "subscription.renewed"
            assert len(events_of(engine, made.id, "invoice.paid")) == 2

    def test_the_sweep_s_batch_owes_its_events_in_the_order_written(self, api: Api, engine: Engine) -> None:
        """The batch writes its events together at its end: each still owed to the endpoints taking its
        type, in the order of the organization's changes, and its stream marked due."""
        orgs = [api.create_org("pro") for _ in range(3)]
        orgs[0].summary()
        every, renewals = add_endpoint(engine, None), add_endpoint(engine, ["invoice.paid"])
        assert api.operator("/clock", {"to": "2026-12-15T10:00:00Z"}).status_code == 200
        for made in orgs:
            written = events_of(engine, made.id)
            assert kinds(written)[-2:] == ["invoice.paid", "subscription.updated"]
            assert stream_due(engine, every, made.id) and stream_due(engine, renewals, made.id)
        owed = owed_types(engine, every)
        assert owed.count("subscription.updated") == 3 and owed.count("invoice.paid") == 3
        assert owed_types(engine, renewals) == ["invoice.paid"] * 3
        with engine.connect() as conn:
            per_stream = conn.execute(text(
                "select d.stream_key, e.type from webhook_deliveries d join events e on e.seq = d.event_seq"
                " where d.endpoint_id = :w order by e.seq"), {"w": every}).all()
        for made in orgs:  # each organization's stream: its invoice paid, then its subscription renewed
            assert [t for key, t in per_stream if key == made.id][-2:] == ["invoice.paid", "subscription.updated"]
