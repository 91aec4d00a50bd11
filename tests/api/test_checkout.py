"""``POST /v1/organizations/{org}/checkout`` {plan} → {url} (SPEC §12): the Owner's address of the
checkout page for a self-serve paid plan. Asking for it changes nothing; the page does the rest
(``tests/scenarios/test_checkout_cycle.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import Api, Org, error_of


def checkout(org: Org, plan: str, **kw: Any) -> Any:
    return org.post("/checkout", {"plan": plan}, **kw)


class TestCheckoutUrl:
    def test_the_owner_gets_the_checkout_page_of_the_plan(self, api: Api) -> None:
        org = api.create_org("free")
        before = org.summary()
        answer = checkout(org, "pro")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"url": "http://testserver/billing/checkout?plan=pro", "plan": "pro"}
        assert org.summary() == before and org.invoices() == []  # nothing is charged or changed yet

    def test_an_upgrade_can_be_checked_out_too(self, api: Api) -> None:
        org = api.create_org("starter")
        assert checkout(org, "business").json()["url"].endswith("/billing/checkout?plan=business")

    def test_the_plan_already_in_force_is_refused_with_a_stable_code(self, api: Api) -> None:
        org = api.create_org("pro")
        error = error_of(checkout(org, "pro"), 409, "already_on_plan")
        assert error["message"] == "You are already on Pro."

    @pytest.mark.parametrize(("plan", "status", "code"), [
        ("free", 409, "plan_unavailable"),  # nothing to pay
        ("enterprise", 409, "plan_unavailable"),  # custom terms, through sales
        ("platinum", 422, "invalid_request"),
    ])
    def test_only_a_self_serve_paid_plan_can_be_checked_out(self, api: Api, plan: str, status: int,
                                                            code: str) -> None:
        org = api.create_org("starter")
        error_of(checkout(org, plan), status, code)


class TestWhoMayCheckOut:
    @pytest.mark.parametrize("role", ["admin", "member"])
    def test_only_the_owner(self, api: Api, role: str) -> None:
        org = api.create_org("pro")  # Free has no team to be an admin or member of
        user = api.add_user(org.id, role=role)
        error_of(checkout(org, "business", token=user["api_token"]), 403, "owner_only")

    def test_another_organization_is_not_found(self, api: Api) -> None:
        org, other = api.create_org("free"), api.create_org("free")
        error_of(checkout(org, "pro", token=other.token), 404, "not_found")

    def test_no_token_is_unauthenticated(self, api: Api) -> None:
        org = api.create_org("free")
        answer = api.client.post(f"/v1/organizations/{org.id}/checkout", json={"plan": "pro"})
        error_of(answer, 401, "unauthenticated")


class TestIdempotency:
    def test_a_retry_with_the_same_key_replays_the_answer(self, api: Api) -> None:
        org = api.create_org("free")
        first = checkout(org, "pro", key="checkout-1")
        again = checkout(org, "pro", key="checkout-1")
        assert again.status_code == 200 and again.json() == first.json()
        assert again.headers.get("Idempotent-Replayed") == "true"

    def test_the_same_key_for_another_plan_is_a_conflict(self, api: Api) -> None:
        org = api.create_org("free")
        assert checkout(org, "pro", key="checkout-2").status_code == 200
        error_of(checkout(org, "business", key="checkout-2"), 409, "idempotency_conflict")

    def test_a_refusal_is_replayed_as_well(self, api: Api) -> None:
        org = api.create_org("pro")
        error_of(checkout(org, "pro", key="checkout-3"), 409, "already_on_plan")
        replay = checkout(org, "pro", key="checkout-3")
        assert replay.status_code == 409 and replay.headers.get("Idempotent-Replayed") == "true"
