"""One-shot messages after a redirect, kept on the signed-in session (never in a cookie), on SQLite
and PostgreSQL: shown once, never taken from the request, links only within the site."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from slotwise.models import WebSession
from slotwise.web.render import Flash, is_site_path
from tests.factories import Api
from tests.web.test_sessions import login, make_org, page_csrf

OLD_COOKIE = "slotwise_flash"


def _cookie(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


class TestOldCookie:
    @pytest.mark.parametrize("value", [_cookie([]), _cookie(None), _cookie(1), _cookie("x"), "%%%", ""])
    def test_a_malformed_flash_cookie_is_ignored(self, value: str, api: Api, client: TestClient) -> None:
        make_org(api)
        client.cookies.set(OLD_COOKIE, value)
        assert client.get("/login").status_code == 200
        login(client, "owner@acme.test")
        client.cookies.set(OLD_COOKIE, value)
        for path in ("/billing/addons", "/billing", "/team", "/agents", "/billing/plans"):
            assert client.get(path).status_code == 200, path

    def test_a_forged_flash_cookie_shows_nothing(self, api: Api, client: TestClient) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        client.cookies.set(OLD_COOKIE, _cookie({
            "kind": "error", "text": "Your card was declined. Call +1 555 0100 now.", "detail": None,
            "link_href": "javascript:alert(document.cookie)", "link_label": "Fix it"}))
        page = client.get("/billing/addons").text
        assert "Call +1 555 0100" not in page and "javascript:" not in page and "Fix it" not in page


class TestServerSideFlash:
    def test_a_change_shows_its_message_once(self, api: Api, client: TestClient) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        response = client.post("/billing/addons/agent_slots/add",
                               data={"quantity": "2", "csrf_token": page_csrf(client)}, follow_redirects=False)
        assert response.status_code == 303
        assert all(not c.startswith(OLD_COOKIE) for c in response.headers.get_list("set-cookie"))
        shown = client.get("/billing/addons").text
        assert "Slots added successfully." in shown and 'href="/billing/invoices/' in shown
        assert "Slots added successfully." not in client.get("/billing/addons").text

    def test_a_message_belongs_to_its_own_session(self, api: Api, client: TestClient) -> None:
        make_org(api)
        other = TestClient(client.app)
        login(other, "owner@acme.test")
        login(client, "owner@acme.test")
        client.post("/billing/addons/agent_slots/add", data={"quantity": "1", "csrf_token": page_csrf(client)},
                    follow_redirects=False)
        assert "Slots added successfully." not in other.get("/billing/addons").text
        assert "Slots added successfully." in client.get("/billing/addons").text

    def test_a_stored_link_off_the_site_is_not_shown(
        self, api: Api, client: TestClient, sessions: sessionmaker[Session]
    ) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        for href in ("javascript:alert(1)", "//evil.example/x", "https://evil.example/", "/\\evil.example"):
            with sessions.begin() as db:
                db.execute(update(WebSession).values(flash=json.dumps(
                    {"kind": "error", "text": "Check this.", "detail": None, "link_href": href,
                     "link_label": "Open it"})))
            page = client.get("/billing/addons").text
            assert "Check this." in page
            assert "Open it" not in page and "evil.example" not in page and "javascript:" not in page

    @pytest.mark.parametrize("stored", ["[]", "null", "1", "{", json.dumps({"kind": "alert", "text": "x"}),
                                        json.dumps({"kind": "info", "text": ["x"]})])
    def test_a_malformed_stored_message_is_dropped(
        self, stored: str, api: Api, client: TestClient, sessions: sessionmaker[Session]
    ) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        with sessions.begin() as db:
            db.execute(update(WebSession).values(flash=stored))
        assert client.get("/billing/addons").status_code == 200


class TestWithoutASession:
    def test_sign_out_says_so(self, api: Api, client: TestClient) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        out = client.post("/logout", data={"csrf_token": page_csrf(client)})
        assert "You&#39;ve been signed out." in out.text

    def test_a_refused_invitation_says_why(self, api: Api, client: TestClient) -> None:
        form = client.get("/login")
        csrf = client.cookies["slotwise_login_csrf"]
        assert form.status_code == 200
        refused = client.post("/invitations/inv_no-such-invitation",
                              data={"name": "Nia", "password": "a-long-password", "csrf_token": csrf})
        assert refused.url.path == "/login"
        assert "This invitation is no longer valid." in refused.text

    @pytest.mark.parametrize("code", ["<script>alert(1)</script>", "Call+555", "signed-out%00", "__class__"])
    def test_only_a_known_notice_code_shows_anything(self, code: str, client: TestClient) -> None:
        page = client.get(f"/login?notice={code}")
        assert page.status_code == 200
        assert 'class="flash' not in page.text and "<script>alert" not in page.text


def test_is_site_path() -> None:
    assert all(is_site_path(p) for p in ("/", "/billing/invoices/inv_1", "/billing#payment-method", "/a?b=c"))
    assert not any(is_site_path(p) for p in (None, "", "billing", "//evil", "/\\evil", "javascript:x",
                                             "https://x", "/a\x00b", "/a\nb"))
    assert Flash("info", "x").link_href is None
