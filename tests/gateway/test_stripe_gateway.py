"""What only the Stripe gateway does, against localstripe: the library's own retries, reconciliation
of a key never charged, refunds counted at the processor, and a webhook localstripe itself signed."""

from __future__ import annotations

import json
import queue
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from slotwise.gateway import ChargeOutcome, ChargeRequest, RefundRefused
from tests.gateway.conftest import WEBHOOK_SECRET, StripeHarness, unique
from tests.gateway.test_contract import request_for
from tests.localstripe_server import LocalStripe


@pytest.fixture
def stripe_harness(localstripe: LocalStripe) -> StripeHarness:
    from slotwise.gateway.stripe_gateway import StripeGateway

    return StripeHarness(StripeGateway(secret_key=localstripe.secret_key, publishable_key=localstripe.publishable_key,
                                       webhook_secret=WEBHOOK_SECRET, api_base=localstripe.api_base), localstripe)


def test_the_library_retries_a_lost_answer_with_the_same_key(stripe_harness: StripeHarness) -> None:
    request = request_for(stripe_harness, "4242424242424242")
    result = stripe_harness.flaky(drops=1, retries=2).charge_off_session(request)
    assert result.outcome is ChargeOutcome.PAID
    assert stripe_harness.charges_with_key(request.idempotency_key) == 1


def test_a_key_never_charged_is_not_found(stripe_harness: StripeHarness) -> None:
    request = request_for(stripe_harness, "4242424242424242")
    assert stripe_harness.gateway.find_charge(request) is None
    other = request_for(stripe_harness, "4242424242424242")
    stripe_harness.gateway.charge_off_session(other)
    assert stripe_harness.gateway.find_charge(request) is None  # another customer's charge is not ours


def test_a_refund_slotwise_forgot_to_record_still_counts(stripe_harness: StripeHarness) -> None:
    paid = stripe_harness.gateway.charge_off_session(request_for(stripe_harness, "4242424242424242"))
    stripe_harness.gateway.refund(reference=paid.reference, amount=2500, refunded_before=0,
                                  idempotency_key=unique("r"))
    with pytest.raises(RefundRefused):
        stripe_harness.gateway.refund(reference=paid.reference, amount=1, refunded_before=0,
                                      idempotency_key=unique("r"))


def test_the_same_refund_key_refunds_once(stripe_harness: StripeHarness) -> None:
    paid = stripe_harness.gateway.charge_off_session(request_for(stripe_harness, "4242424242424242"))
    key = unique("r")
    first = stripe_harness.gateway.refund(reference=paid.reference, amount=1000, refunded_before=0, idempotency_key=key)
    again = stripe_harness.gateway.refund(reference=paid.reference, amount=1000, refunded_before=0, idempotency_key=key)
    assert again.reference == first.reference


def test_the_setup_points_the_page_at_a_stripe_js_that_answers(stripe_harness: StripeHarness) -> None:
    customer = stripe_harness.gateway.create_customer(reference=unique("org"))
    setup = stripe_harness.gateway.start_card_setup(customer_id=customer.id)
    assert setup.publishable_key == stripe_harness.server.publishable_key
    assert setup.js_url == stripe_harness.server.api_base + "/js.stripe.com/v3/"
    with urllib.request.urlopen(setup.js_url, timeout=5) as answer:
        assert answer.status == 200 and b"Stripe" in answer.read()


def test_a_webhook_signed_by_localstripe_is_accepted(stripe_harness: StripeHarness) -> None:
    received: queue.Queue[tuple[bytes, str]] = queue.Queue()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.put((body, self.headers["Stripe-Signature"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hook = unique("hook")
        stripe_harness.server.register_webhook(hook, f"http://127.0.0.1:{server.server_port}/", WEBHOOK_SECRET)
        request: ChargeRequest = request_for(stripe_harness, "4242424242424242")
        paid = stripe_harness.gateway.charge_off_session(request)
        while True:  # localstripe sends every event to every hook, a second after it happens
            body, signature = received.get(timeout=10)
            if json.loads(body)["type"] == "payment_intent.succeeded" and paid.reference in body.decode():
                break
        event = stripe_harness.gateway.parse_webhook(payload=body, signature=signature)
        assert (event.type, event.object_id) == ("payment_intent.succeeded", paid.reference)
        assert event.data["metadata"]["slotwise_idempotency_key"] == request.idempotency_key
    finally:
        stripe_harness.server.register_webhook(hook, "http://127.0.0.1:9/", "unused")
        server.shutdown()
