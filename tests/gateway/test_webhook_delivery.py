"""Stripe's own delivery, end to end: localstripe POSTs the events of a real off-session charge, signed
with the endpoint's secret, to ``POST /webhooks/stripe`` of a live server on loopback using the Stripe
gateway; the ``stripe`` library verifies them and each is stored once by its id, with its job. And the
whole SCA loop by webhook alone: slots whose payment the bank must verify are granted when the
customer passes 3-D Secure and Stripe reports it — nobody calls the verify route — exactly once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from slotwise.api.app import create_app
from slotwise.catalog import load_catalog
from slotwise.clock import SimulatedClock
from slotwise.config import Settings
from slotwise.doctor import run_doctor
from slotwise.gateway import ChargeRequest, charge_key
from slotwise.gateway.base import METADATA_INVOICE, METADATA_ORG
from slotwise.gateway.stripe_gateway import StripeGateway
from slotwise.models import Invoice, Job, ProcessorEvent
from slotwise.services.context import Env
from slotwise.services.processor_events import PROCESSOR_EVENT_JOB
from slotwise.services.renewals import sweep
from slotwise.worker import Worker
from tests.conftest import OPERATOR_KEY
from tests.factories import Api
from tests.gateway.conftest import unique
from tests.localstripe_server import LocalStripe, free_port

SECRET = "whsec_delivery"


@pytest.fixture
def stripe_env(localstripe: LocalStripe) -> Env:
    return Env(catalog=load_catalog(), gateway=StripeGateway(
        secret_key=localstripe.secret_key, publishable_key=localstripe.publishable_key,
        api_base=localstripe.api_base, webhook_secret=SECRET))


@pytest.fixture
def server_url(settings: Settings, engine: Engine, clock: SimulatedClock, stripe_env: Env) -> Iterator[str]:
    app = create_app(settings, engine=engine, clock=clock, gateway=stripe_env.gateway, catalog=stripe_env.catalog)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_charge_at_stripe_arrives_signed_and_is_stored_once(
    server_url: str, localstripe: LocalStripe, sessions: sessionmaker[Session]
) -> None:
    localstripe.register_webhook(unique("slotwise"), server_url + "/webhooks/stripe", SECRET)
    gateway = StripeGateway(secret_key=localstripe.secret_key, api_base=localstripe.api_base)
    customer = gateway.create_customer(reference=unique("org"))
    card = gateway.attach_payment_method(customer_id=customer.id,
                                         payment_method=localstripe.card_payment_method("4242424242424242"))
    invoice_id = unique("inv")
    result = gateway.charge_off_session(ChargeRequest(
        customer_id=customer.id, payment_method_id=card.token, amount=1900, currency="usd",
        idempotency_key=charge_key(invoice_id, 1), invoice_id=invoice_id, org_id="org_delivery"))
    assert result.succeeded

    def succeeded() -> list[ProcessorEvent]:
        with sessions() as db:
            return list(db.scalars(select(ProcessorEvent).where(ProcessorEvent.type == "payment_intent.succeeded",
                                                                ProcessorEvent.object_id == result.reference)))

    deadline = time.monotonic() + 15  # localstripe waits a second before it delivers
    while not succeeded() and time.monotonic() < deadline:
        time.sleep(0.1)
    [row] = succeeded()
    metadata = json.loads(row.data)["metadata"]
    assert metadata[METADATA_INVOICE] == invoice_id and metadata[METADATA_ORG] == "org_delivery"
    with sessions() as db:
        payloads = [json.loads(p) for p in db.scalars(select(Job.payload).where(Job.kind == PROCESSOR_EVENT_JOB))]
    assert {"event_id": row.id} in payloads


def test_slots_the_bank_verified_are_granted_by_the_webhook_alone_once(
    server_url: str, localstripe: LocalStripe, sessions: sessionmaker[Session], stripe_env: Env,
    clock: SimulatedClock,
) -> None:
    localstripe.register_webhook(unique("slotwise"), server_url + "/webhooks/stripe", SECRET)
    with httpx.Client(base_url=server_url, timeout=30) as http:
        api = Api(http, OPERATOR_KEY)  # type: ignore[arg-type]  # an httpx.Client, like TestClient
        org = api.create_org("free")
        assert org.put("/payment-method", {"payment_method": localstripe.card_payment_method(
            "4242424242424242")}).status_code == 200
        assert org.post("/subscription", {"plan": "pro"}).status_code == 200
        assert org.put("/payment-method", {"payment_method": localstripe.card_payment_method(
            "4000002500003155")}).status_code == 200
        before = org.capacity("agents")["active_slots"]
        waiting = org.add_slots("agent_slots", 2)
        assert waiting.status_code == 402, waiting.text
        invoice_id = waiting.json()["error"]["invoice"]
        with sessions() as db:
            invoice = db.get(Invoice, invoice_id)
            assert invoice is not None and invoice.status == "open" and invoice.action_intent
            intent, total = invoice.action_intent, invoice.total
        [pi] = [p for p in localstripe.payment_intents() if p["id"] == intent]
        localstripe.authenticate(intent, pi["client_secret"], success=True)  # the customer passes 3-D Secure

        worker = Worker(sessions, env=stripe_env, clock=clock)
        deadline = time.monotonic() + 20  # localstripe delivers about a second later
        while org.capacity("agents")["active_slots"] == before and time.monotonic() < deadline:
            worker.run_pending()
            time.sleep(0.1)
        assert org.capacity("agents")["active_slots"] == before + 2
        with sessions() as db:
            paid = db.get(Invoice, invoice_id)
            assert paid is not None and (paid.status, paid.action_intent) == ("paid", None)
        # Too late for anything else to change it: the verify route, the billing run's reconciliation.
        assert org.post(f"/invoices/{invoice_id}/verify", None).json()["status"] == "paid"
        with sessions.begin() as db:
            at = clock.now(db)
        report = sweep(sessions, env=stripe_env, at=at)
        assert report.reconciled == [] and report.refunded == []
        assert org.capacity("agents")["active_slots"] == before + 2
        assert [p["status"] for p in localstripe.payment_intents() if p["metadata"].get(
            "slotwise_invoice_id") == invoice_id] == ["succeeded"] and pi["amount"] == total
        found = run_doctor(sessions, stripe_env.catalog, org_ids=[org.id], gateway=stripe_env.gateway)
        assert found.violations == []
