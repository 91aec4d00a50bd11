"""Team, Agents, Plans and the billing overview in Chromium."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.web.conftest import sign_in
from tests.web.support import World


class TestTeam:
    def test_buy_more_seats_at_the_limit_opens_the_team_member_add_on(self, world: World, page: Page) -> None:
        org = world.org("pro")  # 3 seats: the owner + 2
        world.member(org, name="Max Member")
        sign_in(page, org.owner_email, path="/login?next=/team")
        expect(page.get_by_role("link", name="Buy more seats")).to_have_count(0)

        page.get_by_label("Email").fill("new.hire@example.test")
        page.get_by_role("button", name="Send invitation").click()
        expect(page.get_by_role("status")).to_contain_text("new.hire@example.test was invited.")
        expect(page.get_by_role("status")).to_contain_text("/invitations/")
        expect(page.get_by_role("cell", name="new.hire@example.test", exact=True)).to_be_visible()

        page.get_by_role("link", name="Buy more seats").click()
        dialog = page.get_by_role("dialog", name="Add Additional Team Member Slots")
        expect(dialog).to_be_visible()
        expect(dialog.locator('[data-field="price_per_slot"]')).to_have_text("$15.00")
        dialog.get_by_role("button", name="Add Slots").click()
        expect(page.get_by_role("status")).to_contain_text("Slots added successfully.")

        page.get_by_role("link", name="Team").click()
        expect(page.get_by_role("link", name="Buy more seats")).to_have_count(0)
        page.get_by_role("button", name="Revoke invitation for new.hire@example.test").click()
        expect(page.get_by_role("status")).to_contain_text("revoked")

        page.get_by_role("button", name="Remove Max Member").click()
        confirm = page.get_by_role("dialog", name="Are you sure?")
        expect(confirm).to_contain_text("Remove Max Member")
        confirm.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("status")).to_contain_text("The member was removed")
        expect(page.get_by_role("cell", name="Max Member", exact=True)).to_have_count(0)

    def test_upgrade_to_use_team_on_a_plan_without_teams(self, world: World, page: Page) -> None:
        org = world.org("starter")
        sign_in(page, org.owner_email, path="/login?next=/team")
        link = page.get_by_role("link", name="Upgrade to use team")
        expect(link).to_have_attribute("href", "/billing/plans")
        expect(page.get_by_role("button", name="Send invitation")).to_have_count(0)
        link.click()
        expect(page.get_by_role("heading", name="Plans", exact=True)).to_be_visible()


class TestAgents:
    def test_create_archive_unarchive_delete_and_the_limit(self, world: World, page: Page) -> None:
        org = world.org("starter", agents_count=1)  # Starter allows 2
        sign_in(page, org.owner_email, path="/login?next=/agents")
        expect(page.locator(".meter")).to_contain_text("1 of 2")
        page.get_by_label("Agent name").fill("Sales Concierge")
        page.get_by_role("button", name="Create agent").click()
        expect(page.get_by_role("status")).to_contain_text("Sales Concierge was created.")
        expect(page.locator(".meter")).to_contain_text("2 of 2")
        limit_link = page.get_by_role("link", name="Add Additional Chatbot Slots")
        expect(limit_link).to_have_attribute("href", "/billing/addons?add=agent_slots")

        page.get_by_label("Agent name").fill("One Too Many")
        page.get_by_role("button", name="Create agent").click()
        expect(page.locator(".flash-error")).to_contain_text("You're using 2 agents of 2.")

        page.get_by_role("button", name="Archive Sales Concierge").click()
        expect(page.get_by_role("status")).to_contain_text("Sales Concierge was archived.")
        expect(page.locator(".meter")).to_contain_text("1 of 2")
        page.get_by_role("button", name="Unarchive Sales Concierge").click()
        expect(page.get_by_role("status")).to_contain_text("Sales Concierge is active again.")
        page.get_by_role("button", name="Delete Sales Concierge").click()
        page.get_by_role("dialog", name="Are you sure?").get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("status")).to_contain_text("The agent was deleted.")
        expect(page.get_by_role("cell", name="Sales Concierge", exact=True)).to_have_count(0)

        page.goto("/agents")
        page.get_by_label("Agent name").fill("Docs Helper")
        page.get_by_role("button", name="Create agent").click()
        page.get_by_role("link", name="Add Additional Chatbot Slots").click()
        expect(page.get_by_role("dialog", name="Add Additional Chatbot Slots")).to_be_visible()


class TestPlans:
    def test_upgrade_now_then_downgrade_at_renewal_then_keep(self, world: World, page: Page) -> None:
        org = world.org("starter")
        world.clock_to("2026-11-26T12:00:00Z")
        sign_in(page, org.owner_email, path="/login?next=/billing/plans")
        current = page.locator(".plan-current")
        expect(current).to_contain_text("Starter")
        expect(current).to_contain_text("Current plan")
        enterprise = page.locator("article", has=page.get_by_role("heading", name="Enterprise"))
        expect(enterprise.get_by_role("link", name="Contact sales")).to_be_visible()

        page.get_by_role("button", name="Upgrade to Pro").click()
        expect(page.get_by_role("status")).to_contain_text("Your plan was upgraded.")
        # (15000 − 4000) × 19/30: the pro-rated difference, charged on one invoice
        expect(page.get_by_role("status")).to_contain_text("$69.67 was charged today")
        expect(page.locator(".plan-current")).to_contain_text("Pro")

        page.get_by_role("button", name="Downgrade to Starter").click()
        expect(page.get_by_role("status")).to_contain_text("Your plan will change at your next billing date.")
        expect(page.get_by_role("note")).to_contain_text("Your plan changes to Starter on Dec 15, 2026.")
        page.get_by_role("button", name="Keep Pro").click()
        expect(page.get_by_role("status")).to_contain_text("Your scheduled plan change was canceled.")

    def test_a_refused_downgrade_is_explained(self, world: World, page: Page) -> None:
        org = world.org("pro", agents_count=4)
        sign_in(page, org.owner_email, path="/login?next=/billing/plans")
        page.get_by_role("button", name="Downgrade to Starter").click()
        alert = page.locator(".flash-error")
        expect(alert).to_contain_text("Starter allows 2 agents and you have 4.")
        expect(alert.get_by_role("link", name="Go to Agents")).to_be_visible()


class TestBillingOverview:
    def test_plan_status_next_date_card_and_invoices(self, world: World, page: Page) -> None:
        org = world.org("pro")
        world.clock_to("2026-11-26T12:00:00Z")
        world.add_slots(org, "agent_slots", 2)
        sign_in(page, org.owner_email, path="/login?next=/billing")
        expect(page.get_by_role("heading", name="Billing overview")).to_be_visible()
        expect(page.locator(".summary")).to_contain_text("Pro")
        expect(page.locator(".summary")).to_contain_text("Active")
        expect(page.locator(".summary")).to_contain_text("Dec 15, 2026")
        expect(page.locator(".summary")).to_contain_text("19 days remaining")
        expect(page.locator(".summary")).to_contain_text("$164.00")
        expect(page.locator("#payment-method")).to_contain_text("Visa ending in 4242")
        rows = page.locator("tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.first).to_contain_text("$8.87")

        page.get_by_role("link", name="Update card").click()  # the card form is on the checkout page
        page.get_by_label("New card number").fill("4242 4242 4242 4241")  # fails the Luhn check
        page.get_by_role("button", name="Update card").click()
        expect(page.locator(".flash-error")).to_contain_text("That card number is not valid.")
        page.goto("/billing")

        page.get_by_role("link", name="#1", exact=True).click()  # not "Download PDF of invoice #1"
        expect(page.get_by_role("heading", name="Invoice #1")).to_be_visible()
        expect(page.get_by_role("cell", name="Pro plan, Nov 15 – Dec 15")).to_be_visible()
        expect(page.locator("tfoot")).to_contain_text("$150.00")
        expect(page.get_by_role("button", name="Print invoice")).to_be_visible()
