"""The billing portal ("Update Billing") in Chromium: billing details onto the invoice, the PDF
download, cancel at period end through its dialog, resume, the card updated through the gateway's
form and back; errors on the page; roles."""

from __future__ import annotations

import io
import re

from playwright.sync_api import Page, expect
from pypdf import PdfReader

from tests.web.conftest import sign_in
from tests.web.support import World


def open_portal(page: Page) -> None:
    page.goto("/billing")
    page.get_by_role("link", name="Update Billing").click()
    expect(page.get_by_role("heading", name="Update Billing", exact=True)).to_be_visible()


class TestPortal:
    def test_details_invoice_pdf_cancel_and_resume(self, world: World, page: Page) -> None:
        org = world.org("pro")  # Nov 15 → Dec 15
        sign_in(page, org.owner_email)
        open_portal(page)
        expect(page.get_by_test_id("renews-on")).to_contain_text("Renews on Dec 15, 2026")

        page.get_by_label("Billing email").fill("billing@acme.example")
        page.get_by_label("Company name").fill("Acme Robotics GmbH")
        page.get_by_label("Address").fill("Müllerstraße 12\n10115 Berlin")
        page.get_by_role("button", name="Save billing details").click()
        expect(page.get_by_role("status")).to_contain_text("Billing details saved.")
        expect(page.get_by_label("Company name")).to_have_value("Acme Robotics GmbH")

        page.get_by_role("link", name="#1", exact=True).click()
        billed_to = page.locator(".billed-to")
        for text in ("Acme Robotics", "Acme Robotics GmbH", "Müllerstraße 12", "10115 Berlin", "billing@acme.example"):
            expect(billed_to).to_contain_text(text)
        with page.expect_download() as download_info:
            page.get_by_role("link", name="Download PDF").click()
        download = download_info.value
        assert download.suggested_filename == "slotwise-receipt-1.pdf"
        content = open(download.path(), "rb").read()  # noqa: SIM115 (read whole, closed at once)
        text = "\n".join(p.extract_text() or "" for p in PdfReader(io.BytesIO(content)).pages)
        for expected in ("Receipt #1", "Acme Robotics GmbH", "Müllerstraße 12", "billing@acme.example",
                         "Pro plan", "30/30", "Total: $150.00"):
            assert expected in text, (expected, text)

        open_portal(page)
        page.get_by_role("button", name="Cancel subscription").click()
        dialog = page.get_by_role("dialog", name="Cancel subscription?")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("stays active until Dec 15, 2026")
        dialog.get_by_role("button", name="Keep subscription").click()
        expect(dialog).to_be_hidden()
        expect(page.get_by_test_id("renews-on")).to_be_visible()  # nothing changed

        page.get_by_role("button", name="Cancel subscription").click()
        dialog.get_by_role("button", name="Cancel subscription").click()
        expect(page.get_by_role("status")).to_contain_text("will be canceled at the end of the billing period")
        expect(page.get_by_test_id("cancels-on")).to_contain_text("Cancels on Dec 15, 2026")
        page.goto("/billing")
        expect(page.get_by_text("Cancels on Dec 15, 2026.")).to_be_visible()

        open_portal(page)
        page.get_by_role("button", name="Resume subscription").click()
        expect(page.get_by_role("status")).to_contain_text("Your subscription was resumed.")
        expect(page.get_by_test_id("renews-on")).to_contain_text("Renews on Dec 15, 2026")
        expect(page.get_by_role("button", name="Cancel subscription")).to_be_visible()

    def test_the_card_is_updated_through_the_card_form_and_back_to_the_portal(self, world: World,
                                                                              page: Page) -> None:
        org = world.org("pro")
        sign_in(page, org.owner_email)
        open_portal(page)
        card = page.get_by_test_id("portal-card")
        expect(card).to_contain_text("ending in 4242")

        page.locator("#payment-method").get_by_role("link", name="Update card").click()
        expect(page.get_by_role("heading", name="Update card", exact=True)).to_be_visible()
        page.get_by_role("link", name="Cancel").click()  # back where it started, nothing changed
        expect(page).to_have_url(re.compile(r"/billing/portal#payment-method$"))
        expect(card).to_contain_text("ending in 4242")

        page.locator("#payment-method").get_by_role("link", name="Update card").click()
        page.get_by_label("New card number").fill("5555 5555 5555 4444")
        page.get_by_role("button", name="Update card").click()
        expect(page).to_have_url(re.compile(r"/billing/portal#payment-method$"))
        expect(page.get_by_role("status")).to_contain_text("ending in 4444")
        expect(card).to_contain_text("Mastercard ending in 4444")

        page.locator("#payment-method").get_by_role("link", name="Update card").click()
        page.get_by_label("New card number").fill("4000 0000 0000 0002")  # refused when entered
        page.get_by_role("button", name="Update card").click()
        expect(page.locator(".flash-error")).to_contain_text("declined")
        open_portal(page)
        expect(card).to_contain_text("Mastercard ending in 4444")  # unchanged

    def test_invalid_details_are_explained_with_their_code_and_kept_in_the_form(
            self, world: World, page: Page) -> None:
        org = world.org("pro")
        sign_in(page, org.owner_email)
        open_portal(page)
        page.get_by_label("Billing email").fill("not an email")
        page.get_by_label("Company name").fill("Acme")
        page.get_by_role("button", name="Save billing details").click()
        alert = page.locator("#details-error")
        expect(alert).to_contain_text("Enter a billing email like billing@example.com.")
        expect(alert).to_contain_text("invalid_request")
        expect(page.get_by_label("Billing email")).to_have_value("not an email")
        expect(page.get_by_label("Billing email")).to_have_attribute("aria-invalid", "true")
        expect(page.get_by_label("Company name")).to_have_value("Acme")

    def test_the_invoice_list_links_each_pdf(self, world: World, page: Page) -> None:
        org = world.org("pro")
        world.clock_to("2026-11-26T12:00:00Z")
        world.add_slots(org, "agent_slots", 2)
        sign_in(page, org.owner_email)
        page.goto("/billing")
        links = page.get_by_role("link", name=re.compile(r"Download PDF of invoice #\d"))
        expect(links).to_have_count(2)
        response = page.request.get(links.first.get_attribute("href") or "")
        assert response.headers["content-type"] == "application/pdf"

    def test_an_admin_sees_it_read_only_and_a_member_sees_no_details(self, world: World, page: Page) -> None:
        org = world.org("pro")
        admin = world.member(org, role="admin", name="Ada Admin")
        sign_in(page, admin)
        open_portal(page)
        expect(page.get_by_text("Billing details are Owner Only.")).to_be_visible()
        expect(page.get_by_text("Subscription changes are Owner Only.")).to_be_visible()
        expect(page.get_by_role("button", name="Cancel subscription")).to_have_count(0)
        expect(page.get_by_label("Billing email")).to_have_count(0)
        expect(page.get_by_role("link", name="Download PDF of invoice #1")).to_be_visible()

    def test_a_member_gets_no_pdf(self, world: World, page: Page) -> None:
        org = world.org("pro")
        member = world.member(org)
        sign_in(page, member)
        open_portal(page)
        expect(page.get_by_text("Billing details are visible to the organization owner and admins.")).to_be_visible()
        assert page.request.get("/billing/invoices/inv_nothing/pdf").status == 404
