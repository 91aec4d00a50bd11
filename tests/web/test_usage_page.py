"""The Usage page: in Chromium (the cards, the chart switched between credits and messages, the agent
filter and the date range), without JavaScript (the table), and bad addresses as clear 4xx pages
on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import date

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.orm import Session, sessionmaker

from slotwise.db import transaction
from slotwise.models import CreditUsage
from tests.factories import Api
from tests.web.conftest import sign_in
from tests.web.support import SeededOrg, World
from tests.web.test_sessions import login, make_org


def agent_ids(world: World, org: SeededOrg) -> dict[str, str]:
    from slotwise.repositories import agents_of_org

    return world.run(lambda db, _: {a.name: a.id for a in agents_of_org(db, org.id)})


def roll_up(world: World, org: SeededOrg, rows: list[tuple[str, str, int, int]]) -> None:
    def write(db: Session, _: object) -> None:
        db.add_all(CreditUsage(org_id=org.id, day=date.fromisoformat(day), agent_key=agent, credits=credits,
                               messages=messages) for day, agent, credits, messages in rows)

    world.run(write)


def seeded(world: World) -> tuple[SeededOrg, dict[str, str]]:
    """Pro (5 chatbots, 3 seats), two agents and a member; usage on three days of the last 30 (the clock
    is at Nov 15, 2026) and one day in October."""
    org = world.org("pro")
    world.named_agents(org, ["Support Assistant", "Sales Concierge"])
    world.member(org, name="Max Member")
    ids = agent_ids(world, org)
    roll_up(world, org, [("2026-11-10", ids["Support Assistant"], 120, 100),
                         ("2026-11-12", ids["Sales Concierge"], 50, 10),
                         ("2026-11-14", "", 5, 0),
                         ("2026-10-01", ids["Support Assistant"], 1000, 800)])
    return org, ids


class TestUsagePage:
    def test_cards_chart_metric_agent_filter_and_date_range(self, world: World, page: Page) -> None:
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        org, _ = seeded(world)
        sign_in(page, org.owner_email)
        page.get_by_role("link", name="Usage", exact=True).click()
        expect(page.get_by_role("heading", name="Usage", exact=True)).to_be_visible()
        expect(page.get_by_role("link", name="Usage", exact=True)).to_have_attribute("aria-current", "page")

        expect(page.get_by_test_id("credits-used")).to_have_text("175")
        expect(page.get_by_test_id("chatbots-used")).to_have_text("2 / 5")
        expect(page.get_by_test_id("members-used")).to_have_text("2 / 3")
        chart = page.get_by_role("img", name=re.compile("Bar chart of credits per day"))
        expect(chart).to_be_visible()
        expect(chart.locator("canvas")).to_have_count(1)
        expect(page.locator("[data-usage-table]")).not_to_have_attribute("open", "")  # the chart took over
        legend = page.locator("#usage-chart .u-legend")
        expect(legend).to_contain_text("Credits")
        expect(legend).to_contain_text("175")  # away from the bars, the range's total

        page.get_by_role("button", name="Messages").click()
        expect(page.get_by_role("button", name="Messages")).to_have_attribute("aria-pressed", "true")
        expect(page.get_by_role("button", name="Credits", exact=True)).to_have_attribute("aria-pressed", "false")
        expect(page.get_by_role("img", name=re.compile("Bar chart of messages per day"))).to_be_visible()
        expect(legend).to_contain_text("Messages")
        expect(legend).to_contain_text("110")
        expect(page.locator(".usage-figure figcaption")).to_contain_text("Messages per day")
        assert "metric=messages" in page.url

        page.get_by_label("Agent").select_option(label="Sales Concierge")
        page.get_by_role("button", name="Show usage").click()
        expect(page.get_by_test_id("credits-used")).to_have_text("50")
        expect(page.get_by_role("region", name="Credits used")).to_contain_text("Sales Concierge only")
        expect(page.get_by_role("button", name="Messages")).to_have_attribute("aria-pressed", "true")  # kept

        page.get_by_label("Agent").select_option(label="All agents")
        page.get_by_label("From").fill("2026-10-01")
        page.get_by_label("To").fill("2026-11-15")
        page.get_by_label("Group by").select_option(label="Month")
        page.get_by_role("button", name="Show usage").click()
        expect(page.get_by_test_id("credits-used")).to_have_text("1,175")
        page.get_by_text("Table of usage by month").click()
        rows = page.locator("[data-usage-table] tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_contain_text("October 2026")
        expect(rows.nth(0)).to_contain_text("1,000")
        expect(rows.nth(1)).to_contain_text("November 2026")
        expect(rows.nth(1)).to_contain_text("175")
        expect(page.get_by_role("region", name="Credits used")).to_contain_text("Oct 1 – Nov 15, 2026")
        assert errors == []  # nothing the page's scripts or its content security policy refused

    def test_a_member_reads_it_too(self, world: World, page: Page) -> None:
        org, _ = seeded(world)
        email = world.member(org, name="Mia Member")
        sign_in(page, email, path="/login?next=/usage")
        expect(page.get_by_test_id("credits-used")).to_have_text("175")
        expect(page.get_by_test_id("members-used")).to_have_text("3 / 3")

    def test_without_javascript_the_table_shows_the_numbers(self, world: World, browser: Browser) -> None:
        org, _ = seeded(world)
        context = browser.new_context(base_url=world.url, java_script_enabled=False)
        page = context.new_page()
        sign_in(page, org.owner_email, path="/login?next=/usage")
        table = page.get_by_role("table")
        expect(table).to_be_visible()
        expect(table.locator("tbody tr")).to_have_count(30)
        expect(page.get_by_role("row", name=re.compile(r"^Nov 10, 2026 120 100$"))).to_be_visible()
        expect(page.locator("#usage-chart")).to_be_hidden()
        page.get_by_role("button", name="Messages").click()  # submits the filters with the choice
        expect(page.get_by_role("button", name="Messages")).to_have_attribute("aria-pressed", "true")
        assert "metric=messages" in page.url
        context.close()


class TestBadAddresses:
    @pytest.mark.parametrize(("params", "status", "text"), [
        ({"from": "2026-02-30"}, 422, "&#39;from&#39; must be a date written YYYY-MM-DD"),
        ({"to": "soon"}, 422, "&#39;to&#39; must be a date written YYYY-MM-DD"),
        ({"from": "2026-11-10", "to": "2026-11-01"}, 422, "&#39;from&#39; must be on or before &#39;to&#39;."),
        ({"from": "2020-01-01", "to": "2026-11-01"}, 422, "A range covers at most 732 days"),
        ({"interval": "year"}, 422, "interval must be day, week or month."),
        ({"agent_id": "agt_nobody"}, 404, "That agent is not in your organization."),
        ({"agent_id": "agt_\x00"}, 404, "That agent is not in your organization."),
        ({"from": "\x00"}, 422, "must be a date"),
    ])
    def test_a_clear_4xx_page_with_the_form_to_correct(
        self, params: dict[str, str], status: int, text: str, api: Api, client: TestClient
    ) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        response = client.get("/usage", params=params)
        assert response.status_code == status
        assert text in response.text
        assert 'id="usage-filters"' in response.text and 'href="/usage"' in response.text
        assert "Chatbots used" in response.text  # the rest of the page still stands

    def test_another_organizations_agent_is_not_shown(self, api: Api, client: TestClient,
                                                      sessions: sessionmaker[Session]) -> None:
        make_org(api)
        other = api.create_org("pro")
        (theirs,) = other.create_agents(1)
        with transaction(sessions) as db:
            db.add(CreditUsage(org_id=other.id, day=date(2026, 11, 14), agent_key=theirs, credits=9, messages=9))
        login(client, "owner@acme.test")
        response = client.get("/usage", params={"agent_id": theirs})
        assert response.status_code == 404
        assert "That agent is not in your organization." in response.text
        assert 'data-testid="credits-used"' not in response.text  # no figure at all

    def test_an_unknown_metric_shows_credits(self, api: Api, client: TestClient) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        response = client.get("/usage", params={"metric": "<script>"})
        assert response.status_code == 200
        assert re.search(r'value="credits" class="segment"\s+aria-pressed="true"', response.text)
        assert "&lt;script&gt;" not in response.text

    def test_signed_out_goes_to_sign_in(self, client: TestClient) -> None:
        response = client.get("/usage?from=2026-11-01", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=%2Fusage%3Ffrom%3D2026-11-01"
