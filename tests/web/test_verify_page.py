"""The Owner's page for a payment the bank asks them to verify (SCA, SPEC §12), against the sandbox:
its stand-in bank page answers for the bank with real buttons in CSRF-protected forms."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session

from slotwise.services import payments
from tests.web.conftest import sign_in
from tests.web.support import SeededOrg, World

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
NEEDS_VERIFICATION = "4000002500003155"


def sca_card(world: World, org: SeededOrg) -> None:
    """The card attached the processor's way (the sandbox takes its test number as the payment method)."""
    def attach(db: Session, at: datetime) -> None:
        payments.update_payment_method(db, env=world.state.env, actor=org.owner, payment_method=NEEDS_VERIFICATION,
                                       at=at)
    world.run(attach)


def add_two_slots(page: Page) -> None:
    page.get_by_role("button", name="Add Additional Chatbot Slots").click()
    dialog = page.get_by_role("dialog", name="Add Additional Chatbot Slots")
    dialog.get_by_label("Quantity").fill("2")
    dialog.get_by_role("button", name="Add Slots").click()


class TestVerifyPage:
    def test_add_slots_then_complete_authentication(self, world: World, page: Page) -> None:
        org = world.org("pro")
        world.clock_to("2026-11-26T12:00:00Z")
        sca_card(world, org)
        sign_in(page, org.owner_email)
        add_two_slots(page)

        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("Payment needs verification")
        expect(alert).to_contain_text("Nothing is charged or added until you do.")
        expect(page.locator(".card-active")).to_have_count(0)  # nothing granted yet
        alert.get_by_role("link", name="Verify the payment").click()

        expect(page.get_by_role("heading", name="Payment needs verification")).to_be_visible()
        expect(page.get_by_test_id("verify-total")).to_have_text("$8.87")
        expect(page.get_by_text("Additional Chatbot Slots × 2, Nov 26 – Dec 15, 19/30 days")).to_be_visible()
        for width, height in ((1280, 900), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            page.screenshot(path=str(SHOTS / f"verify-{width}.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})

        page.get_by_role("button", name="Complete authentication").click()
        status = page.get_by_role("status")
        expect(status).to_contain_text("Payment verified. Slots added successfully.")
        expect(status).to_contain_text("$8.87 was charged")
        expect(page.get_by_role("heading", name=re.compile(r"Invoice #\d+"))).to_be_visible()
        expect(page.locator(".badge-paid")).to_be_visible()

        page.goto("/billing/addons")
        active = page.locator(".card-active")
        expect(active).to_contain_text("+2 slots")
        page.goto("/billing")
        expect(page.get_by_role("link", name="Payment needs verification")).to_have_count(0)

    def test_fail_authentication_voids_it_and_the_overview_shows_the_link_meanwhile(
        self, world: World, page: Page
    ) -> None:
        org = world.org("pro")
        sca_card(world, org)
        sign_in(page, org.owner_email)
        add_two_slots(page)
        page.goto("/billing")
        link = page.get_by_role("link", name="Payment needs verification")
        expect(link).to_be_visible()
        link.click()
        page.get_by_role("button", name="Fail authentication").click()
        expect(page.get_by_role("alert")).to_contain_text("not verified")
        expect(page.locator(".badge-void")).to_be_visible()
        page.goto("/billing/addons")
        expect(page.locator(".card-active")).to_have_count(0)
