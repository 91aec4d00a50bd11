"""Bank verification (SCA, SPEC §12) of a plan start's first invoice and an upgrade's pro-rated one:
nothing changes while the bank waits (the organization stays on its plan, no subscription is
written for a start, no credits move), the invoice stays open with what it buys; verifying applies
the change once, as it would have been applied when it was bought; a refusal or an expiry voids it
and changes nothing. Sandbox card ``4000002500003155``; its stand-in bank answers ``verdict``."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from slotwise.clock import SimulatedClock
from slotwise.doctor import run_doctor
from slotwise.services.context import Env
from slotwise.services.verification import settle_verification
from tests.api.test_verification import (
    GOOD,
    NEEDS_VERIFICATION,
    attach,
    charges,
    invoice_row,
    needs_verification,
    verify,
)
from tests.credit_support import credits, ledger_matches_balances, set_subscription_status
from tests.factories import Api, Org, billing_run, change_plan, error_of

FREE_CREDITS, STARTER_CREDITS, PRO_CREDITS = 100, 4000, 15000


def subscriptions(engine: Engine, org: Org) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text("select id, plan_code, status, anchor_at, period_end from subscriptions "
                                      "where org_id = :o"), {"o": org.id}))


def org_with_sca_card(api: Api, plan: str) -> Org:
    org = api.create_org(plan)
    attach(org, NEEDS_VERIFICATION)
    return org


def doctor(sessions: sessionmaker[Session], env: Env, org: Org) -> list[str]:
    found = run_doctor(sessions, env.catalog, org_ids=[org.id], gateway=env.gateway)
    return [str(v) for v in found.violations]


def purchase_of(engine: Engine, invoice_id: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(invoice_row(engine, invoice_id).purchase)
    return value


def succeeded(engine: Engine, invoice_id: str) -> int:
    return sum(1 for status, _ in charges(engine, invoice_id) if status == "succeeded")


class TestStart:
    def test_nothing_starts_until_verified_then_pro_starts_once(
        self, api: Api, engine: Engine, env: Env, sessions: sessionmaker[Session]
    ) -> None:
        org = org_with_sca_card(api, "free")
        invoice_id = needs_verification(change_plan(org, "pro"))
        summary = org.summary()
        assert summary["plan"]["code"] == "free" and summary["subscription"] is None
        assert subscriptions(engine, org) == []  # nothing for renewals to find
        assert credits(org)["plan"]["allowance"] == FREE_CREDITS
        row = invoice_row(engine, invoice_id)
        assert row.status == "open" and row.action_intent and row.next_retry_at is None
        assert purchase_of(engine, invoice_id) == {"kind": "plan_start", "plan": "pro", "price": 15000,
                                                   "currency": "usd", "from_plan": "free"}
        [shown] = org.invoices()
        assert shown["kind"] == "subscription" and shown["total"] == 15000 and shown["verify_url"]

        api.advance(1)  # verified the next day: the period bought is the one that started then
        paid = verify(org, invoice_id)
        assert paid.status_code == 200, paid.text
        assert paid.json()["status"] == "paid"
        summary = org.summary()
        assert summary["plan"]["code"] == "pro" and summary["subscription"]["status"] == "active"
        assert summary["subscription"]["current_period"]["start"] == shown["period_start"]
        assert summary["subscription"]["next_billing_date"] == shown["period_end"]
        [sub] = subscriptions(engine, org)
        assert (sub.plan_code, sub.status) == ("pro", "active")
        after = credits(org)
        assert after["plan"]["allowance"] == after["plan"]["remaining"] == PRO_CREDITS
        assert succeeded(engine, invoice_id) == 1 and ledger_matches_balances(engine, org)

        again = verify(org, invoice_id)  # the page after the webhook, a double click: answered as it is
        assert again.status_code == 200 and again.json()["status"] == "paid"
        assert credits(org) == after and len(subscriptions(engine, org)) == 1 and succeeded(engine, invoice_id) == 1
        assert doctor(sessions, env, org) == []

        attach(org, GOOD)
        api.clock_to("2026-12-15T09:00:00Z")  # the verified plan renews like any other, at its price
        renewal = org.invoices()[0]
        assert renewal["kind"] == "renewal" and renewal["status"] == "paid" and renewal["total"] == 15000

    def test_a_failed_verification_voids_it_and_changes_nothing(self, api: Api, engine: Engine) -> None:
        org = org_with_sca_card(api, "free")
        before = credits(org)
        invoice_id = needs_verification(change_plan(org, "pro"))
        error = error_of(verify(org, invoice_id, "fail"), 402, "payment_failed")
        assert error["invoice"] == invoice_id
        assert invoice_row(engine, invoice_id).status == "void"
        assert org.summary()["plan"]["code"] == "free" and subscriptions(engine, org) == []
        assert credits(org) == before and succeeded(engine, invoice_id) == 0
        assert verify(org, invoice_id).json()["status"] == "void"  # settled: approving later changes nothing
        assert org.summary()["plan"]["code"] == "free"

        attach(org, GOOD)  # nothing waits any more: a new start goes through
        assert change_plan(org, "pro").status_code == 200
        assert org.summary()["plan"]["code"] == "pro"

    def test_after_its_period_ended_it_expires_void(self, api: Api, engine: Engine) -> None:
        org = org_with_sca_card(api, "free")
        invoice_id = needs_verification(change_plan(org, "pro"))
        assert api.clock_to("2026-12-15T09:00:00Z")["expired"] == [invoice_id]  # the billing run voids it
        assert verify(org, invoice_id).json()["status"] == "void"
        assert invoice_row(engine, invoice_id).status == "void"
        assert org.summary()["plan"]["code"] == "free" and subscriptions(engine, org) == []

    def test_renewals_and_the_sweep_never_bill_a_start_waiting_for_the_bank(self, api: Api, engine: Engine) -> None:
        org = org_with_sca_card(api, "free")
        invoice_id = needs_verification(change_plan(org, "pro"))
        attempts = charges(engine, invoice_id)
        for _ in range(3):
            api.advance(12)
            billing_run(api)
        assert [i["id"] for i in org.invoices()] == [invoice_id]  # no renewal, no retry
        assert charges(engine, invoice_id) == attempts
        assert org.summary()["plan"]["code"] == "free" and subscriptions(engine, org) == []
        assert credits(org)["plan"]["allowance"] == FREE_CREDITS  # the free months go on meanwhile

    def test_a_new_card_does_not_collect_it(self, api: Api, engine: Engine) -> None:
        org = org_with_sca_card(api, "free")
        invoice_id = needs_verification(change_plan(org, "pro"))
        answer = org.put("/payment-method", {"payment_method": GOOD})
        assert answer.status_code == 200 and answer.json()["retried_invoices"] == []
        assert invoice_row(engine, invoice_id).status == "open" and org.summary()["plan"]["code"] == "free"

    def test_another_start_or_checkout_waits_for_it(self, api: Api, engine: Engine) -> None:
        org = org_with_sca_card(api, "free")
        invoice_id = needs_verification(change_plan(org, "pro"))
        attach(org, GOOD)  # even with a card that would pay at once: one change is never bought twice
        for answer in (change_plan(org, "starter"), change_plan(org, "pro"), org.post("/checkout", {"plan": "pro"})):
            error = error_of(answer, 409, "verification_pending")
            assert error["invoice"] == invoice_id and error["verify_url"] == f"/billing/invoices/{invoice_id}/verify"
        assert [i["id"] for i in org.invoices()] == [invoice_id]
        assert verify(org, invoice_id).json()["status"] == "paid"  # the bank still has the 3155 payment
        assert org.summary()["plan"]["code"] == "pro" and len(subscriptions(engine, org)) == 1

    def test_the_idempotency_key_replays_the_answer(self, api: Api) -> None:
        org = org_with_sca_card(api, "free")
        first = change_plan(org, "pro", key="start-1")
        invoice_id = needs_verification(first)
        second = change_plan(org, "pro", key="start-1")
        assert second.status_code == 402 and second.json() == first.json()
        assert [i["id"] for i in org.invoices()] == [invoice_id]


class TestUpgrade:
    def test_nothing_changes_until_verified_then_the_upgrade_applies_once(
        self, api: Api, engine: Engine, env: Env, sessions: sessionmaker[Session]
    ) -> None:
        org = org_with_sca_card(api, "starter")
        before = org.summary()["subscription"]
        invoice_id = needs_verification(change_plan(org, "pro"))
        assert org.summary()["subscription"] == before and org.summary()["plan"]["code"] == "starter"
        assert credits(org)["plan"]["allowance"] == STARTER_CREDITS
        purchase = purchase_of(engine, invoice_id)
        assert purchase == {"kind": "upgrade", "subscription": before["id"], "from_plan": "starter",
                            "from_price": 4000, "plan": "pro", "price": 15000, "scheduled": None}
        row = invoice_row(engine, invoice_id)
        assert row.status == "open" and row.next_retry_at is None

        paid = verify(org, invoice_id)
        assert paid.status_code == 200 and paid.json()["status"] == "paid"
        sub = org.summary()["subscription"]
        assert (sub["id"], sub["plan"], sub["plan_price"], sub["status"]) == (before["id"], "pro", 15000, "active")
        assert sub["current_period"] == before["current_period"]
        after = credits(org)
        assert after["plan"]["allowance"] == PRO_CREDITS
        assert after["plan"]["remaining"] == STARTER_CREDITS + (PRO_CREDITS - STARTER_CREDITS)
        assert verify(org, invoice_id).json()["status"] == "paid"
        assert credits(org) == after and succeeded(engine, invoice_id) == 1 and ledger_matches_balances(engine, org)
        assert doctor(sessions, env, org) == []

    def test_a_failed_verification_voids_it_and_changes_nothing(self, api: Api, engine: Engine) -> None:
        org = org_with_sca_card(api, "starter")
        before, balance = org.summary(), credits(org)
        invoice_id = needs_verification(change_plan(org, "pro"))
        error_of(verify(org, invoice_id, "fail"), 402, "payment_failed")
        assert invoice_row(engine, invoice_id).status == "void"
        assert org.summary() == before and credits(org) == balance

    def test_a_cancellation_scheduled_meanwhile_is_kept(self, api: Api) -> None:
        org = org_with_sca_card(api, "starter")
        invoice_id = needs_verification(change_plan(org, "pro"))
        assert org.post("/subscription/cancel").status_code == 200  # the Owner's newer choice
        assert verify(org, invoice_id).json()["status"] == "paid"
        sub = org.summary()["subscription"]
        assert sub["plan"] == "pro" and sub["cancel_at_period_end"] is True

    def test_an_unpaid_subscription_is_still_refused(self, api: Api, engine: Engine) -> None:
        org = org_with_sca_card(api, "starter")
        set_subscription_status(engine, org, "unpaid")
        error_of(change_plan(org, "pro"), 402, "payment_required")
        assert org.invoices()[0]["kind"] != "upgrade"

    def test_verified_after_the_period_renewed_it_is_paid_refunded_and_not_applied(
        self, api: Api, engine: Engine, env: Env, sessions: sessionmaker[Session], clock: SimulatedClock
    ) -> None:
        """The bank's word (a late webhook, reconciliation) after the organization moved on: the
        invoice is paid as the bank paid it, nothing is applied, the payment is refunded and recorded."""
        org = org_with_sca_card(api, "starter")
        invoice_id = needs_verification(change_plan(org, "pro"))
        intent = invoice_row(engine, invoice_id).action_intent
        attach(org, GOOD)
        bank = env.gateway.complete_verification(intent_id=intent, verdict="approve")  # slotwise is not told
        report = api.clock_to("2026-12-15T09:00:00Z")  # renewed on Starter; then the run asks the processor
        assert report["expired"] == [] and org.summary()["subscription"]["plan"] == "starter"
        balance = credits(org)
        for _ in range(2):  # twice more (a late webhook, the verify page): nothing changes
            with sessions.begin() as db:
                settle_verification(db, env=env, org_id=org.id, invoice_id=invoice_id, result=bank,
                                    at=clock.now(db))
        assert invoice_row(engine, invoice_id).status == "paid"
        assert [c for c in charges(engine, invoice_id) if c[0] != "failed"] == [
            ("succeeded", None), ("refunded", "stale_purchase_refund")]
        assert org.summary()["subscription"]["plan"] == "starter" and credits(org) == balance
        assert doctor(sessions, env, org) == []



class TestTheProcessorsWord:
    def test_a_start_the_bank_paid_unreported_is_completed_by_the_billing_run(
        self, api: Api, engine: Engine, env: Env, sessions: sessionmaker[Session]
    ) -> None:
        """The Owner passed the bank's check but slotwise never heard (page closed, no webhook):
        reconciliation settles it like the verify route would, once."""
        org = org_with_sca_card(api, "free")
        invoice_id = needs_verification(change_plan(org, "pro"))
        bank = env.gateway.complete_verification(intent_id=invoice_row(engine, invoice_id).action_intent,
                                                 verdict="approve")
        assert bank.succeeded and org.summary()["plan"]["code"] == "free"
        assert api.advance(0)["reconciled"] == [invoice_id]
        assert org.summary()["plan"]["code"] == "pro" and credits(org)["plan"]["allowance"] == PRO_CREDITS
        assert api.advance(0)["reconciled"] == [] and succeeded(engine, invoice_id) == 1
        assert doctor(sessions, env, org) == []
