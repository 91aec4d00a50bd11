"""Test helpers that drive slotwise the way its users do: through the HTTP API."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response

_counter = itertools.count(1)

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
INSUFFICIENT_CARD = "4000000000009995"


@dataclass
class Org:
    """An organization as its Owner sees it through the API."""

    api: Api
    id: str
    owner_id: str
    token: str

    @property
    def path(self) -> str:
        return f"/v1/organizations/{self.id}"

    def get(self, suffix: str = "", token: str | None = None) -> Response:
        return self.api.client.get(self.path + suffix, headers=self.api.bearer(token or self.token))

    def post(self, suffix: str, body: Any = None, token: str | None = None, key: str | None = None) -> Response:
        headers = self.api.bearer(token or self.token)
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.api.client.post(self.path + suffix, json=body, headers=headers)

    def put(self, suffix: str, body: Any, token: str | None = None) -> Response:
        return self.api.client.put(self.path + suffix, json=body, headers=self.api.bearer(token or self.token))

    def delete(self, suffix: str, token: str | None = None) -> Response:
        return self.api.client.delete(self.path + suffix, headers=self.api.bearer(token or self.token))

    def summary(self) -> dict[str, Any]:
        response = self.get()
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def capacity(self, resource: str) -> dict[str, int]:
        cap: dict[str, int] = self.summary()["capacity"][resource]
        return cap

    def add_slots(self, addon: str, quantity: int, **kw: Any) -> Response:
        return self.post(f"/addons/{addon}/add", {"quantity": quantity}, **kw)

    def remove_slots(self, addon: str, quantity: int | None = None, **kw: Any) -> Response:
        body = {"all": True} if quantity is None else {"quantity": quantity}
        return self.post(f"/addons/{addon}/remove", body, **kw)

    def create_agents(self, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            response = self.post("/agents", {"name": f"Agent {next(_counter)}"})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        return ids

    def add_member(self, role: str = "member") -> dict[str, Any]:
        return self.api.add_user(self.id, role=role)

    def items(self, suffix: str, token: str | None = None) -> list[dict[str, Any]]:
        """Every item of a paged list (``/agents``, ``/members``, …), following its pages."""
        found: list[dict[str, Any]] = []
        params: dict[str, str | int] = {"limit": 100}
        while True:
            response = self.api.client.get(self.path + suffix, params=params,
                                           headers=self.api.bearer(token or self.token))
            assert response.status_code == 200, response.text
            page: dict[str, Any] = response.json()
            found += page["data"]
            if not page["has_more"]:
                return found
            params["starting_after"] = page["data"][-1]["id"]

    def invoices(self) -> list[dict[str, Any]]:
        return self.items("/invoices")


class Api:
    def __init__(self, client: TestClient, operator_key: str) -> None:
        self.client = client
        self.operator_key = operator_key

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def operator(self, path: str, body: Any) -> Response:
        return self.client.post(f"/v1/operator{path}", json=body, headers=self.bearer(self.operator_key))

    def create_org(self, plan: str = "pro", card: str | None = None, **extra: Any) -> Org:
        n = next(_counter)
        body = {"name": f"Org {n}", "owner_email": f"owner{n}@example.test", "plan": plan, **extra}
        if card is not None:
            body["card_number"] = card
        response = self.operator("/organizations", body)
        assert response.status_code == 201, response.text
        data = response.json()
        return Org(self, data["id"], data["owner"]["id"], data["owner"]["api_token"])

    def add_user(self, org_id: str, role: str = "member", **extra: Any) -> dict[str, Any]:
        n = next(_counter)
        response = self.operator(f"/organizations/{org_id}/users",
                                 {"email": f"user{n}@example.test", "role": role, **extra})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def clock_to(self, to: str) -> dict[str, Any]:
        response = self.operator("/clock", {"to": to})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def advance(self, days: int) -> dict[str, Any]:
        response = self.operator("/clock", {"advance_days": days})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


# --- helpers for the API and scenario suites ----------------------------------------------------

def prorated(quantity: int, unit_price: int, period_start: str, period_end: str, today: str) -> int:
    """SPEC §4 from first principles: round_half_up(N × price × days_left / days_in_period).

    Dates are ISO ``YYYY-MM-DD`` (or longer ISO strings; only the date part counts).
    """
    from datetime import date

    start, end, now = (date.fromisoformat(d[:10]) for d in (period_start, period_end, today))
    days, left = (end - start).days, (end - now).days
    numerator, denominator = abs(quantity * unit_price * left), days
    rounded = (2 * numerator + denominator) // (2 * denominator)  # halves away from zero
    return rounded if quantity * unit_price * left >= 0 else -rounded


def preview(org: Org, addon: str, action: str, quantity: int | None = None, **kw: Any) -> Response:
    body: dict[str, Any] = {"action": action}
    body.update({"all": True} if quantity is None else {"quantity": quantity})
    return org.post(f"/addons/{addon}/preview", body, **kw)


def change_plan(org: Org, plan: str, **kw: Any) -> Response:
    return org.post("/subscription", {"plan": plan}, **kw)


def set_card(org: Org, card_number: str, **kw: Any) -> Response:
    return org.put("/payment-method", {"card_number": card_number}, **kw)


def invite(org: Org, email: str | None = None, role: str = "member", **kw: Any) -> Response:
    return org.post("/invitations", {"email": email or f"invitee{next(_counter)}@example.test", "role": role}, **kw)


def billing_run(api: Api) -> dict[str, Any]:
    response = api.operator("/billing/run", None)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error_of(response: Response, status: int, code: str) -> dict[str, Any]:
    """The ``error`` object of a refusal, after checking its status and code."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    return error


def assert_invariant(org: Org) -> None:
    """SPEC §4, per resource: used ≤ plan + renewal slots ≤ plan + active slots."""
    for resource, cap in org.summary()["capacity"].items():
        assert cap["used"] <= cap["renewal_total"] <= cap["total"], (resource, cap)
