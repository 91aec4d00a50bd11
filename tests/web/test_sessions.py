"""Web sessions and CSRF through the HTTP layer (no browser), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from slotwise.api.app import create_app
from slotwise.clock import SimulatedClock
from slotwise.config import Settings
from slotwise.models import WebSession
from slotwise.services.context import Env
from tests.factories import Api

PASSWORD = "correct-horse-battery"
COOKIE = "slotwise_session"


def make_org(api: Api, plan: str = "pro", email: str = "owner@acme.test") -> dict[str, Any]:
    response = api.operator("/organizations", {"name": "Acme", "owner_email": email, "owner_password": PASSWORD,
                                               "plan": plan})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def login(client: TestClient, email: str, password: str = PASSWORD, next_path: str = "") -> Response:
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token.group(1),
                                       "next": next_path}, follow_redirects=False)


def page_csrf(client: TestClient, path: str = "/billing/addons") -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', client.get(path).text)
    assert found is not None
    return found.group(1)


def set_cookie_headers(response: Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def session_token(response: Response) -> str:
    """The session token a response sets (read from Set-Cookie, not the client's jar)."""
    for header in set_cookie_headers(response):
        name, _, rest = header.partition("=")
        if name == COOKIE:
            return rest.split(";", 1)[0]
    raise AssertionError("no session cookie was set")


class TestLogin:
    def test_the_session_cookie_is_httponly_lax_and_only_its_hash_is_stored(
        self, api: Api, client: TestClient, sessions: sessionmaker[Session]
    ) -> None:
        make_org(api)
        response = login(client, "owner@acme.test")
        assert response.status_code == 303
        assert response.headers["location"] == "/billing/addons"
        cookie = next(c for c in set_cookie_headers(response) if c.startswith(COOKIE + "="))
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
        token = client.cookies[COOKIE]
        with sessions() as db:
            rows = db.scalars(select(WebSession)).all()
        assert [r.token_hash for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
        assert all(token not in (r.token_hash, r.csrf_token) for r in rows)

    def test_wrong_password_and_unknown_email_get_the_same_refusal(self, api: Api, client: TestClient) -> None:
        make_org(api)
        for email, password in (("owner@acme.test", "wrong-password"), ("nobody@acme.test", PASSWORD)):
            response = login(client, email, password)
            assert response.status_code == 401
            assert "That email and password don&#39;t match an account." in response.text
            assert COOKIE not in client.cookies

    def test_each_sign_in_gets_a_new_session_and_ends_the_old_one(self, api: Api, client: TestClient) -> None:
        make_org(api)
        first = session_token(login(client, "owner@acme.test"))
        second = session_token(login(client, "owner@acme.test"))
        assert first != second
        client.cookies.clear()
        client.cookies.set(COOKIE, first)
        assert client.get("/billing/addons", follow_redirects=False).status_code == 303

    def test_a_planted_cookie_is_never_adopted(self, api: Api, client: TestClient) -> None:
        make_org(api)
        client.cookies.set(COOKIE, "sws_attacker-chosen")
        assert session_token(login(client, "owner@acme.test")) != "sws_attacker-chosen"

    def test_the_sign_in_form_needs_its_own_csrf_token(self, api: Api, client: TestClient) -> None:
        make_org(api)
        response = client.post("/login", data={"email": "owner@acme.test", "password": PASSWORD},
                               follow_redirects=False)
        assert response.status_code == 403
        assert COOKIE not in client.cookies

    def test_next_only_goes_to_this_site(self, api: Api, client: TestClient) -> None:
        make_org(api)
        assert login(client, "owner@acme.test", next_path="//evil.example/x").headers["location"] == "/billing/addons"
        assert login(client, "owner@acme.test", next_path="/team").headers["location"] == "/team"

    def test_secure_cookie_when_configured_or_over_https(
        self, api: Api, client: TestClient, settings: Settings, engine: Any, clock: SimulatedClock, env: Env
    ) -> None:
        make_org(api)
        forced = create_app(
            Settings(database_url=settings.database_url, operator_key=settings.operator_key, catalog_path=None,
                     clock="simulated", clock_start=settings.clock_start, secure_cookies=True),
            engine=engine, clock=clock, gateway=env.gateway, catalog=env.catalog)
        with TestClient(forced) as plain_http:
            assert all("Secure" in c for c in set_cookie_headers(plain_http.get("/login")))
        with TestClient(client.app, base_url="https://testserver") as over_https:
            cookie = next(c for c in set_cookie_headers(login(over_https, "owner@acme.test"))
                          if c.startswith(COOKIE + "="))
            assert "Secure" in cookie and "HttpOnly" in cookie

    def test_an_expired_session_asks_to_sign_in_again(
        self, api: Api, client: TestClient, sessions: sessionmaker[Session]
    ) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        with sessions.begin() as db:
            db.execute(update(WebSession).values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
        response = client.get("/billing", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=%2Fbilling"


    def test_a_form_sent_after_the_session_ended_returns_to_its_page_after_sign_in(self, client: TestClient) -> None:
        response = client.post("/agents", data={"name": "x", "csrf_token": "stale"}, follow_redirects=False,
                               headers={"Referer": "http://testserver/agents"})
        assert response.headers["location"] == "/login?next=%2Fagents"


class TestCsrf:
    def test_a_form_without_or_with_a_wrong_token_changes_nothing(self, api: Api, client: TestClient) -> None:
        org = make_org(api)
        login(client, "owner@acme.test")
        for data in ({"quantity": "1"}, {"quantity": "1", "csrf_token": "forged"}):
            response = client.post("/billing/addons/agent_slots/add", data=data, follow_redirects=False)
            assert response.status_code == 403
        token = org["owner"]["api_token"]
        slots = client.get(f"/v1/organizations/{org['id']}/addons", headers={"Authorization": f"Bearer {token}"})
        assert all(a["active_slots"] == 0 for a in slots.json())

    def test_the_right_token_goes_through(self, api: Api, client: TestClient) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        response = client.post("/billing/addons/agent_slots/add",
                               data={"quantity": "2", "csrf_token": page_csrf(client)}, follow_redirects=False)
        assert response.status_code == 303
        assert "Slots added successfully." in client.get("/billing/addons").text

    def test_a_resubmitted_purchase_form_charges_once(self, api: Api, client: TestClient) -> None:
        org = make_org(api)
        login(client, "owner@acme.test")
        page = client.get("/billing/addons").text
        submission = re.search(r'action="/billing/addons/agent_slots/add".*?name="submission" value="([^"]+)"',
                               page, re.S)
        assert submission is not None
        form = {"quantity": "2", "csrf_token": page_csrf(client), "submission": submission.group(1)}
        first = client.post("/billing/addons/agent_slots/add", data=form)
        assert "Slots added successfully." in first.text
        again = client.post("/billing/addons/agent_slots/add", data=form)
        assert "already submitted, so nothing more was charged" in again.text
        headers = {"Authorization": f"Bearer {org['owner']['api_token']}"}
        invoices = client.get(f"/v1/organizations/{org['id']}/invoices", headers=headers).json()["data"]
        assert [i["kind"] for i in invoices].count("addon") == 1
        slots = client.get(f"/v1/organizations/{org['id']}/addons", headers=headers).json()
        assert next(a for a in slots if a["code"] == "agent_slots")["active_slots"] == 2

    def test_the_preview_needs_the_session_and_the_csrf_header(self, api: Api, client: TestClient) -> None:
        org = make_org(api)
        body = {"action": "add", "quantity": 2}
        assert client.post("/billing/addons/agent_slots/preview", json=body).json()["error"]["code"] == (
            "unauthenticated")
        login(client, "owner@acme.test")
        refused = client.post("/billing/addons/agent_slots/preview", json=body)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")
        ours = client.post("/billing/addons/agent_slots/preview", json=body,
                           headers={"X-CSRF-Token": page_csrf(client)})
        assert ours.status_code == 200
        api_view = client.post(f"/v1/organizations/{org['id']}/addons/agent_slots/preview", json=body,
                               headers={"Authorization": f"Bearer {org['owner']['api_token']}"}).json()
        assert {k: v for k, v in ours.json().items() if k != "display"} == api_view
        assert ours.json()["display"]["new_monthly_total"] == "$164.00"

    def test_logout_needs_the_token_and_ends_the_session(self, api: Api, client: TestClient) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        old = client.cookies[COOKIE]
        assert client.post("/logout", follow_redirects=False).status_code == 403
        response = client.post("/logout", data={"csrf_token": page_csrf(client)}, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/login?notice=signed-out")
        assert "You&#39;ve been signed out." in client.get(response.headers["location"]).text
        client.cookies.set(COOKIE, old)
        assert client.get("/agents", follow_redirects=False).headers["location"] == "/login?next=%2Fagents"


class TestInvitation:
    def test_an_invited_person_sets_a_password_and_is_signed_in(self, api: Api, client: TestClient) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        invited = client.post("/team/invitations", data={"email": "new@acme.test", "role": "member",
                                                         "csrf_token": page_csrf(client, "/team")})
        link = re.search(r"/invitations/(inv_[\w-]+)", invited.text)
        assert link is not None
        client.cookies.clear()
        form = client.get(link.group(0))
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf is not None
        response = client.post(link.group(0), data={"name": "Nia New", "password": "a-long-password",
                                                    "csrf_token": csrf.group(1)}, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/agents")
        assert "Nia New" in client.get("/agents").text
        client.cookies.clear()
        assert login(client, "new@acme.test", "a-long-password").status_code == 303


def test_root_goes_to_sign_in_or_the_add_ons(api: Api, client: TestClient) -> None:
    make_org(api)
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    login(client, "owner@acme.test")
    assert client.get("/", follow_redirects=False).headers["location"] == "/billing/addons"


class TestSignInRateLimit:
    """Failed sign-ins are counted in the database per email and per client address (15 minutes)."""

    def test_an_account_locks_after_ten_failures_even_for_the_right_password(self, api: Api,
                                                                              client: TestClient) -> None:
        make_org(api)
        for _ in range(10):
            assert login(client, "owner@acme.test", "wrong-password").status_code == 401
        refused = login(client, "owner@acme.test")
        assert refused.status_code == 429
        assert "Too many sign-in attempts" in refused.text
        assert 0 < int(refused.headers["Retry-After"]) <= 15 * 60
        assert login(client, "someone-else@acme.test", "x").status_code == 401  # other accounts unaffected
        api.clock_to("2026-11-15T09:16:00Z")  # the failures were at the clock's start, 09:00
        assert login(client, "owner@acme.test").status_code == 303

    def test_one_address_trying_many_accounts_is_stopped(self, api: Api, client: TestClient) -> None:
        make_org(api)
        for i in range(50):
            assert login(client, f"guess{i}@acme.test", "wrong-password").status_code == 401
        assert login(client, "owner@acme.test").status_code == 429
