"""Every page renders for every role on every kind of plan, on both databases (no browser)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.factories import Api
from tests.web.test_sessions import PASSWORD, login

PAGES = ["/billing/addons", "/billing/addons?add=member_slots", "/billing", "/billing/plans", "/team", "/agents"]


@pytest.mark.parametrize("plan", ["free", "starter", "pro", "business"])
def test_every_page_renders_for_every_role(api: Api, client: TestClient, plan: str) -> None:
    created = api.operator("/organizations", {"name": "Acme", "owner_email": "owner@acme.test",
                                              "owner_password": PASSWORD, "plan": plan})
    assert created.status_code == 201, created.text
    org_id = created.json()["id"]
    people = ["owner@acme.test"]
    if plan in ("pro", "business"):
        for role in ("admin", "member"):
            added = api.operator(f"/organizations/{org_id}/users",
                                 {"email": f"{role}@acme.test", "password": PASSWORD, "role": role})
            assert added.status_code == 201, added.text
            people.append(f"{role}@acme.test")
    for email in people:
        client.cookies.clear()
        assert login(client, email).status_code == 303
        for path in PAGES:
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 200, (email, path, response.text[:500])
            assert "<h1" in response.text
        invoices = re.findall(r'href="(/billing/invoices/inv_\w+)"', client.get("/billing").text)
        for path in invoices:
            assert client.get(path).status_code == 200


def test_another_organizations_invoice_is_not_found(api: Api, client: TestClient) -> None:
    other = api.create_org("pro")
    invoice_id = other.invoices()[0]["id"]
    api.operator("/organizations", {"name": "Mine", "owner_email": "me@mine.test", "owner_password": PASSWORD,
                                    "plan": "pro"})
    login(client, "me@mine.test")
    response = client.get(f"/billing/invoices/{invoice_id}")
    assert response.status_code == 404
    assert "Invoice not found" in response.text


def test_pages_send_protective_headers(api: Api, client: TestClient) -> None:
    api.operator("/organizations", {"name": "Acme", "owner_email": "owner@acme.test", "owner_password": PASSWORD,
                                    "plan": "pro"})
    login(client, "owner@acme.test")
    headers = client.get("/billing/addons").headers
    assert headers["cache-control"] == "no-store"
    assert headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in headers["content-security-policy"]


@pytest.mark.parametrize("plan", ["free", "pro"])
def test_paid_agent_pages_render_for_every_role(api: Api, client: TestClient, plan: str) -> None:
    """Billing → Subscriptions for the Owner and Admins (a member is refused, 403), the Agents page's
    Visibility section for everyone, and the public paywall of a paid agent without signing in."""
    created = api.operator("/organizations", {"name": "Acme", "owner_email": "owner@acme.test",
                                              "owner_password": PASSWORD, "plan": plan})
    assert created.status_code == 201, created.text
    org_id = created.json()["id"]
    token = created.json()["owner"]["api_token"]
    agent = client.post(f"/v1/organizations/{org_id}/agents", json={"name": "Support Assistant"},
                        headers=api.bearer(token)).json()["id"]
    paid = client.put(f"/v1/organizations/{org_id}/agents/{agent}/access", headers=api.bearer(token), json={
        "mode": "paid", "paid": {"price": 999, "currency": "usd", "access_days": 30, "message_credits": 500}})
    assert paid.status_code == (200 if plan != "free" else 409), paid.text
    people = {"owner@acme.test": 200}
    if plan == "pro":
        for role, status in (("admin", 200), ("member", 403)):
            added = api.operator(f"/organizations/{org_id}/users",
                                 {"email": f"{role}@acme.test", "password": PASSWORD, "role": role})
            assert added.status_code == 201, added.text
            people[f"{role}@acme.test"] = status
    for email, status in people.items():
        client.cookies.clear()
        assert login(client, email).status_code == 303
        for path, expected in (("/billing/subscriptions", status), (f"/billing/subscriptions?agent={agent}", status),
                               ("/agents", 200)):
            response = client.get(path, follow_redirects=False)
            assert response.status_code == expected, (email, path, response.text[:500])
            assert "<h1" in response.text
        assert "Visibility" in client.get("/agents").text
    client.cookies.clear()
    wall = client.get(f"/pay/{agent}")
    assert wall.status_code == (200 if plan != "free" else 404)
    assert ("This Chatbot is Monetized by the Creator" in wall.text) == (plan != "free")
    assert client.get("/pay/agt_unknown").status_code == 404
