"""The gateway contract: every gateway (the sandbox in-process, Stripe against localstripe) answers
the same way. One class per capability."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest

from slotwise.clock import wall_now
from slotwise.gateway import CardDeclined, ChargeOutcome, ChargeRequest, RefundRefused, WebhookRejected, charge_key
from slotwise.gateway import webhooks as signing
from tests.gateway.conftest import WEBHOOK_SECRET, unique


def request_for(harness: Any, number: str, *, amount: int = 2500, attempt: int = 1) -> ChargeRequest:
    org = unique("org")
    customer = harness.gateway.create_customer(reference=org, email="owner@example.com")
    card = harness.gateway.attach_payment_method(customer_id=customer.id, payment_method=harness.card(number))
    invoice = unique("inv")
    return ChargeRequest(customer_id=customer.id, payment_method_id=card.token, amount=amount, currency="usd",
                         idempotency_key=charge_key(invoice, attempt), invoice_id=invoice, org_id=org)


class TestCustomersAndCards:
    def test_a_customer_is_created_once_per_reference(self, harness: Any) -> None:
        ref = unique("org")
        first = harness.gateway.create_customer(reference=ref)
        assert harness.gateway.create_customer(reference=ref) == first
        assert harness.gateway.create_customer(reference=unique("org")) != first

    def test_an_attached_card_keeps_only_its_id_brand_and_last_four(self, harness: Any) -> None:
        customer = harness.gateway.create_customer(reference=unique("org"))
        card = harness.gateway.attach_payment_method(customer_id=customer.id,
                                                     payment_method=harness.card("4242424242424242"))
        assert (card.brand, card.last4) == ("visa", "4242")
        assert "4242424242424242" not in card.token

    @pytest.mark.parametrize(("number", "reason"), [("4000000000000002", "generic_decline"),
                                                    ("4000000000009995", "insufficient_funds")])
    def test_a_card_can_be_declined_at_attach(self, harness: Any, number: str, reason: str) -> None:
        customer = harness.gateway.create_customer(reference=unique("org"))
        with pytest.raises(CardDeclined) as refused:
            harness.gateway.attach_payment_method(customer_id=customer.id, payment_method=harness.card(number))
        assert refused.value.status == 402
        assert refused.value.details["decline_code"] == reason

    def test_a_setup_gives_a_page_a_client_secret(self, harness: Any) -> None:
        customer = harness.gateway.create_customer(reference=unique("org"))
        setup = harness.gateway.start_card_setup(customer_id=customer.id)
        assert setup.client_secret.startswith(setup.intent_id)


class TestCharge:
    def test_paid_and_the_same_key_never_charges_twice(self, harness: Any) -> None:
        request = request_for(harness, "4242424242424242")
        paid = harness.gateway.charge_off_session(request)
        assert paid.outcome is ChargeOutcome.PAID and paid.succeeded and paid.reference
        assert paid.amount == 2500
        again = harness.gateway.charge_off_session(request)
        assert (again.outcome, again.reference) == (ChargeOutcome.PAID, paid.reference)
        assert harness.charges_with_key(request.idempotency_key) in (1, None)

    def test_declined_at_charge_with_codes(self, harness: Any) -> None:
        result = harness.gateway.charge_off_session(request_for(harness, "4000000000000341"))
        assert result.outcome is ChargeOutcome.DECLINED and not result.succeeded
        assert (result.failure_code, result.decline_code) == ("card_declined", "generic_decline")
        assert result.failure_message

    def test_an_outage_is_retryable_and_the_retry_charges_once(self, harness: Any) -> None:
        request = request_for(harness, "4242424242424242")
        flaky = harness.flaky(drops=1, retries=0)
        lost = flaky.charge_off_session(request)
        assert lost.outcome is ChargeOutcome.RETRYABLE and not lost.succeeded
        retried = flaky.charge_off_session(request)
        assert retried.outcome is ChargeOutcome.PAID
        assert harness.charges_with_key(request.idempotency_key) in (1, None)
        found = harness.gateway.find_charge(request)
        assert found is not None and found.reference == retried.reference


class TestVerification:
    def test_action_required_then_verified_is_paid(self, harness: Any) -> None:
        request = request_for(harness, "4000002500003155")
        result = harness.gateway.charge_off_session(request)
        assert result.outcome is ChargeOutcome.ACTION_REQUIRED and not result.succeeded
        action = result.action
        assert action is not None and action.client_secret
        waiting = harness.gateway.complete_verification(intent_id=action.intent_id)
        assert waiting.outcome is ChargeOutcome.ACTION_REQUIRED  # the customer has not verified yet
        verdict = harness.verify(action, success=True)
        done = harness.gateway.complete_verification(intent_id=action.intent_id, verdict=verdict)
        assert done.outcome is ChargeOutcome.PAID and done.amount == 2500

    def test_action_required_then_failed_is_declined(self, harness: Any) -> None:
        result = harness.gateway.charge_off_session(request_for(harness, "4000002500003155"))
        assert result.action is not None
        verdict = harness.verify(result.action, success=False)
        done = harness.gateway.complete_verification(intent_id=result.action.intent_id, verdict=verdict)
        assert done.outcome is ChargeOutcome.DECLINED
        assert done.failure_code == "payment_intent_authentication_failure"


class TestReconciliation:
    def test_a_charge_is_found_by_its_key(self, harness: Any) -> None:
        request = request_for(harness, "4242424242424242")
        paid = harness.gateway.charge_off_session(request)
        found = harness.gateway.find_charge(request)
        assert found is not None
        assert (found.outcome, found.reference, found.amount) == (ChargeOutcome.PAID, paid.reference, 2500)

    def test_recent_charges_are_the_paid_ones_with_what_they_paid(self, harness: Any) -> None:
        since = wall_now() - timedelta(seconds=5)
        paid_request = request_for(harness, "4242424242424242", amount=1234)
        paid = harness.gateway.charge_off_session(paid_request)
        harness.gateway.charge_off_session(paid_request)  # the same key: still one payment
        declined = harness.gateway.charge_off_session(request_for(harness, "4000000000000341"))
        waiting_request = request_for(harness, "4000002500003155", amount=777)
        waiting = harness.gateway.charge_off_session(waiting_request)
        assert waiting.action is not None and not declined.succeeded

        listed = {c.reference: c for c in harness.gateway.recent_charges(since=since)}
        assert paid.reference in listed and declined.reference not in listed
        assert waiting.action.intent_id not in listed  # not paid until the bank says so
        mine = listed[paid.reference]
        assert (mine.amount, mine.currency, mine.invoice_id, mine.org_id, mine.idempotency_key) == (
            1234, "usd", paid_request.invoice_id, paid_request.org_id, paid_request.idempotency_key)
        assert [c.reference for c in listed.values()].count(paid.reference) == 1
        assert abs((mine.created_at - wall_now()).total_seconds()) < 60

        verdict = harness.verify(waiting.action, success=True)
        verified = harness.gateway.complete_verification(intent_id=waiting.action.intent_id, verdict=verdict)
        after = {c.reference: c for c in harness.gateway.recent_charges(since=since)}
        assert after[verified.reference].invoice_id == waiting_request.invoice_id
        assert after[verified.reference].amount == 777
        assert not list(harness.gateway.recent_charges(since=wall_now() + timedelta(minutes=5)))


class TestRefund:
    def test_a_full_refund_then_nothing_more(self, harness: Any) -> None:
        request = request_for(harness, "4242424242424242")
        paid = harness.gateway.charge_off_session(request)
        with pytest.raises(RefundRefused):
            harness.gateway.refund(reference=paid.reference, amount=2501, refunded_before=0,
                                   idempotency_key=unique("r"))
        full = harness.gateway.refund(reference=paid.reference, amount=2500, refunded_before=0,
                                      idempotency_key=unique("r"))
        assert (full.amount, full.charge_reference) == (2500, paid.reference)
        with pytest.raises(RefundRefused):
            harness.gateway.refund(reference=paid.reference, amount=1, refunded_before=2500,
                                   idempotency_key=unique("r"))

    def test_partial_refunds_up_to_what_was_paid(self, harness: Any) -> None:
        paid = harness.gateway.charge_off_session(request_for(harness, "4242424242424242"))
        harness.gateway.refund(reference=paid.reference, amount=1000, refunded_before=0,
                                   idempotency_key=unique("r"))
        harness.gateway.refund(reference=paid.reference, amount=1500, refunded_before=1000,
                               idempotency_key=unique("r"))
        with pytest.raises(RefundRefused):
            harness.gateway.refund(reference=paid.reference, amount=1, refunded_before=2500,
                                   idempotency_key=unique("r"))

    def test_a_declined_charge_cannot_be_refunded(self, harness: Any) -> None:
        declined = harness.gateway.charge_off_session(request_for(harness, "4000000000000341"))
        with pytest.raises(RefundRefused):
            harness.gateway.refund(reference=declined.reference, amount=1, refunded_before=0,
                                   idempotency_key=unique("r"))


def event_body() -> bytes:
    return json.dumps({"id": unique("evt"), "type": "payment_intent.succeeded",
                       "data": {"object": {"id": "pi_123", "object": "payment_intent"}}}).encode()


class TestWebhooks:
    def test_a_good_signature_is_parsed(self, harness: Any) -> None:
        body = event_body()
        header = signing.sign(body, secret=WEBHOOK_SECRET, timestamp=int(time.time()))
        event = harness.gateway.parse_webhook(payload=body, signature=header)
        assert (event.type, event.object_id) == ("payment_intent.succeeded", "pi_123")
        assert event.id == json.loads(body)["id"] and event.data["object"] == "payment_intent"

    @pytest.mark.parametrize("header", ["t=1,v1=00", "", None, "garbage"])
    def test_a_bad_or_missing_signature_is_rejected(self, harness: Any, header: str | None) -> None:
        with pytest.raises(WebhookRejected):
            harness.gateway.parse_webhook(payload=event_body(), signature=header)

    def test_a_body_changed_after_signing_is_rejected(self, harness: Any) -> None:
        body = event_body()
        header = signing.sign(body, secret=WEBHOOK_SECRET, timestamp=int(time.time()))
        with pytest.raises(WebhookRejected):
            harness.gateway.parse_webhook(payload=body.replace(b"pi_123", b"pi_999"), signature=header)

    def test_an_old_signature_is_rejected(self, harness: Any) -> None:
        body = event_body()
        header = signing.sign(body, secret=WEBHOOK_SECRET, timestamp=int(time.time()) - 3600)
        with pytest.raises(WebhookRejected):
            harness.gateway.parse_webhook(payload=body, signature=header)

    def test_without_a_secret_every_webhook_is_rejected(self, harness: Any) -> None:
        body = event_body()
        header = signing.sign(body, secret=WEBHOOK_SECRET, timestamp=int(time.time()))
        with pytest.raises(WebhookRejected) as rejected:
            harness.without_webhook_secret().parse_webhook(payload=body, signature=header)
        assert "secret" in rejected.value.message
