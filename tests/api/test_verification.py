"""Bank verification (SCA, SPEC §12): a payment the customer's bank must verify leaves its invoice open
as "Payment needs verification" with a link for the Owner; nothing is granted until it is verified,
and verifying grants exactly what was bought, once. Sandbox card ``4000002500003155``; the sandbox's
stand-in bank answers ``verdict`` (approve / fail)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from slotwise.clock import SimulatedClock
from slotwise.services.context import Env
from tests.credit_support import account, credits, jobs_of, ledger, ledger_matches_balances, make_worker, set_balances
from tests.events.trail_support import entries_of, events_of
from tests.factories import Api, Org, error_of

GOOD, NEEDS_VERIFICATION = "4242424242424242", "4000002500003155"


def attach(org: Org, payment_method: str) -> None:
    response = org.put("/payment-method", {"payment_method": payment_method})
    assert response.status_code == 200, response.text


def verify(org: Org, invoice_id: str, verdict: str | None = "approve", **kw: Any) -> Any:
    return org.post(f"/invoices/{invoice_id}/verify", {"verdict": verdict} if verdict else None, **kw)


def charges(engine: Engine, invoice_id: str) -> list[tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(text("select status, failure_code from charges where invoice_id = :i order by created_at"),
                            {"i": invoice_id})
        return [(r.status, r.failure_code) for r in rows]


def invoice_row(engine: Engine, invoice_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(text("select status, action_intent, purchase, next_retry_at, paid_at from invoices "
                                 "where id = :i"), {"i": invoice_id}).one()


@pytest.fixture
def org(api: Api) -> Org:
    org = api.create_org("pro")
    attach(org, NEEDS_VERIFICATION)
    return org


def needs_verification(response: Any) -> str:
    error = error_of(response, 402, "payment_action_required")
    invoice_id: str = error["invoice"]
    assert error["verify_url"] == f"/billing/invoices/{invoice_id}/verify"
    return invoice_id


class TestAddSlots:
    def test_nothing_is_granted_until_verified_then_exactly_once(self, org: Org, engine: Engine) -> None:
        before = org.capacity("agents")
        invoice_id = needs_verification(org.add_slots("agent_slots", 2))
        assert org.capacity("agents") == before
        row = invoice_row(engine, invoice_id)
        assert row.status == "open" and row.action_intent and row.next_retry_at is None and row.paid_at is None
        assert '"kind": "slots"' in row.purchase and '"quantity": 2' in row.purchase
        shown = org.get(f"/invoices/{invoice_id}").json()
        assert shown["status"] == "open" and shown["verify_url"] == f"/billing/invoices/{invoice_id}/verify"
        assert shown["lines"][0]["quantity"] == 2
        assert charges(engine, invoice_id) == []  # nothing was charged yet

        paid = verify(org, invoice_id)
        assert paid.status_code == 200, paid.text
        assert paid.json()["status"] == "paid" and paid.json()["verify_url"] is None
        after = org.capacity("agents")
        assert after["active_slots"] == before["active_slots"] + 2
        assert after["renewal_slots"] == before["renewal_slots"] + 2
        assert charges(engine, invoice_id) == [("succeeded", None)]
        assert invoice_row(engine, invoice_id).action_intent is None

        again = verify(org, invoice_id)  # a second verification (or the webhook after the page) grants nothing
        assert again.status_code == 200 and again.json()["status"] == "paid"
        assert org.capacity("agents") == after
        assert charges(engine, invoice_id) == [("succeeded", None)]

    def test_a_failed_verification_voids_it_and_grants_nothing(self, org: Org, engine: Engine) -> None:
        before = org.capacity("agents")
        invoice_id = needs_verification(org.add_slots("agent_slots", 1))
        error = error_of(verify(org, invoice_id, "fail"), 402, "payment_failed")
        assert error["invoice"] == invoice_id
        assert org.get(f"/invoices/{invoice_id}").json()["status"] == "void"
        assert org.capacity("agents") == before
        assert charges(engine, invoice_id) == [("failed", "payment_intent_authentication_failure")]
        assert verify(org, invoice_id).json()["status"] == "void"  # settled: approving later changes nothing
        assert org.capacity("agents") == before

    def test_the_same_idempotency_key_replays_the_answer(self, org: Org) -> None:
        first = org.add_slots("agent_slots", 1, key="sca-1")
        invoice_id = needs_verification(first)
        second = org.add_slots("agent_slots", 1, key="sca-1")
        assert second.status_code == 402 and second.json() == first.json()
        assert [i["id"] for i in org.invoices() if i["status"] == "open"] == [invoice_id]

    def test_only_the_owner_of_that_organization_verifies(self, api: Api, org: Org) -> None:
        invoice_id = needs_verification(org.add_slots("agent_slots", 1))
        member = api.add_user(org.id, role="member")
        admin = api.add_user(org.id, role="admin")
        error_of(verify(org, invoice_id, token=member["api_token"]), 403, "owner_only")
        error_of(verify(org, invoice_id, token=admin["api_token"]), 403, "owner_only")
        other = api.create_org("pro")
        error_of(other.post(f"/invoices/{invoice_id}/verify", {"verdict": "approve"}), 404, "not_found")
        assert org.get(f"/invoices/{invoice_id}").json()["status"] == "open"

    def test_without_a_verdict_the_sandbox_bank_is_still_waiting(self, org: Org) -> None:
        invoice_id = needs_verification(org.add_slots("agent_slots", 1))
        error_of(verify(org, invoice_id, None), 409, "verification_pending")
        assert org.get(f"/invoices/{invoice_id}").json()["status"] == "open"

    def test_after_its_period_ended_it_expires_void(self, api: Api, org: Org) -> None:
        before = org.capacity("agents")["active_slots"]
        invoice_id = needs_verification(org.add_slots("agent_slots", 1))
        attach(org, GOOD)  # so that the renewal is paid
        assert api.clock_to("2026-12-15T09:00:00Z")["expired"] == [invoice_id]  # the billing run voids it
        assert verify(org, invoice_id).json()["status"] == "void"
        assert org.get(f"/invoices/{invoice_id}").json()["status"] == "void"
        assert org.capacity("agents")["active_slots"] == before

    def test_a_week_unverified_the_billing_run_voids_it_and_a_late_payment_is_refunded(
            self, api: Api, org: Org, env: Env, engine: Engine) -> None:
        before = org.capacity("agents")["active_slots"]
        invoice_id = needs_verification(org.add_slots("agent_slots", 1))
        intent = invoice_row(engine, invoice_id).action_intent
        assert api.advance(6)["expired"] == []  # still waiting for the bank
        assert api.advance(1)["expired"] == [invoice_id]  # a week: void, nothing granted
        assert org.get(f"/invoices/{invoice_id}").json()["status"] == "void"
        # The platform is told the payment failed, and why; the Owner reads that slotwise voided it.
        failed = events_of(engine, org.id, "invoice.payment_failed")[-1].data
        assert (failed["invoice"], failed["status"], failed["reason"]) == (invoice_id, "void", "verification_expired")
        [voided] = entries_of(engine, org.id, "invoice.voided")
        assert (voided.data["actor_type"], voided.data["invoice_id"], voided.data["after"]) == (
            "system", invoice_id, {"status": "void", "reason": "verification_expired"})
        # The bank pays it anyway, later: the next billing run gives the money back.
        late = env.gateway.complete_verification(intent_id=intent, verdict="approve")
        assert late.succeeded
        report = api.advance(0)
        assert report["refunded"] == [late.reference] and report["reconciled"] == []
        assert charges(engine, invoice_id)[-1] == ("refunded", "reconciled_refund")
        assert org.get(f"/invoices/{invoice_id}").json()["status"] == "void"
        assert org.capacity("agents")["active_slots"] == before
        [refund] = entries_of(engine, org.id, "payment.refunded")  # the money given back, on the Owner's trail
        assert (refund.data["actor_type"], refund.data["subject_id"], refund.data["invoice_id"]) == (
            "system", late.reference, invoice_id)
        total = org.get(f"/invoices/{invoice_id}").json()["total"]
        assert (refund.data["amount"], refund.data["currency"]) == (total, "usd")
        assert api.advance(0)["refunded"] == [] and len(entries_of(engine, org.id, "payment.refunded")) == 1

    def test_paid_at_the_bank_before_it_expired_is_settled_by_the_billing_run(
            self, api: Api, org: Org, env: Env, engine: Engine) -> None:
        before = org.capacity("agents")["active_slots"]
        invoice_id = needs_verification(org.add_slots("agent_slots", 2))
        intent = invoice_row(engine, invoice_id).action_intent
        assert env.gateway.complete_verification(intent_id=intent, verdict="approve").succeeded  # slotwise not told
        report = api.advance(7)  # the run asks the processor before voiding it: paid, so settled
        assert report["expired"] == [] and report["reconciled"] == [] and report["refunded"] == []
        assert org.get(f"/invoices/{invoice_id}").json()["status"] == "paid"
        assert org.capacity("agents")["active_slots"] == before + 2

    def test_a_card_update_does_not_charge_a_purchase_waiting_for_verification(self, org: Org,
                                                                              engine: Engine) -> None:
        before = org.capacity("agents")["active_slots"]
        invoice_id = needs_verification(org.add_slots("agent_slots", 1))
        response = org.put("/payment-method", {"payment_method": GOOD})
        assert response.status_code == 200 and response.json()["retried_invoices"] == []
        assert org.get(f"/invoices/{invoice_id}").json()["status"] == "open"
        assert charges(engine, invoice_id) == [] and org.capacity("agents")["active_slots"] == before
        assert verify(org, invoice_id).json()["status"] == "paid"
        assert org.capacity("agents")["active_slots"] == before + 1


class TestTopUp:
    def test_credits_land_only_after_verification(self, org: Org, engine: Engine) -> None:
        before = credits(org)["topup"]["remaining"]
        invoice_id = needs_verification(org.post("/credits/top-up", {"packs": 2}))
        assert credits(org)["topup"]["remaining"] == before and ledger(engine, org, "topup") == []
        assert verify(org, invoice_id).json()["status"] == "paid"
        assert credits(org)["topup"]["remaining"] == before + 2000
        [entry] = ledger(engine, org, "topup")
        assert (entry.topup_delta, entry.invoice_id) == (2000, invoice_id)
        verify(org, invoice_id)
        assert credits(org)["topup"]["remaining"] == before + 2000 and ledger_matches_balances(engine, org)

    def test_a_processor_outage_writes_nothing(self, api: Api, env: Env, engine: Engine) -> None:
        org = api.create_org("pro")
        attach(org, GOOD)
        invoices = len(org.invoices())
        env.gateway._outages = 1  # type: ignore[attr-defined]
        error_of(org.post("/credits/top-up", {"packs": 1}), 503, "gateway_unavailable")
        assert len(org.invoices()) == invoices and ledger(engine, org, "topup") == []


class TestAutoRecharge:
    def test_a_recharge_waits_in_flight_and_lands_when_verified(
        self, org: Org, engine: Engine, sessions: sessionmaker[Session], env: Env, clock: SimulatedClock,
    ) -> None:
        worker = make_worker(sessions, env, clock)
        set_balances(engine, org, plan=0, topup=50)
        assert org.put("/credits/auto-recharge", {"enabled": True, "threshold": 100}).status_code == 200
        assert worker.run_pending() == 1
        [invoice] = [i for i in org.invoices() if i["kind"] == "recharge"]
        assert invoice["status"] == "open" and invoice["verify_url"]
        assert credits(org)["topup"]["remaining"] == 50
        in_flight = account(engine, org).recharge_job_id
        assert in_flight is not None and jobs_of(engine, org) == []
        spent = org.post("/credits/spend", {"activity": "message", "reference": "r-1"})
        assert spent.status_code == 200, spent.text
        assert jobs_of(engine, org) == []  # one recharge in flight: no second one is asked for

        assert verify(org, invoice["id"]).json()["status"] == "paid"
        after = credits(org)
        assert after["topup"]["remaining"] == 49 + 1000
        assert after["auto_recharge"]["used_this_month"] == 1
        assert account(engine, org).recharge_job_id is None
        [entry] = ledger(engine, org, "recharge")
        assert entry.invoice_id == invoice["id"] and ledger_matches_balances(engine, org)

    def test_a_failed_verification_counts_as_a_failed_recharge(
        self, org: Org, engine: Engine, sessions: sessionmaker[Session], env: Env, clock: SimulatedClock,
    ) -> None:
        worker = make_worker(sessions, env, clock)
        set_balances(engine, org, plan=0, topup=50)
        org.put("/credits/auto-recharge", {"enabled": True, "threshold": 100})
        worker.run_pending()
        [invoice] = [i for i in org.invoices() if i["kind"] == "recharge"]
        error_of(verify(org, invoice["id"], "fail"), 402, "payment_failed")
        state = account(engine, org)
        assert state.recharge_job_id is None and state.recharge_failures == 1
        assert credits(org)["topup"]["remaining"] == 50


class TestRenewal:
    def test_a_renewal_waits_past_due_and_verifying_it_pays_it_late(self, api: Api, org: Org,
                                                                     engine: Engine) -> None:
        report = api.clock_to("2026-12-15T09:00:00Z")
        [renewal_id] = report["renewed"]
        assert report["payments_failed"] == [renewal_id]
        summary = org.summary()
        assert summary["subscription"]["status"] == "past_due"
        renewal = org.get(f"/invoices/{renewal_id}").json()
        assert renewal["status"] == "open" and renewal["verify_url"] == f"/billing/invoices/{renewal_id}/verify"
        row = invoice_row(engine, renewal_id)
        assert row.purchase is None and row.next_retry_at is not None  # the dunning goes on meanwhile
        assert credits(org)["plan"]["remaining"] == 0  # a past-due period waits for its credits

        assert verify(org, renewal_id).json()["status"] == "paid"
        assert org.summary()["subscription"]["status"] == "active"
        assert credits(org)["plan"]["remaining"] == credits(org)["plan"]["allowance"] > 0
        assert invoice_row(engine, renewal_id).next_retry_at is None
        assert api.clock_to("2026-12-20T09:00:00Z")["retried_failed"] == []  # nothing left to retry

    def test_a_failed_verification_leaves_the_renewal_to_the_dunning(self, api: Api, org: Org,
                                                                      engine: Engine) -> None:
        [renewal_id] = api.clock_to("2026-12-15T09:00:00Z")["renewed"]
        error_of(verify(org, renewal_id, "fail"), 402, "payment_failed")
        row = invoice_row(engine, renewal_id)
        assert row.status == "open" and row.action_intent is None and row.next_retry_at is not None
        assert org.summary()["subscription"]["status"] == "past_due"
        # the next retry asks the bank again, so the link comes back
        assert api.clock_to("2026-12-16T09:00:00Z")["retried_failed"] == [renewal_id]
        assert org.get(f"/invoices/{renewal_id}").json()["verify_url"] is not None
