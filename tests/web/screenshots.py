"""Screenshots of the customer pages at 1280 px and 390 px wide, into docs/screenshots/.

Run with ``make screenshots`` (or ``.venv/bin/python -m tests.web.screenshots``). Seeds one demo-like
organization on a fresh SQLite database, drives Debian's Chromium through the pages and dialogs.
Name prefixes as arguments take only those shots (``… screenshots paywall subscriptions``).
"""

from __future__ import annotations

import itertools
import random
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy.orm import Session

from slotwise import repositories
from slotwise.catalog import Activity, Model
from slotwise.clock import wall_now
from slotwise.models import CreditUsage
from slotwise.services import billing_details, paid_access, recharges
from slotwise.services.spend import SpendRequest, spend
from tests.web.support import CHROMIUM, CHROMIUM_ARGS, PASSWORD, START, LiveServer, SeededOrg, World

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WIDTHS = (1280, 390)


def seed(world: World) -> SeededOrg:
    """Acme Robotics on Pro, 2 extra chatbot slots bought on Nov 26, 6 agents, every seat taken."""
    org = world.org("pro", name="Acme Robotics")
    world.clock_to("2026-11-26T12:00:00Z")
    world.add_slots(org, "agent_slots", 2)
    names = ["Support Assistant", "Sales Concierge", "Docs Helper", "Onboarding Guide", "Billing Bot",
             "Returns Desk"]
    world.named_agents(org, names)
    world.member(org, role="admin", name="Ada Admin")
    world.invite(org, "new.hire@acme.example")
    seed_usage(world, org)
    seed_credits(world, org)
    seed_paid_agents(world, org)
    world.run(lambda db, at: billing_details.update_billing_details(
        db, actor=org.owner, email="billing@acme.example", company="Acme Robotics GmbH",
        address="Müllerstraße 12\n10115 Berlin\nGermany", at=at))
    return org


def seed_credits(world: World, org: SeededOrg) -> None:
    """One pack topped up, auto-recharge on (what was spent comes from ``seed_usage``)."""
    world.top_up(org, 1)
    world.run(lambda db, at: recharges.update_settings(
        db, actor=org.owner, settings=recharges.RechargeSettings(enabled=True, threshold=500, max_per_month=3),
        at=at, wall_now=wall_now()))


def seed_paid_agents(world: World, org: SeededOrg) -> None:
    """Support Assistant sold for $9.99 (30 days, 500 messages) with five passes, one refunded and one
    in use; Sales Concierge for its contacts only."""
    def write(db: Session, at: datetime) -> None:
        found = {a.name: a.id for a in repositories.agents_of_org(db, org.id)}
        support = found["Support Assistant"]
        paid_access.configure_access(db, actor=org.owner, agent_id=support, mode="paid",
                                     paid=paid_access.PaidConfig(999, "usd", 30, 500), at=at)
        paid_access.configure_access(db, actor=org.owner, agent_id=found["Sales Concierge"], mode="restricted",
                                     paid=None, at=at)
        visitors = ["maya.chen@example.com", "j.okafor@example.org", "lea.martin@example.net",
                    "sam.rivera@example.com", "noah.k@example.io"]
        for n, email in enumerate(visitors):
            paid_access.buy_pass(db, env=world.state.env, agent_id=support, email=email,
                                 payment_method="4242 4242 4242 4242", checkout_key=f"seed-{n}",
                                 at=at - timedelta(days=9 - 2 * n, hours=n))
        for n in range(3):
            paid_access.visitor_message(db, env=world.state.env, agent_id=support,
                                        visitor=paid_access.Visitor(email=visitors[0]), reference=f"vis_{n}",
                                        model="standard", at=at, wall_now=wall_now())
        refunded = paid_access.passes_page(db, actor=org.owner, limit=10, after=None)[2]
        paid_access.refund_pass(db, env=world.state.env, actor=org.owner, pass_id=refunded.id, at=at)

    world.run(write)


def seed_usage(world: World, org: SeededOrg) -> None:
    """Sixty days of credit usage, busier on weekdays, growing. The days of the current period (from
    Nov 15) go through the real spend, so the Billing page's credits panel and Usage agree; the days
    before it are written as the roll-ups the spend would have left."""
    rng = random.Random(7)
    terms = world.state.env.catalog.credits

    def write(db: Session, at: datetime) -> None:
        agents = [(a.id, 1.0 / (n + 1)) for n, a in enumerate(repositories.agents_of_org(db, org.id))]
        references = itertools.count(1)
        for back in reversed(range(60)):  # oldest first, as the spends happened
            day = at.date() - timedelta(days=back)
            pace = (0.45 if day.weekday() >= 5 else 1.0) * (1 - back / 120)
            for agent_key, share in [*agents, ("", 0.15)]:
                messages = int(rng.uniform(60, 110) * share * pace * 4)
                premium, documents = int(messages * rng.uniform(0, 0.2)), rng.randint(0, 3)
                if day < START.date():
                    credits = messages + 4 * premium + 10 * documents
                    db.add(CreditUsage(org_id=org.id, day=day, agent_key=agent_key, credits=credits,
                                       messages=messages))
                    continue
                when = min(datetime.combine(day, time(12), UTC), at)
                parts: list[tuple[Activity, Model, int]] = [
                    ("message", "standard", messages - premium), ("message", "premium", premium),
                    ("document", "standard", documents)]
                for activity, model, units in parts:
                    if units:
                        request = SpendRequest(activity=activity, model=model, units=units,
                                               agent_id=agent_key or None, reference=f"ans_{next(references)}")
                        spend(db.connection(), terms=terms, org_id=org.id, request=request, at=when,
                              wall_now=wall_now())

    world.run(write)


def _add_dialog(page: Page) -> None:
    page.goto("/billing/addons")
    page.get_by_role("button", name="Add More Slots").click()
    dialog = page.get_by_role("dialog", name="Add Additional Chatbot Slots")
    dialog.get_by_role("button", name="One slot more").click()
    dialog.locator('[data-field="charge_now"]').filter(has_text="$8.87").wait_for()


def _remove_refused(page: Page) -> None:
    page.goto("/billing/addons")
    page.get_by_role("button", name="Remove Additional Chatbot Slots").click()
    dialog = page.get_by_role("dialog", name="Remove Additional Chatbot Slots")
    dialog.get_by_role("button", name="One slot more").click()
    dialog.get_by_role("alert").wait_for()


def _top_up_dialog(page: Page) -> None:
    page.goto("/billing")
    page.get_by_role("button", name="Top Up Now").click()
    dialog = page.get_by_role("dialog", name="Top Up Now")
    dialog.get_by_role("button", name="One pack more").click()
    dialog.get_by_role("button", name="One pack more").click()
    dialog.locator('[data-field="charge_now"]').filter(has_text="$60.00").wait_for()


def _usage_filtered(page: Page) -> None:
    page.goto("/usage")
    page.get_by_label("Agent").select_option(label="Support Assistant")
    page.get_by_label("Group by").select_option(label="Week")
    page.get_by_role("button", name="Show usage").click()
    page.get_by_role("button", name="Messages").click()
    page.locator("#usage-chart canvas").wait_for()


def _invoice(page: Page) -> None:
    page.goto("/billing")
    page.get_by_role("link", name="#2", exact=True).click()
    page.get_by_role("heading", name="Invoice #2").wait_for()


def _portal_cancel_dialog(page: Page) -> None:
    page.goto("/billing/portal")
    page.get_by_role("button", name="Cancel subscription").click()
    page.get_by_role("dialog", name="Cancel subscription?").wait_for()


def _agents_visibility(page: Page) -> None:
    page.goto("/agents#visibility")  # the section in view: Support Assistant's paid card, then the others
    page.get_by_role("article", name="Support Assistant").scroll_into_view_if_needed()


def _visibility_dialog(page: Page) -> None:
    page.goto("/agents")
    card = page.get_by_role("article", name="Docs Helper")
    card.get_by_role("radio", name="Pay for Access").check()
    card.get_by_label("Price").fill("4.99")
    card.get_by_label("Access days").fill("7")
    card.get_by_label("Message credits").fill("100")
    card.get_by_role("button", name="Save visibility").click()
    page.get_by_role("dialog", name="Turn on Pay for Access?").wait_for()


def _refund_dialog(page: Page) -> None:
    page.goto("/billing/subscriptions")
    page.locator("tbody tr").filter(has_text="maya.chen@example.com").get_by_role("button", name="Refund").click()
    page.get_by_role("dialog", name="Refund this pass?").wait_for()


def _paywall(page: Page) -> None:
    page.goto("/agents")
    href = page.get_by_test_id("paywall-link").first.get_attribute("href")
    page.goto(href or "/")
    page.get_by_role("heading", name="This Chatbot is Monetized by the Creator").wait_for()


def _paywall_pay(page: Page, card: str) -> None:
    _paywall(page)
    page.get_by_label("Email").fill("ines.garcia@example.com")
    page.get_by_label("Card number").fill(card)
    page.get_by_role("button", name="Pay $9.99").click()


def _paywall_declined(page: Page) -> None:
    _paywall_pay(page, "4000 0000 0000 0341")
    page.get_by_role("alert").wait_for()


def _paywall_receipt(page: Page) -> None:
    _paywall_pay(page, "4242 4242 4242 4242")
    page.get_by_role("heading", name="Thank you — your pass is ready").wait_for()


def _paywall_verify(page: Page) -> None:
    _paywall_pay(page, "4000 0025 0000 3155")
    page.get_by_role("heading", name="Confirm your payment with your bank").wait_for()


def _activity_filtered(page: Page) -> None:
    page.goto("/activity")
    page.get_by_label("Kind of change").select_option(label="All: passes")
    page.get_by_role("button", name="Show activity").click()
    page.get_by_role("heading", name="Passes").wait_for()


SHOTS: list[tuple[str, Callable[[Page], None], bool]] = [
    ("addons", lambda p: p.goto("/billing/addons"), True),
    ("add-dialog", _add_dialog, False),
    ("remove-refused", _remove_refused, False),
    ("team", lambda p: p.goto("/team"), True),
    ("agents", lambda p: p.goto("/agents"), True),
    ("plans", lambda p: p.goto("/billing/plans"), True),
    ("billing", lambda p: p.goto("/billing"), True),
    ("top-up-dialog", _top_up_dialog, False),
    ("usage", lambda p: p.goto("/usage"), True),
    ("usage-filtered", _usage_filtered, True),
    ("invoice", _invoice, True),
    ("portal", lambda p: p.goto("/billing/portal"), True),
    ("portal-cancel-dialog", _portal_cancel_dialog, False),
    ("agents-visibility", _agents_visibility, False),
    ("agents-visibility-dialog", _visibility_dialog, False),
    ("subscriptions", lambda p: p.goto("/billing/subscriptions"), True),
    ("subscriptions-refund-dialog", _refund_dialog, False),
    ("paywall", _paywall, True),
    ("paywall-declined", _paywall_declined, True),
    ("paywall-receipt", _paywall_receipt, True),
    ("paywall-verify", _paywall_verify, True),
    ("activity", lambda p: p.goto("/activity"), True),
    ("activity-filtered", _activity_filtered, True),
]


def capture(browser: Browser, world: World, org: SeededOrg, width: int,
            only: tuple[str, ...] = ()) -> list[Path]:
    context = browser.new_context(base_url=world.url, viewport={"width": width, "height": 900 if width > 600 else 844},
                                  device_scale_factor=1)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill(org.owner_email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    written = []
    for name, go, full_page in SHOTS:
        if only and not name.startswith(only):
            continue
        go(page)
        page.wait_for_load_state("networkidle")
        path = OUT / f"{name}-{width}.png"
        page.screenshot(path=str(path), full_page=full_page)
        written.append(path)
    context.close()
    return written


def login_shot(browser: Browser, world: World) -> Path:
    context = browser.new_context(base_url=world.url, viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.goto("/login")
    path = OUT / "login-1280.png"
    page.screenshot(path=str(path))
    context.close()
    return path


def main(only: tuple[str, ...] = ()) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    server = LiveServer().start()
    try:
        with tempfile.TemporaryDirectory() as folder, sync_playwright() as p:
            world = World(server, Path(folder))
            org = seed(world)
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            written = [] if only and not "login".startswith(only) else [login_shot(browser, world)]
            for width in WIDTHS:
                written += capture(browser, world, org, width, only)
            browser.close()
            world.close()
    finally:
        server.stop()
    for path in written:
        print(f"{path.relative_to(OUT.parents[1])}  {path.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main(tuple(sys.argv[1:])))
