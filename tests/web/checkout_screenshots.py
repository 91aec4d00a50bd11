"""Screenshots of checkout at 1280 px and 390 px wide, into docs/screenshots/checkout-*.png.

Run with ``.venv/bin/python -m tests.web.checkout_screenshots``: the sandbox's checkout page (a Free
organization choosing Pro), a declined card, Billing's card-only mode, and the Stripe Elements page
against localstripe's stand-in Stripe.js.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

from tests.localstripe_server import LocalStripe
from tests.web.screenshots import OUT, WIDTHS
from tests.web.support import CHROMIUM, CHROMIUM_ARGS, PASSWORD, LiveServer, World


def _page(browser: Browser, world: World, email: str, width: int) -> Page:
    context = browser.new_context(base_url=world.url, viewport={"width": width, "height": 900 if width > 600 else 844},
                                  device_scale_factor=1)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/billing/addons")
    return page


def sandbox_shots(browser: Browser, world: World) -> list[Path]:
    shots = []
    for width in WIDTHS:
        org = world.org("free", name="Acme Robotics")
        page = _page(browser, world, org.owner_email, width)
        page.goto("/billing/checkout?plan=pro")
        shots.append(OUT / f"checkout-{width}.png")
        page.screenshot(path=str(shots[-1]), full_page=True)
        page.get_by_label("Card number").fill("4000 0000 0000 0002")
        page.get_by_role("button", name="Subscribe and pay $150.00").click()
        page.locator(".flash-error").wait_for()
        shots.append(OUT / f"checkout-declined-{width}.png")
        page.screenshot(path=str(shots[-1]), full_page=True)
        page.goto("/billing/checkout?mode=card")
        shots.append(OUT / f"checkout-card-{width}.png")
        page.screenshot(path=str(shots[-1]), full_page=True)
        page.goto("/billing/checkout?plan=pro")
        page.get_by_label("Card number").fill("4242 4242 4242 4242")
        page.get_by_role("button", name="Subscribe and pay $150.00").click()
        page.get_by_role("status").wait_for()
        shots.append(OUT / f"checkout-success-{width}.png")
        page.screenshot(path=str(shots[-1]), full_page=False)
        page.context.close()
    return shots


def stripe_shots(browser: Browser, server: LiveServer, folder: Path) -> list[Path]:
    from tests.web.test_checkout_pages import StripeWorld

    shots = []
    with LocalStripe() as stripe:
        world = StripeWorld(server, folder, stripe)
        for width in WIDTHS:
            org = world.org("free", name="Acme Robotics")
            page = _page(browser, world, org.owner_email, width)
            page.goto("/billing/checkout?plan=pro")
            field = page.get_by_role("group", name="Card details")
            field.get_by_placeholder("number").fill("4242424242424242")
            field.get_by_placeholder("exp_month").fill("12")
            field.get_by_placeholder("exp_year").fill("34")
            field.get_by_placeholder("cvc").fill("123")
            shots.append(OUT / f"checkout-stripe-{width}.png")
            page.screenshot(path=str(shots[-1]), full_page=True)
            page.context.close()
        world.close()
    return shots


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    server = LiveServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            (Path(tmp) / "a").mkdir()
            (Path(tmp) / "b").mkdir()
            world = World(server, Path(tmp) / "a")
            shots = sandbox_shots(browser, world)
            world.close()
            shots += stripe_shots(browser, server, Path(tmp) / "b")
            browser.close()
    finally:
        server.stop()
    for shot in shots:
        print(shot.relative_to(OUT.parents[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
