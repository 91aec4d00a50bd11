"""Paid agents in Chromium (SPEC §13): the public paywall (pay → receipt with the visitor token; a
declined card creates nothing; a repeated submit charges once), the Agents page's Visibility section
(Pay for Access through its confirmation dialog; refusals with their code; read-only for a member),
and Billing → Subscriptions (the pass, the revenue, a refund through its dialog)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.models import Contact, Pass
from slotwise.services import paid_access as pa
from slotwise.services import payments, subscriptions
from slotwise.web import paid
from tests.localstripe_server import LocalStripe, localstripe
from tests.web.conftest import sign_in
from tests.web.support import SeededOrg, World
from tests.web.test_checkout_pages import stripe_world

__all__ = ["localstripe", "stripe_world"]  # fixtures shared with the checkout's Stripe test

HEADLINE = "This Chatbot is Monetized by the Creator"


def agent_id(world: World, org: SeededOrg, name: str) -> str:
    def find(db: Session, at: datetime) -> str:
        return next(a.id for a in repo.agents_of_org(db, org.id) if a.name == name)

    return world.run(find)


def paid_agent(world: World, org: SeededOrg, name: str = "Support Assistant", price: int = 999,
               days: int = 30, credits: int = 500) -> str:
    world.named_agents(org, [name])
    found = agent_id(world, org, name)
    world.run(lambda db, at: pa.configure_access(db, actor=org.owner, agent_id=found, mode="paid",
                                                 paid=pa.PaidConfig(price, "usd", days, credits), at=at))
    return found


def sell(world: World, agent: str, email: str, key: str) -> pa.Purchase:
    return world.run(lambda db, at: pa.buy_pass(db, env=world.state.env, agent_id=agent, email=email,
                                                payment_method="4242 4242 4242 4242", checkout_key=key, at=at))


def counts(world: World) -> tuple[int, int]:
    def count(db: Session, at: datetime) -> tuple[int, int]:
        return (db.scalar(select(func.count()).select_from(Pass)) or 0,
                db.scalar(select(func.count()).select_from(Contact)) or 0)

    return world.run(count)


@pytest.fixture
def visitor(browser: Browser, world: World) -> Any:
    """A browser with no slotwise account, at a phone's width."""
    context: BrowserContext = browser.new_context(base_url=world.url, viewport={"width": 390, "height": 844})
    yield context.new_page()
    context.close()


class TestPaywall:
    def test_pay_gives_a_receipt_with_the_visitor_token(self, world: World, visitor: Page) -> None:
        org = world.org("pro", name="Acme Robotics")
        agent = paid_agent(world, org)
        visitor.goto(f"/pay/{agent}")
        expect(visitor.get_by_role("heading", name=HEADLINE)).to_be_visible()
        expect(visitor.locator(".paywall-agent")).to_have_text(re.compile(r"Support Assistant\s+by Acme Robotics"))
        expect(visitor.get_by_test_id("pass-price")).to_have_text("$9.99")
        expect(visitor.locator(".paywall-gives")).to_contain_text("30 days of access")
        expect(visitor.locator(".paywall-gives")).to_contain_text("500 messages")
        expect(visitor.get_by_text("4000 0000 0000 0341")).to_be_visible()

        visitor.get_by_label("Email").fill("vera@visitors.example")
        visitor.get_by_label("Card number").fill("4242 4242 4242 4242")
        visitor.get_by_role("button", name="Pay $9.99").click()
        expect(visitor.get_by_role("heading", name="Thank you — your pass is ready")).to_be_visible()
        expect(visitor.get_by_test_id("amount-paid")).to_have_text("$9.99")
        expect(visitor.get_by_test_id("expires")).to_contain_text("Dec 15, 2026")
        expect(visitor.get_by_text("Keep this token")).to_be_visible()
        token = visitor.get_by_role("textbox", name="Visitor token").input_value()
        assert token.startswith(pa.TOKEN_PREFIX)

        access = world.run(lambda db, at: pa.check_access(db, env=world.state.env, agent_id=agent,
                                                          visitor=pa.Visitor(token=token), at=at))
        assert access.allowed and access.pass_ is not None and access.pass_.credits_left == 500
        assert counts(world) == (1, 1)

    def test_a_declined_card_says_nothing_was_charged_and_creates_nothing(self, world: World,
                                                                           visitor: Page) -> None:
        org = world.org("pro")
        agent = paid_agent(world, org)
        visitor.goto(f"/pay/{agent}")
        visitor.get_by_label("Email").fill("dan@visitors.example")
        visitor.get_by_label("Card number").fill("4000 0000 0000 0341")
        visitor.get_by_role("button", name="Pay $9.99").click()
        alert = visitor.get_by_role("alert")
        expect(alert).to_contain_text("declined")
        expect(alert).to_contain_text("Nothing was charged.")
        expect(visitor.get_by_label("Email")).to_have_value("dan@visitors.example")
        expect(visitor.get_by_role("heading", name=HEADLINE)).to_be_visible()

        visitor.get_by_label("Card number").fill("4000 0000 0000 0002")  # refused when entered
        visitor.get_by_role("button", name="Pay $9.99").click()
        expect(visitor.get_by_role("alert")).to_contain_text("Nothing was charged.")
        assert counts(world) == (0, 0)

        visitor.get_by_label("Card number").fill("4242 4242 4242 4242")  # then a good card pays
        visitor.get_by_role("button", name="Pay $9.99").click()
        expect(visitor.get_by_role("heading", name="Thank you — your pass is ready")).to_be_visible()
        assert counts(world) == (1, 1)

    def test_a_repeated_submit_shows_the_pass_without_charging_again(self, world: World, visitor: Page) -> None:
        org = world.org("pro")
        agent = paid_agent(world, org)
        visitor.goto(f"/pay/{agent}")
        form = {name: visitor.locator(f'input[name="{name}"]').input_value() for name in ("csrf_token", "checkout")}
        visitor.get_by_label("Email").fill("rita@visitors.example")
        visitor.get_by_label("Card number").fill("4242 4242 4242 4242")
        visitor.get_by_role("button", name="Pay $9.99").click()
        expect(visitor.get_by_role("heading", name="Thank you — your pass is ready")).to_be_visible()

        again = visitor.request.post(f"/pay/{agent}", form={**form, "email": "rita@visitors.example",
                                                            "card_number": "4242 4242 4242 4242"})
        assert again.status == 200
        body = again.text()
        assert "You already paid for this pass" in body and "nothing more was charged" in body
        assert "swv_" not in body  # the token is shown once
        visitor.set_content(body)
        assert counts(world) == (1, 1)

    def test_only_an_agent_for_sale_has_a_paywall(self, world: World, visitor: Page) -> None:
        org = world.org("pro", agents_count=1)
        free = agent_id(world, org, "Agent 1")
        for path in (f"/pay/{free}", "/pay/agt_nothing_here"):
            response = visitor.goto(path)
            assert response is not None and response.status == 404
            expect(visitor.get_by_role("heading", name="This chatbot is not for sale")).to_be_visible()

    def test_a_form_without_its_security_cookie_charges_nothing(self, world: World, visitor: Page) -> None:
        org = world.org("pro")
        agent = paid_agent(world, org)
        refused = visitor.request.post(f"/pay/{agent}", form={
            "csrf_token": "forged", "checkout": "x1", "email": "eve@visitors.example",
            "card_number": "4242 4242 4242 4242"})
        assert refused.status == 403 and "This form expired, so nothing was charged" in refused.text()
        assert counts(world) == (0, 0)


def visibility_card(page: Page, name: str) -> Any:
    return page.get_by_role("article", name=name)


class TestPaywallBankVerification:
    """A card the visitor's bank must verify (sandbox 4000 0025 0000 3155): the verify page, then the
    pass — or, refused, nothing."""

    def start(self, world: World, visitor: Page) -> str:
        org = world.org("pro", name="Acme Robotics")
        agent = paid_agent(world, org)
        visitor.goto(f"/pay/{agent}")
        visitor.get_by_label("Email").fill("vera@visitors.example")
        visitor.get_by_label("Card number").fill("4000 0025 0000 3155")
        visitor.get_by_role("button", name="Pay $9.99").click()
        expect(visitor.get_by_role("heading", name="Confirm your payment with your bank")).to_be_visible()
        expect(visitor).to_have_url(re.compile(rf"/pay/{agent}/verify\?checkout="))
        expect(visitor.get_by_test_id("pass-price")).to_have_text("$9.99")
        assert counts(world) == (0, 0)  # nothing until the bank says yes
        return agent

    def test_completed_it_gives_the_pass_and_its_token(self, world: World, visitor: Page) -> None:
        self.start(world, visitor)
        visitor.get_by_role("button", name="Complete authentication").click()
        expect(visitor.get_by_role("heading", name="Thank you — your pass is ready")).to_be_visible()
        expect(visitor.get_by_test_id("amount-paid")).to_have_text("$9.99")
        assert counts(world) == (1, 1)
        visitor.go_back()  # the verify page again: the pass was made, nothing is waiting
        visitor.reload()
        expect(visitor.get_by_role("heading", name="Nothing to verify")).to_be_visible()

    def test_refused_it_returns_to_the_paywall_with_nothing_made(self, world: World, visitor: Page) -> None:
        self.start(world, visitor)
        visitor.get_by_role("button", name="Fail authentication").click()
        expect(visitor.get_by_role("alert")).to_contain_text("not verified with your bank")
        expect(visitor.get_by_role("alert")).to_contain_text("Nothing was charged")
        expect(visitor.get_by_role("heading", name=HEADLINE)).to_be_visible()
        assert counts(world) == (0, 0)


class TestVisibility:
    def test_owner_turns_on_pay_for_access_through_the_dialog(self, world: World, page: Page) -> None:
        org = world.org("pro")
        world.named_agents(org, ["Support Assistant", "Sales Concierge"])
        sign_in(page, org.owner_email, path="/login?next=/agents")
        card = visibility_card(page, "Support Assistant")
        expect(card.get_by_test_id("mode")).to_have_text("Free")
        expect(card.get_by_role("radio", name=re.compile("^Free"))).to_be_checked()
        expect(card.get_by_text("Anyone can chat with this agent.")).to_be_visible()
        expect(card.get_by_label("Price")).to_be_hidden()  # the configuration belongs to Pay for Access

        card.get_by_role("radio", name=re.compile("^Pay for Access")).check()
        card.get_by_label("Price").fill("12.5")
        card.get_by_label("Currency").select_option("usd")
        card.get_by_label("Access days").fill("14")
        card.get_by_label("Message credits").fill("200")
        card.get_by_role("button", name="Save visibility").click()
        dialog = page.get_by_role("dialog", name="Turn on Pay for Access?")
        expect(dialog).to_contain_text("$12.50")
        expect(dialog).to_contain_text("14 days · 200 messages")
        expect(dialog).to_contain_text("needs an active subscription")
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_be_hidden()
        expect(card.get_by_test_id("mode")).to_have_text("Free")  # nothing saved

        card.get_by_role("button", name="Save visibility").click()
        dialog.get_by_role("button", name="Turn on Pay for Access").click()
        expect(page.get_by_role("status")).to_contain_text("Support Assistant is now Pay for Access.")
        expect(page.get_by_role("status")).to_contain_text("Visitors pay $12.50 for 14 days and 200 messages.")
        card = visibility_card(page, "Support Assistant")
        expect(card.get_by_test_id("mode")).to_have_text("Pay for Access")
        expect(card.get_by_label("Price")).to_have_value("12.50")
        link = card.get_by_test_id("paywall-link")
        expect(link).to_contain_text("/pay/agt_")
        expect(visibility_card(page, "Sales Concierge").get_by_test_id("mode")).to_have_text("Free")

        support = agent_id(world, org, "Support Assistant")

        def saved(db: Session, at: datetime) -> tuple[str, int | None]:
            found = repo.agent_in_org(db, org.id, support)
            assert found is not None
            return found.access_mode, found.paid_price

        assert world.run(saved) == ("paid", 1250)
        link.click()
        expect(page.get_by_role("heading", name=HEADLINE)).to_be_visible()
        expect(page.get_by_test_id("pass-price")).to_have_text("$12.50")

        page.goto("/agents")  # back to Restricted: no dialog
        card = visibility_card(page, "Support Assistant")
        card.get_by_role("radio", name=re.compile("^Restricted")).check()
        card.get_by_role("button", name="Save visibility").click()
        expect(page.get_by_role("status")).to_contain_text("Support Assistant is now Restricted.")

    def test_an_invalid_price_is_refused_with_its_code_and_the_form_kept(self, world: World, page: Page) -> None:
        org = world.org("pro")
        world.named_agents(org, ["Support Assistant"])
        sign_in(page, org.owner_email, path="/login?next=/agents")
        card = visibility_card(page, "Support Assistant")
        card.get_by_role("radio", name=re.compile("^Pay for Access")).check()
        card.get_by_label("Price").fill("12.345")
        card.get_by_label("Access days").fill("30")
        card.get_by_label("Message credits").fill("500")
        card.get_by_role("button", name="Save visibility").click()
        page.get_by_role("dialog", name="Turn on Pay for Access?").get_by_role(
            "button", name="Turn on Pay for Access").click()
        card = visibility_card(page, "Support Assistant")
        alert = card.get_by_role("alert")
        expect(alert).to_contain_text("Enter the price in dollars and cents")
        expect(alert).to_contain_text("invalid_request")
        expect(card.get_by_label("Price")).to_have_value("12.345")
        expect(card.get_by_label("Price")).to_have_attribute("aria-invalid", "true")
        expect(card.get_by_role("radio", name=re.compile("^Pay for Access"))).to_be_checked()
        expect(card.get_by_test_id("mode")).to_have_text("Free")

        card.get_by_label("Price").fill("0")  # the service's own bound, same code
        card.get_by_label("Access days").fill("4000")
        card.get_by_role("button", name="Save visibility").click()
        page.get_by_role("dialog", name="Turn on Pay for Access?").get_by_role(
            "button", name="Turn on Pay for Access").click()
        expect(visibility_card(page, "Support Assistant").get_by_role("alert")).to_contain_text("invalid_request")

    def test_without_a_subscription_pay_for_access_is_refused(self, world: World, page: Page) -> None:
        org = world.org("free")
        world.named_agents(org, ["Helper"])
        sign_in(page, org.owner_email, path="/login?next=/agents")
        card = visibility_card(page, "Helper")
        card.get_by_role("radio", name=re.compile("^Pay for Access")).check()
        expect(card.locator(".notice-warn")).to_contain_text("Pay for Access needs an active subscription.")
        card.get_by_label("Price").fill("5")
        card.get_by_role("button", name="Save visibility").click()
        page.get_by_role("dialog", name="Turn on Pay for Access?").get_by_role(
            "button", name="Turn on Pay for Access").click()
        alert = visibility_card(page, "Helper").get_by_role("alert")
        expect(alert).to_contain_text("subscription_required")
        expect(alert.get_by_role("link", name="See plans")).to_be_visible()
        expect(visibility_card(page, "Helper").get_by_label("Price")).to_have_value("5")

    def test_a_member_sees_visibility_read_only(self, world: World, page: Page) -> None:
        org = world.org("pro")
        paid_agent(world, org)
        email = world.member(org, role="member")
        sign_in(page, email, path="/login?next=/agents")
        section = page.get_by_role("region", name="Visibility")
        expect(section.get_by_text("Owner or Admin", exact=True)).to_be_visible()
        card = visibility_card(page, "Support Assistant")
        expect(card.get_by_test_id("mode")).to_have_text("Pay for Access")
        expect(card.get_by_role("radio", name=re.compile("^Pay for Access"))).to_be_disabled()
        expect(card.get_by_label("Price")).to_be_disabled()
        expect(card.get_by_role("button", name="Save visibility")).to_have_count(0)
        expect(page.get_by_role("link", name=re.compile("^Subscriptions"))).to_have_count(0)


class TestSubscriptions:
    def test_a_pass_shown_active_then_refunded_through_the_dialog(self, world: World, page: Page) -> None:
        org = world.org("pro")
        agent = paid_agent(world, org)
        sell(world, agent, "vera@visitors.example", "k1")
        sign_in(page, org.owner_email, path="/login?next=/billing")
        page.get_by_role("link", name=re.compile("^Subscriptions")).click()
        expect(page.get_by_role("heading", name="Subscriptions", exact=True)).to_be_visible()
        expect(page.get_by_test_id("revenue-gross")).to_have_text("$9.99")
        expect(page.get_by_test_id("revenue-fee")).to_have_text("$0.50")
        expect(page.get_by_test_id("revenue-net")).to_have_text("$9.49")
        expect(page.get_by_test_id("active-subscribers")).to_have_text("1")
        row = page.locator("tbody tr").filter(has_text="vera@visitors.example")
        expect(row).to_contain_text("Support Assistant")
        expect(row).to_contain_text("Active")
        expect(row).to_contain_text("Dec 15, 2026")
        expect(row).to_contain_text("500 of 500")

        row.get_by_role("button", name="Refund").click()
        dialog = page.get_by_role("dialog", name="Refund this pass?")
        expect(dialog).to_contain_text("$9.99 goes back to vera@visitors.example")
        form = {"csrf_token": dialog.locator('input[name="csrf_token"]').input_value()}
        action = dialog.locator("form").get_attribute("action")
        dialog.get_by_role("button", name="Refund $9.99").click()
        expect(page.get_by_role("status")).to_contain_text(
            "Pass refunded: $9.99 given back to vera@visitors.example.")
        row = page.locator("tbody tr").filter(has_text="vera@visitors.example")
        expect(row).to_contain_text("Refunded")
        expect(row.get_by_role("button", name="Refund")).to_have_count(0)
        expect(page.get_by_test_id("revenue-gross")).to_have_text("$0.00")
        expect(page.get_by_test_id("active-subscribers")).to_have_text("0")

        assert action is not None
        again = page.request.post(action, form=form)  # a second submit changes nothing
        assert again.ok and "already refunded, so nothing more was given back" in again.text()

    def test_filter_per_agent_and_pages(self, world: World, page: Page, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(paid, "PAGE_SIZE", 2)
        org = world.org("pro")
        first = paid_agent(world, org, "Support Assistant")
        second = paid_agent(world, org, "Sales Concierge", price=2500)
        for n in range(3):
            sell(world, first, f"a{n}@visitors.example", f"a{n}")
        sell(world, second, "b@visitors.example", "b")
        sign_in(page, org.owner_email, path="/login?next=/billing/subscriptions")
        expect(page.locator("tbody tr")).to_have_count(2)
        page.get_by_role("link", name="Older passes").click()
        expect(page.locator("tbody tr")).to_have_count(2)
        expect(page.get_by_role("link", name="Older passes")).to_have_count(0)
        page.get_by_label("Agent").select_option(label="Sales Concierge")
        page.get_by_role("button", name="Show passes").click()
        expect(page).to_have_url(re.compile(rf"agent={second}"))
        expect(page.locator("tbody tr")).to_have_count(1)
        expect(page.get_by_test_id("revenue-gross")).to_have_text("$25.00")

    def test_admin_reads_without_refunds_and_a_member_is_refused(self, world: World, page: Page) -> None:
        org = world.org("pro")
        sell(world, paid_agent(world, org), "vera@visitors.example", "k1")
        admin = world.member(org, role="admin")
        sign_in(page, admin, path="/login?next=/billing/subscriptions")
        expect(page.locator("tbody tr")).to_have_count(1)
        expect(page.get_by_role("button", name="Refund")).to_have_count(0)
        expect(page.get_by_text("Refunds are Owner Only.")).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        member = world.member(org, role="member")
        sign_in(page, member, path="/login?next=/billing/subscriptions")
        expect(page.get_by_role("heading", name="Owner or Admin only")).to_be_visible()
        response = page.request.get("/billing/subscriptions")
        assert response.status == 403 and "vera@visitors.example" not in response.text()


class TestPaywallWithStripe:
    """The paywall with ``SLOTWISE_GATEWAY=stripe`` against localstripe: the card is typed into
    Stripe's Elements field, the browser makes the payment method (``createPaymentMethod``) and only its
    ``pm_…`` id reaches slotwise; the visitor's own Stripe customer is charged once."""

    def pay(self, page: Page, number: str) -> None:
        field = page.get_by_role("group", name="Card details")
        field.get_by_placeholder("number").fill(number)
        field.get_by_placeholder("exp_month").fill("12")
        field.get_by_placeholder("exp_year").fill("34")
        field.get_by_placeholder("cvc").fill("123")
        field.get_by_placeholder("postal_code").fill("10115")
        page.get_by_role("button", name="Pay $9.99").click()

    def test_paid_through_elements_then_a_decline_makes_nothing(self, stripe_world: World, browser: Browser,
                                                               localstripe: LocalStripe) -> None:
        assert stripe_world.state.env.gateway.name == "stripe"
        org = stripe_world.org("free", name="Acme Robotics")
        card = localstripe.card_payment_method("4242424242424242")
        stripe_world.run(lambda db, at: payments.update_payment_method(
            db, env=stripe_world.state.env, actor=org.owner, payment_method=card, at=at))
        stripe_world.run(lambda db, at: subscriptions.change_plan(
            db, env=stripe_world.state.env, actor=org.owner, plan_code="pro", at=at))
        agent = paid_agent(stripe_world, org)
        context = browser.new_context(base_url=stripe_world.url, viewport={"width": 390, "height": 844})
        page = context.new_page()
        posted: list[str] = []
        page.on("request", lambda r: posted.append(r.post_data or "") if r.method == "POST"
                and r.url.endswith(f"/pay/{agent}") else None)
        try:
            page.goto(f"/pay/{agent}")
            expect(page.get_by_label("Card number")).to_have_count(0)  # no card field of slotwise's own
            expect(page.get_by_role("group", name="Card details")).to_contain_text("localstripe")
            page.get_by_label("Email").fill("dan@visitors.example")
            self.pay(page, "4000000000000341")  # attached, then declined at the charge
            expect(page.get_by_role("alert")).to_contain_text("Nothing was charged.")
            assert counts(stripe_world) == (0, 0)

            page.get_by_label("Email").fill("vera@visitors.example")
            self.pay(page, "4242424242424242")
            expect(page.get_by_role("heading", name="Thank you — your pass is ready")).to_be_visible(timeout=15_000)
            token = page.get_by_role("textbox", name="Visitor token").input_value()
            assert token.startswith(pa.TOKEN_PREFIX) and counts(stripe_world) == (1, 1)
            assert len(posted) == 2 and all("payment_method=pm_" in body for body in posted)
            assert not any("4242424242424242" in body or "0341" in body for body in posted)
        finally:
            context.close()

        sold = stripe_world.run(lambda db, at: db.scalars(select(Pass)).one())
        intents = [pi for pi in localstripe.payment_intents() if pi["id"] == sold.gateway_reference]
        assert [(pi["status"], pi["amount"], pi["currency"]) for pi in intents] == [("succeeded", 999, "usd")]
