"""Activity (SPEC §14): the Owner's page of the audit trail. In Chromium: the Owner finds it in the
navigation, reads entries in words with their amount and invoice, filters by a kind and pages Older
and Newer; admins and members have no link and are refused. Without a browser, on both databases:
it renders for every role, and bad parameters are a page that says so, never a 500."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session, sessionmaker

from slotwise import repositories as repo
from slotwise.services import audit, audit_log
from slotwise.services.audit_log import Entry
from slotwise.services.context import Actor
from slotwise.web import activity_words as words
from slotwise.web.render import money
from tests.factories import GOOD_CARD, Api
from tests.web.conftest import sign_in
from tests.web.support import SeededOrg, World
from tests.web.test_sessions import PASSWORD, login


def record(db: Session, org_id: str, by: audit.By, at: datetime, kinds: list[tuple[str, dict[str, object]]]) -> None:
    for n, (kind, fields) in enumerate(kinds):
        audit.record(db, org_id=org_id, by=by, kind=kind, at=at + timedelta(minutes=n), **fields)  # type: ignore[arg-type]


def history(world: World, org: SeededOrg, agents: int = 30) -> tuple[str, str]:
    """Creating the organization (2 entries), 2 chatbot slots bought through the service (its entry,
    with the invoice), then ``agents`` more entries of agents created, written as the agents service
    writes them (so many real agents would need more slots). The slots' invoice id and its amount."""
    world.add_slots(org, "agent_slots", 2)

    def write(db: Session, at: datetime) -> tuple[str, str]:
        invoice = repo.invoices_of_org(db, org.id, limit=1)[0]
        by = audit.By("user", org.owner_id, org.owner_email)
        record(db, org.id, by, at, [("agent.created", {"subject_id": f"agt_{n}",
                                                       "after": {"name": f"Helper {n:02d}", "archived": False}})
                                    for n in range(agents)])
        return str(invoice.id), money(invoice.total, invoice.currency)

    return world.run(write)


class TestTheOwner:
    def test_reads_filters_and_pages_the_activity(self, world: World, page: Page) -> None:
        org = world.org("pro", name="Acme Robotics")
        invoice, amount = history(world, org)  # 33 entries: a page of 25, then 8
        sign_in(page, org.owner_email)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Activity").click()
        expect(page.get_by_role("heading", name="Activity", level=1)).to_be_visible()
        rows = page.locator("tbody tr")
        expect(rows).to_have_count(25)  # a page; the newest first
        expect(rows.first).to_contain_text("Created the agent Helper 29")
        expect(rows.first).to_contain_text(org.owner_email)

        page.get_by_label("Kind of change").select_option(label="Slots added")
        page.get_by_role("button", name="Show activity").click()
        expect(page).to_have_url(re.compile(r"/activity\?kind=addon\.added$"))
        expect(page.get_by_role("heading", name="Slots added")).to_be_visible()
        expect(page.get_by_label("Kind of change")).to_have_value("addon.added")
        [only] = rows.all()
        expect(only).to_contain_text("Added 2 chatbot slots")
        expect(only).to_contain_text("Slots now: 0 → 2")
        expect(only).to_contain_text(amount)
        only.get_by_role("link", name="Invoice").click()
        expect(page).to_have_url(re.compile(f"/billing/invoices/{invoice}$"))
        expect(page.get_by_role("heading", name=re.compile("Invoice #"))).to_be_visible()

        page.goto("/activity")
        pages = page.get_by_role("navigation", name="Pages of activity")
        expect(pages.get_by_role("link", name="Newer")).to_have_count(0)
        pages.get_by_role("link", name="Older").click()
        expect(rows).to_have_count(8)  # 5 more agents, the slots, the plan and the organization
        expect(rows.first).to_contain_text("Created the agent Helper 04")
        expect(rows.nth(5)).to_contain_text("Added 2 chatbot slots")
        expect(rows.nth(6)).to_contain_text("Started the Pro plan")
        expect(rows.last).to_contain_text("Created the organization on the Pro plan")
        expect(rows.last).to_contain_text("Your platform")
        expect(pages.get_by_role("link", name="Older")).to_have_count(0)
        pages.get_by_role("link", name="Newer").click()
        expect(rows).to_have_count(25)
        expect(rows.first).to_contain_text("Created the agent Helper 29")
        expect(rows.last).to_contain_text("Created the agent Helper 05")

    def test_an_empty_family_says_so_and_leads_back(self, world: World, page: Page) -> None:
        org = world.org("pro")
        history(world, org, agents=1)
        sign_in(page, org.owner_email)
        page.goto("/activity")
        page.get_by_label("Kind of change").select_option(label="All: passes")
        page.get_by_role("button", name="Show activity").click()
        expect(page.get_by_text("No activity of this kind.")).to_be_visible()
        page.get_by_role("link", name="Show all activity").click()
        expect(page.locator("tbody tr")).to_have_count(4)

    def test_a_phone_shows_each_entry_as_a_block(self, world: World, browser: object, page: Page) -> None:
        org = world.org("pro")
        history(world, org, agents=2)
        page.set_viewport_size({"width": 390, "height": 844})
        sign_in(page, org.owner_email)
        page.goto("/activity")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways at 390 px ({width} px)"
        expect(page.locator("tbody tr").nth(2)).to_contain_text("Added 2 chatbot slots")


class TestOthers:
    @pytest.mark.parametrize("role", ["admin", "member"])
    def test_have_no_link_and_are_refused(self, world: World, page: Page, role: str) -> None:
        org = world.org("pro")
        history(world, org, agents=1)
        email = world.member(org, role=role)  # type: ignore[arg-type]
        sign_in(page, email)
        expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Activity")).to_have_count(0)
        response = page.goto("/activity")
        assert response is not None and response.status == 403
        expect(page.get_by_role("heading", name="Owner Only")).to_be_visible()
        expect(page.get_by_text("Created the agent")).to_have_count(0)


# --- without a browser, on both databases -----------------------------------------------------------

def owner_with_entries(api: Api, sessions: sessionmaker[Session]) -> str:
    created = api.operator("/organizations", {"name": "Acme", "owner_email": "owner@acme.test",
                                              "owner_password": PASSWORD, "plan": "pro"})
    assert created.status_code == 201, created.text
    org_id: str = created.json()["id"]
    for role in ("admin", "member"):
        assert api.operator(f"/organizations/{org_id}/users", {"email": f"{role}@acme.test", "password": PASSWORD,
                                                               "role": role}).status_code == 201
    with sessions.begin() as db:
        record(db, org_id, audit.OPERATOR, datetime.fromisoformat("2026-11-15T09:00:00+00:00"), [
            ("payment_method.updated", {"before": {"brand": "visa", "last4": "4242"},
                                        "after": {"brand": "mastercard", "last4": "4444"}}),
            ("plan.upgraded", {"before": {"plan": "pro"}, "after": {"plan": "business"}, "amount": 5000,
                               "currency": "eur"}),
            ("someone.elses_kind", {"after": {"nested": {"x": [1, 2]}}})])
    return org_id


class TestRendering:
    def test_the_owner_reads_words_and_money(self, api: Api, client: TestClient,
                                             sessions: sessionmaker[Session]) -> None:
        owner_with_entries(api, sessions)
        assert login(client, "owner@acme.test").status_code == 303
        html = client.get("/activity").text
        assert "Changed the plan from Pro to Business" in html
        assert "€50.00" in html
        assert "Changed the card to Mastercard •••• 4444" in html
        assert "Your platform" in html
        assert "someone.elses_kind" in html  # a kind without words reads as itself
        assert 'href="/activity"' in html and 'aria-current="page"' in html

    @pytest.mark.parametrize("role", ["admin", "member"])
    def test_others_get_the_owner_only_page(self, api: Api, client: TestClient, sessions: sessionmaker[Session],
                                            role: str) -> None:
        owner_with_entries(api, sessions)
        assert login(client, f"{role}@acme.test").status_code == 303
        response = client.get("/activity")
        assert response.status_code == 403
        assert "Owner Only" in response.text and "Changed the plan" not in response.text
        assert 'href="/activity"' not in client.get("/billing").text

    @pytest.mark.parametrize("query", ["kind=%00", "kind=Addon", "kind=" + "x" * 60, "starting_after=%00",
                                       "starting_after=aud_missing", "ending_before=aud%0A",
                                       "starting_after=" + "x" * 5000, "starting_after=a&ending_before=b"])
    def test_bad_parameters_are_a_page_that_says_so(self, api: Api, client: TestClient,
                                                    sessions: sessionmaker[Session], query: str) -> None:
        owner_with_entries(api, sessions)
        assert login(client, "owner@acme.test").status_code == 303
        response = client.get(f"/activity?{query}")
        assert response.status_code == 422, response.text[:300]
        assert "This page of activity does not exist" in response.text

    def test_signed_out_goes_to_sign_in(self, client: TestClient) -> None:
        response = client.get("/activity", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login?next=%2Factivity"


class TestWords:
    """The sentences a change reads as; a payload of another shape reads as its kind, never an error."""

    def test_every_kind_the_services_record_has_words(self) -> None:
        missing = [k for k in audit.KINDS if k not in words.KIND_LABELS]
        assert not missing, f"give these kinds a label and a sentence in web/activity_words.py: {missing}"
        families = [k for k in audit.KINDS if not any(k.startswith(prefix) for prefix, _ in words.FAMILIES)]
        assert not families, f"and their family a place in the filter: {families}"

    def test_a_real_history_reads_in_words(self, api: Api, sessions: sessionmaker[Session]) -> None:
        org = api.create_org("pro", card=GOOD_CARD)
        assert org.add_slots("agent_slots", 2).status_code == 200
        assert org.remove_slots("agent_slots", 1).status_code == 200
        assert org.post("/addons/agent_slots/keep").status_code == 200
        agent, other = org.create_agents(2)
        assert org.put(f"/agents/{other}/access", {"mode": "restricted"}).status_code == 200
        assert org.post(f"/agents/{agent}/archive").status_code == 200
        assert org.post("/invitations", {"email": "new@acme.test", "role": "member"}).status_code == 201
        org.add_member("admin")
        assert org.post("/credits/top-up", {"packs": 1}).status_code == 201
        assert org.put("/credits/auto-recharge", {"enabled": True, "threshold": 500}).status_code == 200
        assert org.put("/payment-method", {"card_number": "5555555555554444"}).status_code == 200
        assert org.post("/subscription", {"plan": "business"}).status_code == 200
        api.clock_to("2026-12-15T09:00:00Z")  # the renewal
        with sessions() as db:
            found = audit_log.entries_page(db, actor=Actor(org.owner_id, org.id, "owner"), limit=100)
            names = audit_log.agent_names(db, org_id=org.id, entries=found.entries)
        kinds = [e.kind for e in found.entries]
        assert {"addon.added", "addon.removal_scheduled", "addon.removal_cancelled", "agent.archived",
                "agent.access_changed", "invitation.created", "member.added", "credits.topped_up",
                "auto_recharge.updated", "payment_method.updated", "plan.upgraded", "subscription.renewed",
                "organization.created", "plan.started"} <= set(kinds), kinds
        for entry in found.entries:
            said = words.what(entry, names)
            assert said != entry.kind and "{" not in said, (entry.kind, said)
            words.changes(entry)
        said = {e.kind: words.what(e, names) for e in found.entries}
        assert said["addon.added"] == "Added 2 chatbot slots"
        assert said["plan.upgraded"] == "Changed the plan from Pro to Business"
        assert said["payment_method.updated"] == "Changed the card to Mastercard •••• 4444"

    @pytest.mark.parametrize(("kind", "before", "after", "said"), [
        ("addon.added", {"active_slots": 0, "renewal_slots": 0}, {"active_slots": 2, "renewal_slots": 2},
         "Added 2 chatbot slots"),
        ("addon.removal_scheduled", {"active_slots": 3, "renewal_slots": 3}, {"active_slots": 3, "renewal_slots": 2},
         "Scheduled the removal of 1 chatbot slot at the next billing date"),
        ("addon.removed", {"active_slots": 3, "renewal_slots": 1}, {"active_slots": 1, "renewal_slots": 1},
         "Removed 2 chatbot slots"),
        ("member.added", None, {"email": "ada@acme.test", "role": "admin"}, "Added ada@acme.test as Admin"),
        ("agent.archived", {"name": "Docs", "archived": False}, {"name": "Docs", "archived": True},
         "Archived the agent Docs"),
        ("auto_recharge.updated", {"enabled": False}, {"enabled": True}, "Turned auto-recharge on"),
        ("credits.topped_up", {"topup": 0}, {"topup": 5000, "credits": 5000}, "Topped up 5,000 credits"),
        ("addon.added", {"active_slots": "many"}, ["not", "a", "mapping"], "addon.added"),
    ])
    def test_sentences(self, kind: str, before: dict[str, object] | None, after: object, said: str) -> None:
        entry = Entry("aud_1", datetime.fromisoformat("2026-11-15T09:00:00+00:00"), "user", "usr_1", "o@a.test",
                      kind, "agent_slots", before, after, None, None, None)  # type: ignore[arg-type]
        assert words.what(entry) == said
