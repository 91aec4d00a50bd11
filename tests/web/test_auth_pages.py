"""Signing in and out, and CSRF, in Chromium."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.web.conftest import sign_in
from tests.web.support import World


def test_a_wrong_password_is_refused(world: World, page: Page) -> None:
    org = world.org("pro")
    page.goto("/")
    expect(page).to_have_url(world.url + "/login")
    page.get_by_label("Email").fill(org.owner_email)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That email and password don't match an account.")
    expect(page.get_by_label("Email")).to_have_value(org.owner_email)


def test_sign_in_shows_the_organization_and_sign_out_ends_the_session(world: World, page: Page) -> None:
    org = world.org("pro", name="Globex Support")
    page.goto("/billing/team-does-not-matter")  # any page: unknown ones 404, known ones ask to sign in
    page.goto("/agents")
    expect(page).to_have_url(world.url + "/login?next=%2Fagents")
    sign_in(page, org.owner_email, path=page.url.removeprefix(world.url))
    expect(page).to_have_url(world.url + "/agents")
    header = page.get_by_role("banner")
    expect(header).to_contain_text("Globex Support")
    expect(header).to_contain_text("Olivia Owner")
    expect(header).to_contain_text("Owner")
    nav = page.get_by_role("navigation", name="Main")
    for label in ("Add-ons & Extras", "Billing overview", "Plans", "Team", "Agents"):
        expect(nav.get_by_role("link", name=label)).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You've been signed out.")
    page.goto("/billing/addons")
    expect(page).to_have_url(world.url + "/login?next=%2Fbilling%2Faddons")


def test_a_form_post_without_the_csrf_token_is_rejected(world: World, page: Page) -> None:
    org = world.org("pro")
    sign_in(page, org.owner_email)
    response = page.request.post("/billing/addons/agent_slots/add", form={"quantity": "1"}, max_redirects=0)
    assert response.status == 403
    assert "This form has expired" in response.text()
    preview = page.request.post("/billing/addons/agent_slots/preview", data={"action": "add", "quantity": 1})
    assert preview.status == 403
    page.reload()
    expect(page.locator(".card-active")).to_have_count(0)  # nothing was bought
