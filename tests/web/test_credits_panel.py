"""Billing → Credits in Chromium (SPEC §11): the panel's numbers after real spends, Top Up Now, and
Auto-Recharge — as the Owner, refused, and read-only for everyone else."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.sync_api import Locator, Page, expect
from sqlalchemy import update

from slotwise.models import CreditAccount, Organization
from tests.web.conftest import sign_in
from tests.web.support import SeededOrg, World

DECLINED_CARD = "4000000000000341"  # attaches, then declined at charge
DISABLED = ("Auto-recharge was disabled after multiple failed payment attempts. Please update your payment "
            "method and re-enable.")


def tile(page: Page, label: str) -> Locator:
    """One of the credits panel's numbers, by its heading."""
    return page.locator(".credit-stat").filter(has=page.get_by_role("heading", name=label, exact=True))


def value(page: Page, label: str) -> Locator:
    return tile(page, label).locator(".stat-value")


def set_account(world: World, org: SeededOrg, **values: object) -> None:
    world.run(lambda db, _: db.execute(update(CreditAccount).where(CreditAccount.org_id == org.id).values(**values)))


def remove_card(world: World, org: SeededOrg) -> None:
    """No card on file (creating an organization always stores one)."""
    world.run(lambda db, _: db.execute(update(Organization).where(Organization.id == org.id).values(
        card_token=None, card_brand=None, card_last4=None)))


def open_top_up(page: Page) -> Locator:
    page.get_by_role("button", name="Top Up Now").click()
    dialog = page.get_by_role("dialog", name="Top Up Now")
    expect(dialog).to_be_visible()
    return dialog


class TestPanel:
    def test_the_numbers_after_spends_and_a_top_up(self, world: World, page: Page) -> None:
        org = world.org("pro")  # 15,000 Message Credits, period Nov 15 → Dec 15
        world.spend(org, 1000)
        world.spend(org, 900)
        world.spend(org, 50, activity="document")  # 10 credits each
        world.spend(org, 52, model="premium")  # 5 credits each
        sign_in(page, org.owner_email, path="/login?next=/billing")

        panel = page.get_by_role("region", name="Credits", exact=True)
        expect(panel).to_be_visible()
        expect(value(page, "Credits used")).to_have_text("2,660")
        plan = tile(page, "Message Credits")
        expect(plan).to_contain_text("12,340 of 15,000 left")
        expect(plan).to_contain_text("Refills on Dec 15")
        expect(plan.get_by_role("progressbar")).to_have_attribute("value", "12340")
        expect(value(page, "Top-up Credits")).to_have_text("0")
        expect(tile(page, "Top-up Credits")).to_contain_text("Remaining from recharges")
        expect(value(page, "Total available")).to_have_text("12,340")

        world.top_up(org, 1)
        world.spend(org, 340)
        page.reload()
        expect(tile(page, "Message Credits")).to_contain_text("12,000 of 15,000 left")
        expect(value(page, "Top-up Credits")).to_have_text("1,000")
        expect(value(page, "Total available")).to_have_text("13,000")
        expect(value(page, "Credits used")).to_have_text("3,000")


class TestTopUpNow:
    def test_the_owner_buys_three_packs(self, world: World, page: Page) -> None:
        org = world.org("pro")
        sign_in(page, org.owner_email, path="/login?next=/billing")
        dialog = open_top_up(page)
        expect(dialog.get_by_label("Number of packs")).to_have_value("1")
        expect(dialog).to_contain_text("1,000 credits for $20.00")
        expect(dialog).to_contain_text("Visa ending in 4242")
        charged = dialog.locator('[data-field="charge_now"]')
        expect(charged).to_have_text("$20.00")
        dialog.get_by_role("button", name="One pack more").click()
        expect(charged).to_have_text("$40.00")
        dialog.get_by_label("Number of packs").fill("3")
        expect(charged).to_have_text("$60.00")
        expect(dialog.locator('[data-field="credits"]')).to_have_text("3,000 credits")
        dialog.get_by_role("button", name="Buy Credits").click()

        status = page.get_by_role("status")
        expect(status).to_contain_text("Credits added successfully.")
        expect(status).to_contain_text("3,000 credits were added to your Top-up Credits; $60.00 was charged")
        expect(value(page, "Top-up Credits")).to_have_text("3,000")
        expect(value(page, "Total available")).to_have_text("18,000")
        expect(page.get_by_role("cell", name="Top-up credits × 3,000")).to_be_visible()
        status.get_by_role("link", name="View invoice").click()
        expect(page.locator("tfoot")).to_contain_text("$60.00")

    def test_a_number_of_packs_out_of_range_cannot_be_bought(self, world: World, page: Page) -> None:
        org = world.org("pro")
        sign_in(page, org.owner_email, path="/login?next=/billing")
        dialog = open_top_up(page)
        dialog.get_by_label("Number of packs").fill("101")
        expect(dialog.get_by_role("alert")).to_contain_text("Enter a whole number from 1 to 100.")
        expect(dialog.get_by_role("button", name="Buy Credits")).to_be_disabled()
        dialog.get_by_label("Number of packs").fill("100")
        expect(dialog.locator('[data-field="charge_now"]')).to_have_text("$2,000.00")
        expect(dialog.get_by_role("button", name="Buy Credits")).to_be_enabled()
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_be_hidden()

    def test_a_declined_card_is_explained_and_changes_nothing(self, world: World, page: Page) -> None:
        org = world.org("pro")
        sign_in(page, org.owner_email, path="/login?next=/billing")
        page.get_by_role("link", name="Update card").click()  # the card form is on the checkout page
        page.get_by_label("New card number").fill(DECLINED_CARD)
        page.get_by_role("button", name="Update card").click()
        expect(page.get_by_role("status")).to_contain_text("ending in 0341")

        open_top_up(page).get_by_role("button", name="Buy Credits").click()
        alert = page.locator(".flash-error")
        expect(alert).to_contain_text("Your card was declined.")
        expect(alert).to_contain_text("Nothing was charged and nothing changed.")
        expect(alert.get_by_role("link", name="Update your card")).to_be_visible()
        expect(value(page, "Top-up Credits")).to_have_text("0")
        expect(value(page, "Total available")).to_have_text("15,000")
        expect(page.locator("tbody tr")).to_have_count(1)  # only the plan's first invoice

    def test_without_a_card_or_a_subscription_the_dialog_says_why(self, world: World, page: Page) -> None:
        org = world.org("pro")
        remove_card(world, org)
        sign_in(page, org.owner_email, path="/login?next=/billing")
        dialog = open_top_up(page)
        expect(dialog.get_by_role("alert")).to_contain_text("A payment method is required to buy credits.")
        expect(dialog.get_by_role("button", name="Buy Credits")).to_be_disabled()
        dialog.get_by_role("button", name="One pack more").click()
        expect(dialog.locator('[data-field="charge_now"]')).to_have_text("$40.00")
        expect(dialog.get_by_role("alert")).to_be_visible()  # still refused at any number of packs
        expect(dialog.get_by_role("button", name="Buy Credits")).to_be_disabled()
        dialog.get_by_role("button", name="Close").click()

        page.get_by_role("button", name="Sign out").click()
        free = world.org("free")
        sign_in(page, free.owner_email, path="/login?next=/billing")
        dialog = open_top_up(page)
        expect(dialog.get_by_role("alert")).to_contain_text("Credits can be bought with an active subscription.")
        expect(dialog.get_by_role("link", name="See plans")).to_be_visible()


class TestAutoRecharge:
    def test_the_owner_saves_the_settings_and_they_persist(self, world: World, page: Page) -> None:
        org = world.org("pro")
        sign_in(page, org.owner_email, path="/login?next=/billing")
        panel = page.get_by_role("region", name="Auto-Recharge")
        switch = panel.get_by_role("switch", name="Enable auto-recharge")
        expect(switch).not_to_be_checked()
        expect(panel).to_contain_text("0/1 recharges used this month")
        expect(panel).to_contain_text("Last recharged: Never")
        switch.check()
        panel.get_by_label("Threshold (credits)").fill("250")
        panel.get_by_label("Max recharges per month").fill("4")
        panel.get_by_role("button", name="Save").click()

        expect(page.get_by_role("status")).to_contain_text("Auto-recharge settings updated.")
        page.reload()
        panel = page.get_by_role("region", name="Auto-Recharge")
        expect(panel.get_by_role("switch", name="Enable auto-recharge")).to_be_checked()
        expect(panel.get_by_label("Threshold (credits)")).to_have_value("250")
        expect(panel.get_by_label("Max recharges per month")).to_have_value("4")
        expect(panel).to_contain_text("0/4 recharges used this month")
        expect(panel.locator(".badge")).to_have_text("On")

        panel.get_by_role("switch", name="Enable auto-recharge").uncheck()
        panel.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_contain_text("Auto-recharge settings updated.")
        expect(page.get_by_role("region", name="Auto-Recharge").locator(".badge")).to_have_text("Off")

    def test_a_max_out_of_range_is_refused_and_nothing_changes(self, world: World, page: Page) -> None:
        org = world.org("pro")
        sign_in(page, org.owner_email, path="/login?next=/billing")
        panel = page.get_by_role("region", name="Auto-Recharge")
        panel.get_by_label("Max recharges per month").evaluate("e => e.removeAttribute('max')")  # past the browser
        panel.get_by_role("switch", name="Enable auto-recharge").check()
        panel.get_by_label("Max recharges per month").fill("101")
        panel.get_by_role("button", name="Save").click()
        expect(page.locator(".flash-error")).to_contain_text(
            "Enter the max recharges per month as a whole number from 1 to 100.")
        expect(panel.get_by_role("switch", name="Enable auto-recharge")).not_to_be_checked()
        expect(panel.get_by_label("Max recharges per month")).to_have_value("1")

    def test_enabling_without_a_card_or_a_subscription_is_refused(self, world: World, page: Page) -> None:
        org = world.org("pro")
        remove_card(world, org)
        sign_in(page, org.owner_email, path="/login?next=/billing")
        panel = page.get_by_role("region", name="Auto-Recharge")
        panel.get_by_role("switch", name="Enable auto-recharge").check()
        panel.get_by_role("button", name="Save").click()
        alert = page.locator(".flash-error")
        expect(alert).to_contain_text("A payment method is required to enable auto-recharge.")
        expect(alert.get_by_role("link", name="Update your card")).to_be_visible()
        expect(panel.get_by_role("switch", name="Enable auto-recharge")).not_to_be_checked()

        page.get_by_role("button", name="Sign out").click()
        free = world.org("free")
        sign_in(page, free.owner_email, path="/login?next=/billing")
        panel = page.get_by_role("region", name="Auto-Recharge")
        panel.get_by_role("switch", name="Enable auto-recharge").check()
        panel.get_by_role("button", name="Save").click()
        alert = page.locator(".flash-error")
        expect(alert).to_contain_text("An active subscription is required to enable auto-recharge.")
        expect(alert.get_by_role("link", name="See plans")).to_be_visible()
        expect(panel.locator(".badge")).to_have_text("Off")

    def test_turned_off_after_failures_it_says_why_and_when_it_last_recharged(self, world: World,
                                                                              page: Page) -> None:
        org = world.org("pro")
        set_account(world, org, recharge_enabled=False, recharge_disabled_reason=DISABLED, recharges_in_period=2,
                    recharge_max_per_period=3, last_recharged_at=datetime(2026, 11, 20, 14, 0, tzinfo=UTC))
        sign_in(page, org.owner_email, path="/login?next=/billing")
        panel = page.get_by_role("region", name="Auto-Recharge")
        expect(panel.get_by_role("alert")).to_have_text(DISABLED)
        expect(panel).to_contain_text("2/3 recharges used this month")
        expect(panel).to_contain_text("Last recharged: Nov 20, 2026")
        panel.get_by_role("switch", name="Enable auto-recharge").check()
        panel.get_by_role("button", name="Save").click()  # re-enabling starts afresh
        expect(page.get_by_role("status")).to_contain_text("Auto-recharge settings updated.")
        expect(page.get_by_role("region", name="Auto-Recharge").get_by_role("alert")).to_have_count(0)


class TestReadOnly:
    def test_a_member_sees_the_numbers_and_read_only_controls(self, world: World, page: Page) -> None:
        org = world.org("pro")
        world.spend(org, 500)
        member = world.member(org)
        sign_in(page, member, path="/login?next=/billing")
        expect(tile(page, "Message Credits")).to_contain_text("14,500 of 15,000 left")
        top_up = page.get_by_role("button", name="Top Up Now")
        expect(top_up).to_be_disabled()
        expect(page.get_by_text("Only the organization owner can buy credits.")).to_be_visible()
        expect(page.get_by_role("dialog", name="Top Up Now")).to_have_count(0)
        panel = page.get_by_role("region", name="Auto-Recharge")
        expect(panel.get_by_role("switch", name="Enable auto-recharge")).to_be_disabled()
        expect(panel.get_by_label("Threshold (credits)")).to_be_disabled()
        expect(panel.get_by_label("Max recharges per month")).to_be_disabled()
        expect(panel.get_by_role("button", name="Save")).to_be_disabled()
        expect(panel.get_by_text("Only the organization owner can manage auto-recharge.")).to_be_visible()
        expect(panel).to_contain_text("Owner Only")

    def test_a_forged_post_from_a_member_is_refused_and_changes_nothing(self, world: World, page: Page) -> None:
        org = world.org("pro")
        member = world.member(org, role="admin")
        sign_in(page, member, path="/login?next=/billing")
        csrf = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
        page.request.post("/billing/credits/auto-recharge",
                          form={"csrf_token": csrf, "enabled": "on", "threshold": "5", "max_per_month": "9"},
                          max_redirects=0)
        page.reload()
        expect(page.locator(".flash-error")).to_contain_text("Only the organization owner can manage auto-recharge.")
        panel = page.get_by_role("region", name="Auto-Recharge")
        expect(panel.get_by_label("Threshold (credits)")).to_have_value("100")
        expect(panel.get_by_role("switch", name="Enable auto-recharge")).not_to_be_checked()

        page.request.post("/billing/credits/top-up", form={"csrf_token": csrf, "packs": "2"}, max_redirects=0)
        page.reload()
        expect(page.locator(".flash-error")).to_contain_text("Credit purchases are Owner Only.")
        expect(value(page, "Top-up Credits")).to_have_text("0")
