"""Checkout in Chromium (SPEC §12): from Plans ("Redirecting to checkout…") to the checkout page, the
sandbox's card, back on Billing with the plan active; cancel and a declined card change nothing. Then
the same page with ``SLOTWISE_GATEWAY=stripe`` against localstripe: its stand-in Stripe.js is loaded,
the card is typed into the Elements field, the browser confirms the SetupIntent and only the ``pm_…``
id reaches slotwise."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.orm import Session

from slotwise.api.app import create_app
from slotwise.catalog import load_catalog
from slotwise.clock import SimulatedClock
from slotwise.config import Settings
from slotwise.models import Organization
from tests.localstripe_server import LocalStripe, localstripe
from tests.web.conftest import sign_in
from tests.web.support import OPERATOR_KEY, START, LiveServer, World

__all__ = ["localstripe"]


def plan_summary(page: Page) -> str:
    return page.locator(".summary").inner_text()


class TestSandboxCheckout:
    def test_free_to_pro_through_checkout(self, world: World, page: Page) -> None:
        org = world.org("free")
        sign_in(page, org.owner_email, path="/login?next=/billing/plans")
        choose = page.get_by_role("link", name="Choose Pro")
        page.route("**/billing/checkout?plan=pro", lambda route: (page.wait_for_timeout(300), route.continue_()))
        choose.click()
        expect(page.get_by_text("Redirecting to checkout…")).to_be_visible()
        expect(page.get_by_role("heading", name="Subscribe to Pro")).to_be_visible()
        summary = page.get_by_role("region", name="Order summary")
        expect(summary).to_contain_text("Due today")
        expect(summary).to_contain_text("$150.00")
        expect(summary).to_contain_text("15,000 credits are added once the invoice is paid.")

        page.get_by_label("Card number").fill("4242 4242 4242 4242")
        page.get_by_role("button", name="Subscribe and pay $150.00").click()
        expect(page.get_by_role("heading", name="Billing overview")).to_be_visible()
        expect(page.get_by_role("status")).to_contain_text("Your Pro plan is active.")
        expect(page.get_by_role("status")).to_contain_text("15,000 credits were added.")
        expect(page.locator(".summary")).to_contain_text("Active")
        expect(page.locator("#payment-method")).to_contain_text("Visa ending in 4242")
        expect(page.locator("tbody tr")).to_have_count(1)
        expect(page.locator("tbody tr").first).to_contain_text("Paid")

        page.get_by_role("button", name="Refresh Usage").click()  # re-reads the state: a plain reload
        expect(page).to_have_url(re.compile(r"/billing\??$"))
        expect(page.locator(".summary")).to_contain_text("Pro")

    def test_cancel_returns_with_no_charge_and_no_change(self, world: World, page: Page) -> None:
        org = world.org("free")
        sign_in(page, org.owner_email, path="/login?next=/billing/checkout?plan=starter")
        expect(page.get_by_role("heading", name="Subscribe to Starter")).to_be_visible()
        page.get_by_role("link", name="Cancel").click()
        expect(page.get_by_role("status")).to_contain_text("Checkout canceled — no charge and no change.")
        expect(page.locator(".summary")).to_contain_text("Free")
        expect(page.get_by_text("No invoices yet.")).to_be_visible()

    def test_a_declined_card_stays_on_checkout_and_changes_nothing(self, world: World, page: Page) -> None:
        org = world.org("free")
        sign_in(page, org.owner_email, path="/login?next=/billing/checkout?plan=pro")
        page.get_by_label("Card number").fill("4000 0000 0000 0002")
        page.get_by_role("button", name="Subscribe and pay $150.00").click()
        expect(page.get_by_role("heading", name="Subscribe to Pro")).to_be_visible()
        alert = page.locator(".flash-error")
        expect(alert).to_contain_text("Your card was declined.")
        expect(alert).to_contain_text("Nothing was charged and nothing changed.")
        page.goto("/billing")
        expect(page.locator(".summary")).to_contain_text("Free")
        expect(page.get_by_text("No invoices yet.")).to_be_visible()


class StripeWorld(World):
    """A test's slotwise with ``SLOTWISE_GATEWAY=stripe`` pointed at localstripe."""

    def __init__(self, server: LiveServer, folder: Path, stripe: LocalStripe) -> None:
        super().__init__(server, folder)
        settings = Settings(database_url=str(self.engine.url), operator_key=OPERATOR_KEY, catalog_path=None,
                            clock="simulated", clock_start=START, secure_cookies=False, gateway="stripe",
                            stripe_secret_key=stripe.secret_key, stripe_publishable_key=stripe.publishable_key,
                            stripe_api_base=stripe.api_base)
        self.app = create_app(settings, engine=self.engine, clock=SimulatedClock(START), catalog=load_catalog())
        self.state = self.app.state.slotwise
        server.target.app = self.app


@pytest.fixture
def stripe_world(live_server: LiveServer, tmp_path: Path, localstripe: LocalStripe) -> Iterator[World]:
    w = StripeWorld(live_server, tmp_path, localstripe)
    yield w
    w.close()


def test_elements_checkout_against_localstripe(stripe_world: World, browser: Browser,
                                               localstripe: LocalStripe) -> None:
    assert stripe_world.state.env.gateway.name == "stripe"
    context = browser.new_context(base_url=stripe_world.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.post_data or "") if r.url.endswith("/billing/checkout")
            and r.method == "POST" else None)
    try:
        org = stripe_world.org("free")
        sign_in(page, org.owner_email, path="/login?next=/billing/checkout?plan=pro")
        expect(page.get_by_role("heading", name="Subscribe to Pro")).to_be_visible()
        expect(page.get_by_label("Card number")).to_have_count(0)  # no card field of slotwise's own
        field = page.get_by_role("group", name="Card details")
        expect(field).to_contain_text("localstripe")  # the stand-in Stripe.js mounted its Element
        field.get_by_placeholder("number").fill("4242424242424242")
        field.get_by_placeholder("exp_month").fill("12")
        field.get_by_placeholder("exp_year").fill("34")
        field.get_by_placeholder("cvc").fill("123")
        field.get_by_placeholder("postal_code").fill("10115")
        page.get_by_role("button", name="Subscribe and pay $150.00").click()
        expect(page.get_by_role("status")).to_contain_text("Your Pro plan is active.", timeout=15_000)
        expect(page.locator("#payment-method")).to_contain_text("Visa ending in 4242")
        assert len(posted) == 1 and "payment_method=pm_" in posted[0] and "4242424242424242" not in posted[0]

        def saved(db: Session, at: object) -> tuple[str | None, str | None]:
            row = db.get(Organization, org.id)
            assert row is not None
            return row.plan_code, row.processor_customer_id

        plan, customer = stripe_world.run(saved)
        assert plan == "pro" and customer is not None and customer.startswith("cus_")
        intents = [pi for pi in localstripe.payment_intents() if pi["metadata"].get("slotwise_org_id") == org.id]
        assert [(pi["status"], pi["amount"]) for pi in intents] == [("succeeded", 15000)]
    finally:
        context.close()
