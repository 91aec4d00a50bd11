"""Stripe's own delivery, end to end: localstripe POSTs the events of a real off-session charge, signed
with the endpoint's secret, to ``POST /webhooks/stripe`` of a live server on loopback using the Stripe
gateway; the ``stripe`` library verifies them and each is stored once by its id, with its job."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from slotwise.api.app import create_app
from slotwise.catalog import load_catalog
from slotwise.clock import SimulatedClock
from slotwise.config import Settings
from slotwise.gateway import ChargeRequest, charge_key
from slotwise.gateway.base import METADATA_INVOICE, METADATA_ORG
from slotwise.gateway.stripe_gateway import StripeGateway
from slotwise.models import Job, ProcessorEvent
from slotwise.services.processor_events import PROCESSOR_EVENT_JOB
from tests.gateway.conftest import unique
from tests.localstripe_server import LocalStripe, free_port

SECRET = "whsec_delivery"


@pytest.fixture
def server_url(settings: Settings, engine: Engine, clock: SimulatedClock, localstripe: LocalStripe) -> Iterator[str]:
    gateway = StripeGateway(secret_key=localstripe.secret_key, api_base=localstripe.api_base, webhook_secret=SECRET)
    app = create_app(settings, engine=engine, clock=clock, gateway=gateway, catalog=load_catalog())
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
