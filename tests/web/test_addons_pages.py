"""Billing → Add-ons & Extras in Chromium: buying and removing slots through the dialogs."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from tests.web.conftest import sign_in
from tests.web.support import World

DECLINED_CARD = "4000000000000341"  # attaches, then declined at charge


def field(dialog: Locator, name: str) -> Locator:
    """A number in a dialog, by the preview field it shows."""
    return dialog.locator(f'[data-field="{name}"]').first


class TestAddSlots:
    def test_two_agent_slots_on_nov_26_charge_887_today(self, world: World, page: Page) -> None:
        org = world.org("pro")  # period Nov 15 → Dec 15
        world.clock_to("2026-11-26T12:00:00Z")
        sign_in(page, org.owner_email)
        expect(page.get_by_role("heading", name="Add-ons & Extras")).to_be_visible()
        expect(page.get_by_text("Flexible upgrades").first).to_be_visible()

        page.get_by_role("button", name="Add Additional Chatbot Slots").click()
        dialog = page.get_by_role("dialog", name="Add Additional Chatbot Slots")
        expect(dialog).to_be_visible()
        expect(field(dialog, "price_per_slot")).to_have_text("$7.00")
        expect(field(dialog, "charge_now")).to_have_text("$4.43")  # 1 slot × 700 × 19/30
        dialog.get_by_role("button", name="One slot more").click()
        expect(dialog.get_by_label("Quantity")).to_have_value("2")
        expect(field(dialog, "charge_now")).to_have_text("$8.87")
        expect(field(dialog, "new_monthly_total")).to_have_text("$164.00")
        expect(field(dialog, "proration")).to_contain_text("19 of 30 days")

        dialog.get_by_label("Quantity").fill("5")
        expect(field(dialog, "charge_now")).to_have_text("$22.17")  # 3500 × 19/30 = 2216.67
        dialog.get_by_label("Quantity").fill("2")
        expect(field(dialog, "charge_now")).to_have_text("$8.87")
        dialog.get_by_role("button", name="Add Slots").click()

        expect(page.get_by_role("status")).to_contain_text("Slots added successfully.")
        expect(page.get_by_role("status")).to_contain_text("$8.87 was charged today")
        active = page.locator(".card-active")
        expect(active).to_contain_text("Active Add-on")
        expect(active).to_contain_text("+2 slots")
        expect(active).to_contain_text("Monthly Cost")
        expect(active).to_contain_text("$14.00")
        expect(active.get_by_role("button", name="Add More Slots")).to_be_visible()
        expect(active.get_by_role("button", name="Remove Additional Chatbot Slots")).to_be_visible()
        expect(active.get_by_role("button", name="Remove Add-on")).to_be_visible()

        page.get_by_role("link", name="View invoice").click()
        expect(page.get_by_role("heading", name=re.compile(r"Invoice #\d+"))).to_be_visible()
        line = "Additional Chatbot Slots × 2, Nov 26 – Dec 15, 19/30 days"
        expect(page.get_by_role("cell", name=line)).to_be_visible()
        expect(page.get_by_role("cell", name="19/30", exact=True)).to_be_visible()
        expect(page.locator("tfoot")).to_contain_text("$8.87")

    def test_a_quantity_out_of_range_is_explained_and_cannot_be_confirmed(self, world: World, page: Page) -> None:
        org = world.org("pro")
        sign_in(page, org.owner_email)
        page.get_by_role("button", name="Add Additional Chatbot Slots").click()
        dialog = page.get_by_role("dialog", name="Add Additional Chatbot Slots")
        dialog.get_by_label("Quantity").fill("101")
        expect(dialog.get_by_role("alert")).to_contain_text("Enter a whole number from 1 to 100.")
        expect(dialog.get_by_role("button", name="Add Slots")).to_be_disabled()
        dialog.get_by_label("Quantity").fill("3")
        expect(dialog.get_by_role("button", name="Add Slots")).to_be_enabled()
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_be_hidden()

    def test_a_declined_card_is_explained_and_changes_nothing(self, world: World, page: Page) -> None:
        org = world.org("pro")
        sign_in(page, org.owner_email)
        page.goto("/billing")
        page.get_by_role("link", name="Update card").click()  # the card form is on the checkout page
        page.get_by_label("New card number").fill(DECLINED_CARD)
        page.get_by_role("button", name="Update card").click()
        expect(page.get_by_role("status")).to_contain_text("ending in 0341")

        page.goto("/billing/addons")
        page.get_by_role("button", name="Add Additional Chatbot Slots").click()
        page.get_by_role("dialog", name="Add Additional Chatbot Slots").get_by_role("button", name="Add Slots").click()
        alert = page.locator(".flash-error")
        expect(alert).to_contain_text("Your card was declined.")
        expect(alert).to_contain_text("Nothing was charged and nothing changed.")
        expect(alert.get_by_role("link", name="Update your card")).to_be_visible()
        expect(page.locator(".card-active")).to_have_count(0)
        page.goto("/billing")
        expect(page.locator("tbody tr")).to_have_count(1)  # only the plan's first invoice


class TestRemoveSlots:
    def test_a_removal_below_usage_is_refused_with_the_count_and_a_smaller_one_goes_through(
        self, world: World, page: Page
    ) -> None:
        org = world.org("pro", agents_count=5)
        world.add_slots(org, "agent_slots", 2)
        world.agents(org, 1, prefix="Extra")  # 6 agents in use, capacity 7
        sign_in(page, org.owner_email)

        page.get_by_role("button", name="Remove Additional Chatbot Slots").click()
        dialog = page.get_by_role("dialog", name="Remove Additional Chatbot Slots")
        expect(field(dialog, "current_slots")).to_have_text("+2 slots")
        expect(field(dialog, "new_capacity")).to_have_text("6 agents")
        expect(field(dialog, "new_monthly_total")).to_have_text("$157.00")
        expect(field(dialog, "effective_at")).to_have_text("Dec 15, 2026")
        expect(dialog).to_contain_text("No refund is issued for the current billing period")

        dialog.get_by_role("button", name="One slot more").click()
        refusal = dialog.get_by_role("alert")
        expect(refusal).to_contain_text("Archive or delete 1 agent first")
        expect(field(dialog, "must_free")).to_have_text("Agents to archive or delete first: 1")
        expect(refusal.get_by_role("link", name="Go to Agents")).to_have_attribute("href", "/agents")
        expect(dialog.get_by_role("button", name="Remove Slots")).to_be_disabled()

        dialog.get_by_role("button", name="One slot fewer").click()
        expect(refusal).to_be_hidden()
        dialog.get_by_role("button", name="Remove Slots").click()
        expect(page.get_by_role("status")).to_contain_text("Slots removed successfully.")
        expect(page.get_by_role("status")).to_contain_text("Dec 15, 2026")
        scheduled = page.locator(".scheduled")
        expect(scheduled).to_contain_text("1 slot scheduled for removal")
        expect(scheduled).to_contain_text("Dec 15, 2026")

        scheduled.get_by_role("button", name="Keep slots").click()
        expect(page.get_by_role("status")).to_contain_text("Your slots will be kept.")
        expect(page.locator(".scheduled")).to_have_count(0)

    def test_remove_add_on_is_refused_while_the_slots_are_used(self, world: World, page: Page) -> None:
        org = world.org("pro", agents_count=5)
        world.add_slots(org, "agent_slots", 3)
        world.agents(org, 3, prefix="Extra")
        sign_in(page, org.owner_email)
        page.get_by_role("button", name="Remove Add-on").click()
        dialog = page.get_by_role("dialog", name=re.compile("Remove Add-on"))
        expect(dialog.locator('[data-field="must_free"]')).to_have_text("Agents to archive or delete first: 3")
        expect(dialog.get_by_role("button", name="Remove Add-on")).to_be_disabled()

    def test_creating_an_agent_into_a_scheduled_removal_says_the_removal_shrank(
        self, world: World, page: Page
    ) -> None:
        org = world.org("pro", agents_count=5)
        world.add_slots(org, "agent_slots", 2)
        world.remove_slots(org, "agent_slots", 2)
        sign_in(page, org.owner_email, path="/login?next=/agents")
        page.get_by_label("Agent name").fill("Returns Bot")
        page.get_by_role("button", name="Create agent").click()
        expect(page.get_by_role("status")).to_contain_text("Returns Bot was created.")
        expect(page.get_by_role("status")).to_contain_text(
            "scheduled removal of Additional Chatbot Slots was reduced by 1")


class TestOwnerOnly:
    def test_a_member_sees_billing_read_only(self, world: World, page: Page) -> None:
        org = world.org("pro")
        world.add_slots(org, "agent_slots", 1)
        member = world.member(org)
        sign_in(page, member)
        expect(page.get_by_text("Owner Only").first).to_be_visible()
        expect(page.get_by_text("Ask your organization owner to make the change.")).to_be_visible()
        expect(page.get_by_role("button", name="Add Additional Chatbot Slots")).to_have_count(0)
        expect(page.get_by_role("button", name="Add More Slots")).to_have_count(0)
        expect(page.get_by_role("button", name="Remove Add-on")).to_have_count(0)
        expect(page.locator(".card-active")).to_contain_text("+1 slot")
        expect(page.locator(".badge-role")).to_have_text("Member")

        page.get_by_role("link", name="Plans").click()
        expect(page.get_by_text("Ask your organization owner to make the change.")).to_be_visible()
        expect(page.get_by_role("button", name=re.compile("Upgrade|Downgrade"))).to_have_count(0)
