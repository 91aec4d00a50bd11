"""A whole billing cycle with ``SLOTWISE_GATEWAY=stripe``, against localstripe (a fake Stripe on
loopback, started by the tests): the card is entered on Stripe's side (here: created at localstripe as
Stripe.js would) and attached by its ``pm_…`` id; slotwise never sees the number. Then a plan, slots,
a renewal, a declined renewal and the card update that settles it — every charge an off-session
PaymentIntent carrying the invoice in its metadata. Also: subscribing through checkout (the page posts
Stripe.js's ``pm_…``), slots whose charge the bank asks to verify (3-D Secure, passed or failed in
localstripe's stand-in modal), and cancel at period end (no charge for the next period) or resume.
Each checks the processor's side (localstripe's PaymentIntents) as well as slotwise's answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from slotwise.api.app import create_app
from slotwise.clock import SimulatedClock
from slotwise.config import Settings
from slotwise.gateway.stripe_gateway import StripeGateway
from slotwise.models import Base, Organization, Subscription
from slotwise.services.context import Env
from tests.conftest import OPERATOR_KEY
from tests.factories import Api, Org, billing_run, change_plan, error_of
from tests.localstripe_server import LocalStripe, localstripe
from tests.web.test_sessions import PASSWORD, login

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


def intents_for(server: LocalStripe, invoice_id: str) -> list[dict[str, Any]]:
    return [pi for pi in server.payment_intents() if pi["metadata"].get("slotwise_invoice_id") == invoice_id]


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def attach(org: Org, server: LocalStripe, number: str) -> None:
    """The Owner enters ``number`` on Stripe's card field; slotwise gets only the ``pm_…``."""
    ok(org.put("/payment-method", {"payment_method": server.card_payment_method(number)}))


def pro_on_stripe(api: Api, server: LocalStripe) -> Org:
    """A Free organization that attached a good card and moved to Pro (paid at once)."""
    org = api.create_org("free")
    attach(org, server, GOOD)
    ok(change_plan(org, "pro"))
    assert org.summary()["subscription"]["status"] == "active"
    return org


def stored_text(engine: Engine) -> str:
    """Every value in every table of slotwise's database, as one string."""
    with Session(engine) as db:
        return "\n".join(repr(tuple(row)) for table in Base.metadata.sorted_tables
                         for row in db.execute(select(table)))


GOOD, NEEDS_VERIFICATION = "4242424242424242", "4000002500003155"
PRO = 15000


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


# -- subscribe through checkout ---------------------------------------------------------------------
def checkout_form(client: TestClient, path: str) -> dict[str, str]:
    """The checkout page's form as Stripe.js leaves it: slotwise's hidden fields; the card goes only
    to Stripe's Element (no card-number field of slotwise's own)."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    assert "data-stripe-card" in page.text and 'name="card_number"' not in page.text
    setup = re.search(r'data-client-secret="(seti_[^"]+)"', page.text)
    assert setup is not None, "no SetupIntent for Stripe.js to confirm"
    return dict(re.findall(r'name="(csrf_token|submission|plan)" value="([^"]*)"', page.text))


def test_subscribe_through_checkout_on_stripe(stripe_api: Api, localstripe: LocalStripe, engine: Engine) -> None:
    email = "owner@stripe-checkout.test"
    org = stripe_api.create_org("free", owner_email=email, owner_password=PASSWORD)
    before = org.summary()

    started = ok(org.post("/checkout", {"plan": "pro"}))
    assert started["plan"] == "pro"
    url = urlsplit(started["url"])
    assert (url.path, url.query) == ("/billing/checkout", "plan=pro")
    assert org.summary() == before and org.invoices() == [] and intents_of(localstripe, org.id) == []

    client = stripe_api.client  # the Owner's browser, signed in
    assert login(client, email).status_code == 303
    form = checkout_form(client, f"{url.path}?{url.query}")
    assert form["plan"] == "pro"
    payment_method = localstripe.card_payment_method(GOOD)  # what stripe.confirmCardSetup makes
    done = client.post("/billing/checkout", data={**form, "payment_method": payment_method},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/billing", done.text
    billing = client.get("/billing").text
    assert "Your Pro plan is active." in billing and "15,000 credits were added." in billing

    summary = org.summary()
    assert summary["plan"]["code"] == "pro" and summary["subscription"]["status"] == "active"
    assert summary["payment_method"] == {"brand": "visa", "last4": "4242"}
    credits = ok(org.get("/credits"))
    assert credits["plan"]["allowance"] == PRO and credits["total"] == PRO
    [invoice] = org.invoices()
    assert invoice["status"] == "paid" and invoice["total"] == PRO

    [intent] = intents_of(localstripe, org.id)  # charged once, for that invoice, with that card
    assert intent["status"] == "succeeded" and intent["amount"] == invoice["total"]
    assert intent["metadata"]["slotwise_invoice_id"] == invoice["id"]
    assert intent["payment_method"] == payment_method

    with Session(engine) as db:
        row = db.get_one(Organization, org.id)
        assert (row.card_brand, row.card_last4) == ("visa", "4242")
        assert row.processor_customer_id == intent["customer"]  # the processor's ids, not the card
        assert row.card_token == f"{intent['customer']} {payment_method}"
    stored = stored_text(engine)
    assert GOOD not in stored and "4242 4242" not in stored  # no card number anywhere in slotwise

    again = client.post("/billing/checkout", data={**form, "payment_method": payment_method},
                        follow_redirects=False)  # the same form resubmitted (back button) pays nothing more
    assert again.status_code == 303
    assert len(org.invoices()) == 1 and len(intents_of(localstripe, org.id)) == 1


def test_a_checkout_stripe_declines_changes_nothing(stripe_api: Api, localstripe: LocalStripe) -> None:
    email = "owner@stripe-declined.test"
    org = stripe_api.create_org("free", owner_email=email, owner_password=PASSWORD)
    before = org.summary()
    client = stripe_api.client
    assert login(client, email).status_code == 303
    form = checkout_form(client, "/billing/checkout?plan=pro")
    refused = client.post("/billing/checkout", data={
        **form, "payment_method": localstripe.card_payment_method("4000000000000341")}, follow_redirects=False)
    assert refused.headers["location"] == "/billing/checkout?plan=pro"
    assert "Nothing was charged and nothing changed." in client.get(refused.headers["location"]).text
    assert org.summary() == before and org.invoices() == []
    assert all(pi["status"] != "succeeded" for pi in intents_of(localstripe, org.id))


# -- bank verification (SCA) on an add ----------------------------------------------------------------
def needs_verification(org: Org, server: LocalStripe, quantity: int) -> tuple[str, dict[str, Any]]:
    """Add ``quantity`` slots with the 3155 card: a 402 with the open invoice and its verify page, and
    the one PaymentIntent waiting for the customer at Stripe."""
    error = error_of(org.add_slots("agent_slots", quantity), 402, "payment_action_required")
    invoice_id: str = error["invoice"]
    assert error["verify_url"] == f"/billing/invoices/{invoice_id}/verify"
    shown = ok(org.get(f"/invoices/{invoice_id}"))
    assert shown["status"] == "open" and shown["verify_url"] == error["verify_url"] and shown["paid_at"] is None
    [intent] = intents_for(server, invoice_id)
    assert intent["status"] == "requires_action" and intent["amount"] == shown["total"] > 0
    return invoice_id, intent


def test_slots_the_bank_must_verify_are_granted_once_verified_at_stripe(stripe_api: Api,
                                                                        localstripe: LocalStripe) -> None:
    org = pro_on_stripe(stripe_api, localstripe)
    attach(org, localstripe, NEEDS_VERIFICATION)
    before = org.capacity("agents")

    invoice_id, intent = needs_verification(org, localstripe, 2)
    assert org.capacity("agents") == before  # nothing granted yet
    error_of(org.post(f"/invoices/{invoice_id}/verify"), 409, "verification_pending")  # not verified yet
    assert org.capacity("agents") == before and ok(org.get(f"/invoices/{invoice_id}"))["status"] == "open"

    localstripe.authenticate(intent["id"], intent["client_secret"], success=True)  # Stripe.js's modal
    paid = ok(org.post(f"/invoices/{invoice_id}/verify"))
    assert paid["status"] == "paid" and paid["verify_url"] is None
    after = org.capacity("agents")
    assert after["active_slots"] == before["active_slots"] + 2
    assert after["renewal_slots"] == before["renewal_slots"] + 2
    [settled] = intents_for(localstripe, invoice_id)
    assert settled["status"] == "succeeded" and settled["amount"] == paid["total"]

    again = ok(org.post(f"/invoices/{invoice_id}/verify"))  # a second verification changes nothing
    assert again["status"] == "paid" and org.capacity("agents") == after
    assert [pi["status"] for pi in intents_for(localstripe, invoice_id)] == ["succeeded"]
    assert [pi["status"] for pi in intents_of(localstripe, org.id)] == ["succeeded"] * 2  # plan + slots


def test_slots_whose_verification_fails_at_stripe_are_void_and_nothing_granted(stripe_api: Api,
                                                                               localstripe: LocalStripe) -> None:
    org = pro_on_stripe(stripe_api, localstripe)
    attach(org, localstripe, NEEDS_VERIFICATION)
    before = org.capacity("agents")

    invoice_id, intent = needs_verification(org, localstripe, 1)
    localstripe.authenticate(intent["id"], intent["client_secret"], success=False)
    error = error_of(org.post(f"/invoices/{invoice_id}/verify"), 402, "payment_failed")
    assert error["invoice"] == invoice_id
    assert ok(org.get(f"/invoices/{invoice_id}"))["status"] == "void"
    assert org.capacity("agents") == before
    assert ok(org.post(f"/invoices/{invoice_id}/verify"))["status"] == "void"  # settled: stays void
    assert org.capacity("agents") == before
    assert all(pi["status"] != "succeeded" for pi in intents_for(localstripe, invoice_id))


# -- cancel at period end, or resume ------------------------------------------------------------------
def test_cancel_at_period_end_on_stripe_charges_nothing_for_the_next_period(
        stripe_api: Api, localstripe: LocalStripe, engine: Engine) -> None:
    org = pro_on_stripe(stripe_api, localstripe)  # Nov 15 09:00 → Dec 15 09:00
    ok(org.add_slots("agent_slots", 2))
    stripe_api.clock_to("2026-11-25T10:00:00Z")
    canceled = ok(org.post("/subscription/cancel"))
    assert canceled["kind"] == "cancel_scheduled"
    assert canceled["subscription"]["status"] == "active" and canceled["subscription"]["cancel_at_period_end"]
    invoices = org.invoices()
    assert [i["status"] for i in invoices] == ["paid", "paid"]
    charged = [(pi["id"], pi["status"]) for pi in intents_of(localstripe, org.id)]
    assert [status for _, status in charged] == ["succeeded"] * 2

    stripe_api.clock_to("2026-12-15T08:59:00Z")  # the last minute of the period paid for
    summary = org.summary()
    assert summary["plan"]["code"] == "pro" and summary["subscription"]["status"] == "active"
    assert summary["capacity"]["agents"]["active_slots"] == 2

    stripe_api.clock_to("2026-12-15T09:01:00Z")
    billing_run(stripe_api)
    summary = org.summary()
    assert summary["plan"]["code"] == "free" and summary["subscription"] is None
    assert summary["capacity"]["agents"]["active_slots"] == 0
    with Session(engine) as db:
        [sub] = db.scalars(select(Subscription).where(Subscription.org_id == org.id))
        assert sub.status == "canceled"
    assert org.invoices() == invoices  # nothing billed for the next period, nothing deleted
    assert [(pi["id"], pi["status"]) for pi in intents_of(localstripe, org.id)] == charged  # no charge at Stripe

    stripe_api.advance(31)  # and nothing in the months after
    billing_run(stripe_api)
    assert org.invoices() == invoices and len(intents_of(localstripe, org.id)) == 2


def test_resume_before_the_end_renews_on_stripe(stripe_api: Api, localstripe: LocalStripe) -> None:
    org = pro_on_stripe(stripe_api, localstripe)
    ok(org.add_slots("agent_slots", 2))
    stripe_api.clock_to("2026-11-25T10:00:00Z")
    ok(org.post("/subscription/cancel"))
    resumed = ok(org.post("/subscription/resume"))
    assert resumed["kind"] == "resumed" and resumed["subscription"]["cancel_at_period_end"] is False

    stripe_api.clock_to("2026-12-15T09:01:00Z")
    billing_run(stripe_api)
    summary = org.summary()
    assert summary["plan"]["code"] == "pro" and summary["subscription"]["status"] == "active"
    assert summary["capacity"]["agents"]["active_slots"] == 2
    renewal = org.invoices()[0]
    assert renewal["kind"] == "renewal" and renewal["status"] == "paid"
    [intent] = intents_for(localstripe, renewal["id"])  # the next period charged once, at Stripe
    assert intent["status"] == "succeeded" and intent["amount"] == renewal["total"]
    assert len(intents_of(localstripe, org.id)) == 3


def test_a_checkout_the_bank_must_verify_starts_the_plan_once_verified(
        stripe_api: Api, localstripe: LocalStripe) -> None:
    email = "owner@stripe-sca-checkout.test"
    org = stripe_api.create_org("free", owner_email=email, owner_password=PASSWORD)
    client = stripe_api.client
    assert login(client, email).status_code == 303
    form = checkout_form(client, "/billing/checkout?plan=pro")
    answer = client.post("/billing/checkout", data={
        **form, "payment_method": localstripe.card_payment_method(NEEDS_VERIFICATION)}, follow_redirects=False)
    found = re.fullmatch(r"/billing/invoices/([^/]+)/verify", answer.headers["location"])
    assert found is not None, answer.headers["location"]
    invoice_id = found.group(1)
    assert org.summary()["plan"]["code"] == "free"  # nothing granted until verified
    assert ok(org.get(f"/invoices/{invoice_id}"))["status"] == "open"
    [intent] = intents_for(localstripe, invoice_id)
    assert intent["status"] == "requires_action" and intent["amount"] == PRO

    localstripe.authenticate(intent["id"], intent["client_secret"], success=True)
    paid = ok(org.post(f"/invoices/{invoice_id}/verify"))
    assert paid["status"] == "paid"
    summary = org.summary()
    assert summary["plan"]["code"] == "pro" and summary["subscription"]["status"] == "active"
    assert ok(org.get("/credits"))["plan"]["allowance"] == PRO
    assert ok(org.post(f"/invoices/{invoice_id}/verify"))["status"] == "paid"  # once
    assert org.invoices() == [ok(org.get(f"/invoices/{invoice_id}"))]
    assert [pi["status"] for pi in intents_of(localstripe, org.id)] == ["succeeded"]
