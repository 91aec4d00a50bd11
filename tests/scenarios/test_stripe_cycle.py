"""A whole billing cycle with ``SLOTWISE_GATEWAY=stripe``, against localstripe (a fake Stripe on
loopback, started by the tests): the card is entered on Stripe's side (here: created at localstripe as
Stripe.js would) and attached by its ``pm_…`` id; slotwise never sees the number. Then a plan, slots,
a renewal, a declined renewal and the card update that settles it — every charge an off-session
PaymentIntent carrying the invoice in its metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from slotwise.api.app import create_app
from slotwise.clock import SimulatedClock
from slotwise.config import Settings
from slotwise.gateway.stripe_gateway import StripeGateway
from slotwise.services.context import Env
from tests.conftest import OPERATOR_KEY
from tests.factories import Api, billing_run, change_plan, error_of
from tests.localstripe_server import LocalStripe, localstripe

__all__ = ["localstripe"]


@pytest.fixture
def stripe_api(settings: Settings, engine: Engine, clock: SimulatedClock, env: Env,
               localstripe: LocalStripe) -> Iterator[Api]:
    gateway = StripeGateway(secret_key=localstripe.secret_key, publishable_key=localstripe.publishable_key,
                            api_base=localstripe.api_base)
    app = create_app(settings, engine=engine, clock=clock, gateway=gateway, catalog=env.catalog)
    with TestClient(app) as client:
        yield Api(client, OPERATOR_KEY)


def intents_of(server: LocalStripe, org_id: str) -> list[dict[str, Any]]:
    return [pi for pi in server.payment_intents() if pi["metadata"].get("slotwise_org_id") == org_id]


def test_a_cycle_on_stripe_plan_slots_renewal_decline_and_card_update(stripe_api: Api,
                                                                       localstripe: LocalStripe) -> None:
    org = stripe_api.create_org("free")  # no card: with Stripe it is entered on Stripe's form
    assert org.summary()["payment_method"] is None
    error_of(org.put("/payment-method", {"card_number": "4242424242424242"}), 422, "invalid_request")

    attached = org.put("/payment-method", {"payment_method": localstripe.card_payment_method("4242424242424242")})
    assert attached.status_code == 200, attached.text
    assert attached.json()["payment_method"] == {"brand": "visa", "last4": "4242"}

    assert change_plan(org, "pro").status_code == 200
    assert org.summary()["subscription"]["status"] == "active"
    assert org.add_slots("agent_slots", 2).status_code == 200
    paid = [i for i in org.invoices() if i["status"] == "paid"]
    intents = intents_of(localstripe, org.id)
    assert len(intents) == len(paid) == 2
    assert {pi["metadata"]["slotwise_invoice_id"] for pi in intents} == {i["id"] for i in paid}
    assert all(pi["status"] == "succeeded" for pi in intents)

    stripe_api.advance(31)
    billing_run(stripe_api)
    renewal = org.invoices()[0]
    assert renewal["kind"] == "renewal" and renewal["status"] == "paid"
    assert len(intents_of(localstripe, org.id)) == 3

    # A card that Stripe declines at charge time: the next renewal fails and the period is past due.
    assert org.put("/payment-method",
                   {"payment_method": localstripe.card_payment_method("4000000000000341")}).status_code == 200
    stripe_api.advance(31)
    billing_run(stripe_api)
    assert org.summary()["subscription"]["status"] == "past_due"
    owed = org.invoices()[0]
    assert owed["kind"] == "renewal" and owed["status"] == "open"

    # A good card settles it at once, charged once.
    update = org.put("/payment-method", {"payment_method": localstripe.card_payment_method("4242424242424242")})
    assert update.status_code == 200, update.text
    assert [i["status"] for i in update.json()["retried_invoices"]] == ["paid"]
    assert org.summary()["subscription"]["status"] == "active"
    succeeded = [pi for pi in intents_of(localstripe, org.id) if pi["status"] == "succeeded"]
    assert len(succeeded) == 4
    assert len({pi["metadata"]["slotwise_invoice_id"] for pi in succeeded}) == 4  # never twice for one invoice


def test_a_card_stripe_refuses_at_attach_changes_nothing(stripe_api: Api, localstripe: LocalStripe) -> None:
    org = stripe_api.create_org("free")
    declined = org.put("/payment-method", {"payment_method": localstripe.card_payment_method("4000000000000002")})
    error = error_of(declined, 402, "card_declined")
    assert error["decline_code"] == "generic_decline"
    assert org.summary()["payment_method"] is None
