"""POST …/credits/top-up and GET …/credits (SPEC §11): Top Up Now charges N packs at once on one invoice
and the credits land in the top-up pool only if it is paid; the overview any member may read."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from tests.credit_support import (
    account,
    credits,
    ledger,
    ledger_matches_balances,
    remove_card,
    set_balances,
    set_subscription_status,
)
from tests.factories import DECLINED_CARD, GOOD_CARD, Api, Org, error_of, set_card

PACK_CREDITS, PACK_PRICE = 1000, 2000


@pytest.fixture
def org(api: Api) -> Org:
    return api.create_org(plan="pro")


def top_up(org: Org, packs: Any, **kw: Any) -> Any:
    return org.post("/credits/top-up", {"packs": packs}, **kw)


class TestTopUp:
    def test_packs_are_charged_on_one_invoice_and_land_in_the_top_up_pool(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=40, topup=5)
        invoices_before = len(org.invoices())
        response = top_up(org, 3)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["message"] == "Credits added successfully."
        assert body["balance"] == {"plan": 40, "topup": 3005, "total": 3045}
        invoice = body["invoice"]
        assert (invoice["status"], invoice["kind"], invoice["total"], invoice["currency"]) == ("paid", "topup", 6000,
                                                                                               "usd")
        [line] = invoice["lines"]
        assert line["description"] == "Top-up credits × 3,000"
        assert (line["kind"], line["quantity"], line["unit_price"], line["amount"]) == ("credit", 3, PACK_PRICE, 6000)
        assert len(org.invoices()) == invoices_before + 1
        assert org.get(f"/invoices/{invoice['id']}").json() == invoice
        [entry] = ledger(engine, org, "topup")
        assert (entry.topup_delta, entry.plan_delta, entry.invoice_id) == (3000, 0, invoice["id"])
        assert ledger_matches_balances(engine, org)
        overview = credits(org)
        assert (overview["topup"]["remaining"], overview["plan"]["remaining"], overview["total"]) == (3005, 40, 3045)

    def test_one_pack_and_a_hundred(self, org: Org) -> None:
        one = top_up(org, 1).json()
        assert one["invoice"]["lines"][0]["description"] == "Top-up credits × 1,000"
        hundred = top_up(org, 100).json()
        assert hundred["invoice"]["total"] == 100 * PACK_PRICE
        assert hundred["invoice"]["lines"][0]["description"] == "Top-up credits × 100,000"
        assert hundred["invoice"]["number"] == one["invoice"]["number"] + 1
        assert hundred["balance"]["topup"] - one["balance"]["topup"] == 100 * PACK_CREDITS

    @pytest.mark.parametrize("packs", [0, 101, -1, "2", 1.5, None])
    def test_packs_must_be_a_whole_number_from_1_to_100(self, org: Org, packs: Any) -> None:
        error_of(top_up(org, packs), 422, "invalid_request")
        error_of(org.post("/credits/top-up", {}), 422, "invalid_request")
        assert credits(org)["topup"]["remaining"] == 0

    @pytest.mark.parametrize("role", ["admin", "member"])
    def test_owner_only(self, org: Org, role: str) -> None:
        user = org.add_member(role)
        error = error_of(top_up(org, 1, token=user["api_token"]), 403, "owner_only")
        assert error["message"] == "Credit purchases are Owner Only. Ask your organization owner to make the change."

    def test_needs_an_active_subscription(self, api: Api) -> None:
        free = api.create_org(plan="free")
        error_of(top_up(free, 1), 409, "subscription_required")
        assert free.invoices() == []

    def test_an_unpaid_subscription_must_be_paid_first(self, org: Org, engine: Engine) -> None:
        set_subscription_status(engine, org, "unpaid")
        error = error_of(top_up(org, 1), 402, "payment_required")
        assert error["message"] == "A renewal payment failed. Update your payment method to resume."

    def test_past_due_may_still_buy(self, org: Org, engine: Engine) -> None:
        set_subscription_status(engine, org, "past_due")
        assert top_up(org, 1).status_code == 201

    def test_needs_a_card_on_file(self, org: Org, engine: Engine) -> None:
        remove_card(engine, org)
        error = error_of(top_up(org, 1), 409, "payment_method_required")
        assert error["message"] == "A payment method is required to buy credits."

    def test_a_declined_card_changes_nothing(self, org: Org, engine: Engine) -> None:
        before = org.invoices()
        assert set_card(org, DECLINED_CARD).status_code == 200
        error = error_of(top_up(org, 2), 402, "payment_failed")
        assert error["decline_code"] == "card_declined"
        assert org.invoices() == before
        assert account(engine, org).topup_balance == 0 and ledger(engine, org, "topup") == []
        assert set_card(org, GOOD_CARD).status_code == 200
        paid = top_up(org, 2).json()["invoice"]
        assert paid["number"] == before[0]["number"] + 1  # the declined attempt took no number

    def test_idempotency_key_replays_the_first_answer(self, org: Org, engine: Engine) -> None:
        first = top_up(org, 2, key="topup-1")
        again = top_up(org, 2, key="topup-1")
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json() and again.headers.get("idempotent-replayed") == "true"
        assert account(engine, org).topup_balance == 2000 and len(ledger(engine, org, "topup")) == 1
        error_of(top_up(org, 3, key="topup-1"), 409, "idempotency_conflict")

    def test_a_declined_purchase_can_be_retried_with_the_same_key(self, org: Org, engine: Engine) -> None:
        set_card(org, DECLINED_CARD)
        error_of(top_up(org, 1, key="retry-me"), 402, "payment_failed")
        set_card(org, GOOD_CARD)
        assert top_up(org, 1, key="retry-me").status_code == 201
        assert account(engine, org).topup_balance == 1000


class TestOverview:
    def test_shape_and_defaults(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=120, topup=30)
        body = credits(org)
        assert set(body) == {"plan", "topup", "total", "used_this_period", "costs", "auto_recharge"}
        assert body["plan"]["remaining"] == 120 and set(body["plan"]) == {"allowance", "remaining", "refills_at"}
        assert body["topup"] == {"remaining": 30} and body["total"] == 150
        assert body["costs"] == {"message": 1, "message_premium": 5, "document": 10, "voice": 2, "tool": 1}
        assert body["auto_recharge"] == {
            "enabled": False, "threshold": 100, "max_per_month": 1, "used_this_month": 0, "last_recharged_at": None,
            "disabled_reason": None, "pack": {"credits": PACK_CREDITS, "price": PACK_PRICE, "currency": "usd"}}

    def test_counts_what_was_used_this_period(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=0, topup=100)
        used = credits(org)["used_this_period"]
        assert org.post("/credits/spend", {"activity": "document", "units": 2, "reference": "doc-1"}).status_code == 200
        after = credits(org)
        assert after["used_this_period"] == used + 20 and after["topup"]["remaining"] == 80

    @pytest.mark.parametrize("role", ["admin", "member"])
    def test_any_member_may_read_it(self, org: Org, role: str) -> None:
        user = org.add_member(role)
        assert org.get("/credits", token=user["api_token"]).status_code == 200

    def test_another_organization_is_not_found(self, api: Api, org: Org) -> None:
        other = api.create_org(plan="pro")
        error_of(org.get("/credits", token=other.token), 404, "not_found")
        error_of(top_up(org, 1, token=other.token), 404, "not_found")
