"""PUT …/credits/auto-recharge (SPEC §11): who may change it, what enabling needs, the bounds of the
settings, and the recharge it queues at once when the balance is already below the threshold."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.conftest import START as NOW
from tests.credit_support import (
    DISABLED_MESSAGE,
    account,
    auto_recharge,
    credits,
    jobs_of,
    remove_card,
    set_account,
    set_balances,
    set_subscription_status,
)
from tests.factories import Api, Org, error_of


@pytest.fixture
def org(api: Api) -> Org:
    return api.create_org(plan="pro")


def saved(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["message"] == "Auto-recharge settings updated."
    settings: dict[str, Any] = body["auto_recharge"]
    return settings


class TestSettings:
    def test_enable_with_settings(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=0, topup=5000)
        settings = saved(auto_recharge(org, enabled=True, threshold=250, max_per_month=4))
        assert settings == {"enabled": True, "threshold": 250, "max_per_month": 4, "used_this_month": 0,
                            "last_recharged_at": None, "disabled_reason": None,
                            "pack": {"credits": 1000, "price": 2000, "currency": "usd"}}
        assert credits(org)["auto_recharge"] == settings
        assert jobs_of(engine, org) == []  # well above the threshold: nothing to recharge

    def test_omitted_settings_are_kept_and_the_defaults_are_100_and_1(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=0, topup=5000)
        first = saved(auto_recharge(org, enabled=True))
        assert (first["threshold"], first["max_per_month"]) == (100, 1)
        saved(auto_recharge(org, enabled=True, threshold=0, max_per_month=100))
        off = saved(auto_recharge(org, enabled=False))
        assert (off["enabled"], off["threshold"], off["max_per_month"]) == (False, 0, 100)

    @pytest.mark.parametrize("body", [
        {"enabled": True, "threshold": -1}, {"enabled": True, "max_per_month": 0},
        {"enabled": True, "max_per_month": 101}, {"threshold": 100}, {"enabled": "yes"},
        {"enabled": True, "threshold": "100"}, {"enabled": True, "threshold": 1.5},
        {"enabled": True, "surprise": 1},
    ])
    def test_bounds(self, org: Org, body: dict[str, Any]) -> None:
        error_of(org.put("/credits/auto-recharge", body), 422, "invalid_request")
        assert credits(org)["auto_recharge"]["enabled"] is False

    @pytest.mark.parametrize("role", ["admin", "member"])
    def test_owner_only(self, org: Org, role: str) -> None:
        user = org.add_member(role)
        for enabled in (True, False):
            response = org.put("/credits/auto-recharge", {"enabled": enabled}, token=user["api_token"])
            error = error_of(response, 403, "owner_only")
            assert error["message"] == "Only the organization owner can manage auto-recharge."

    def test_enabling_needs_an_active_subscription(self, api: Api) -> None:
        free = api.create_org(plan="free")
        error = error_of(auto_recharge(free, enabled=True), 409, "subscription_required")
        assert error["message"] == "An active subscription is required to enable auto-recharge."
        assert saved(auto_recharge(free, enabled=False, threshold=50))["threshold"] == 50  # turning it off is fine

    def test_enabling_while_unpaid_needs_payment_first(self, org: Org, engine: Engine) -> None:
        set_subscription_status(engine, org, "unpaid")
        error_of(auto_recharge(org, enabled=True), 402, "payment_required")

    def test_enabling_needs_a_card(self, org: Org, engine: Engine) -> None:
        remove_card(engine, org)
        error = error_of(auto_recharge(org, enabled=True), 409, "payment_method_required")
        assert error["message"] == "A payment method is required to enable auto-recharge."
        assert saved(auto_recharge(org, enabled=False))["enabled"] is False

    def test_another_organization_is_not_found(self, api: Api, org: Org) -> None:
        other = api.create_org(plan="pro")
        error_of(org.put("/credits/auto-recharge", {"enabled": True}, token=other.token), 404, "not_found")


class TestQueuesARechargeAtOnce:
    def test_enabling_below_the_threshold_queues_one_recharge(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=30, topup=40)
        saved(auto_recharge(org, enabled=True, threshold=100))
        [job] = jobs_of(engine, org)
        assert job.kind == "credit_recharge" and account(engine, org).recharge_job_id == job.id
        saved(auto_recharge(org, enabled=True, threshold=500))  # saving again: still one in flight
        assert [j.id for j in jobs_of(engine, org)] == [job.id]

    def test_at_the_threshold_is_not_below_it(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=0, topup=100)
        saved(auto_recharge(org, enabled=True, threshold=100))
        assert jobs_of(engine, org) == []

    def test_disabled_queues_nothing(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=0, topup=0)
        saved(auto_recharge(org, enabled=False, threshold=100))
        assert jobs_of(engine, org) == []

    def test_not_at_the_cap(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=0, topup=0)
        set_account(engine, org, recharges_in_period=2)
        saved(auto_recharge(org, enabled=True, max_per_month=2))
        assert jobs_of(engine, org) == []
        saved(auto_recharge(org, enabled=True, max_per_month=3))
        assert len(jobs_of(engine, org)) == 1

    def test_re_enabling_starts_afresh(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=0, topup=10)
        set_account(engine, org, recharge_enabled=False, recharge_failures=3, recharge_failed_at=NOW,
                    recharge_disabled_reason=DISABLED_MESSAGE)
        assert credits(org)["auto_recharge"]["disabled_reason"] == DISABLED_MESSAGE
        settings = saved(auto_recharge(org, enabled=True))
        assert settings["disabled_reason"] is None and settings["enabled"] is True
        row = account(engine, org)
        assert (row.recharge_failures, row.recharge_failed_at) == (0, None)
        assert len(jobs_of(engine, org)) == 1  # the hour's wait after a failure is forgotten too

    def test_saving_while_enabled_keeps_the_hour_after_a_failure(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=0, topup=10)
        saved(auto_recharge(org, enabled=True))
        with engine.begin() as conn:  # as the worker leaves it after a decline, at the current billing time
            conn.execute(text("delete from jobs where org_id = :o"), {"o": org.id})
        set_account(engine, org, recharge_job_id=None, recharge_failures=1, recharge_failed_at=NOW)
        saved(auto_recharge(org, enabled=True, threshold=200))
        assert jobs_of(engine, org) == [] and account(engine, org).recharge_failures == 1
