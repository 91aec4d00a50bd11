"""Cancel at period end and resume across whole billing cycles (SPEC §12), moving the simulated clock.

A canceled subscription stays active to the end of the period paid for; at that instant it becomes
``canceled`` and the organization is on Free: nothing billed, add-on slots ended, unused plan credits
expired and Free's monthly credits started, top-up credits kept, nothing deleted. Resumed before the
end, it renews as if never canceled. The sweep's batched path runs the renewal here (the operator
clock); a request that reaches the organization first runs the one-organization path, checked too.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from slotwise.models import ClockState, Subscription
from tests.factories import Api, Org, error_of

PRO, AGENT = 15000, 700


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def credits(org: Org) -> dict[str, Any]:
    return ok(org.get("/credits"))


def subscriptions_of(engine: Engine, org: Org) -> list[Subscription]:
    with Session(engine) as db:
        return list(db.scalars(select(Subscription).where(Subscription.org_id == org.id)))


def _pro_with_slots_and_top_up(api: Api) -> Org:
    org = api.create_org("pro")  # Nov 15 09:00 → Dec 15 09:00
    ok(org.add_slots("agent_slots", 2))
    ok(org.post("/credits/top-up", {"packs": 1}), 201)
    org.create_agents(1)
    return org


class TestCancelAtPeriodEnd:
    @pytest.mark.parametrize("touch", ["sweep", "first request"])
    def test_active_to_the_end_then_free_and_canceled(self, api: Api, engine: Engine, touch: str) -> None:
        org = _pro_with_slots_and_top_up(api)
        api.clock_to("2026-11-25T10:00:00Z")
        ok(org.post("/subscription/cancel"))
        invoices_before = org.invoices()

        api.clock_to("2026-12-15T08:59:00Z")  # the last minute of the paid period
        summary = org.summary()
        assert summary["plan"]["code"] == "pro"
        assert summary["subscription"]["status"] == "active"
        assert summary["subscription"]["cancel_at_period_end"] is True
        assert summary["capacity"]["agents"]["total"] == 5 + 2
        assert credits(org)["plan"]["allowance"] == PRO

        if touch == "sweep":
            api.clock_to("2026-12-15T09:00:00Z")
        else:  # the clock moves without a sweep; the Owner's next request runs the renewal first
            with Session(engine) as db, db.begin():
                state = db.get_one(ClockState, 1)
                state.now = state.now.replace(day=16)
        summary = org.summary()
        assert summary["plan"]["code"] == "free"
        assert summary["subscription"] is None
        agents = summary["capacity"]["agents"]
        assert (agents["included"], agents["active_slots"], agents["renewal_slots"], agents["used"]) == (1, 0, 0, 1)
        assert summary["monthly_total"] == 0
        (sub,) = subscriptions_of(engine, org)
        assert sub.status == "canceled" and sub.canceled_at is not None
        assert sub.canceled_at.isoformat().startswith("2026-12-15T09:00:00")
        assert org.invoices() == invoices_before  # nothing billed at the end, nothing deleted
        balance = credits(org)
        assert balance["plan"]["allowance"] == 100 and balance["plan"]["remaining"] == 100  # Free's month
        assert balance["topup"]["remaining"] == 1000  # top-up credits stay
        assert len(org.items("/agents")) == 1
        addons = {a["code"]: a for a in ok(org.get("/addons"))}
        assert addons["agent_slots"]["active_slots"] == 0
        error_of(org.post("/subscription/resume"), 409, "subscription_required")  # too late: it ended

        api.clock_to("2027-02-20T00:00:00Z")  # months later: still Free, never billed
        assert org.invoices() == invoices_before
        assert credits(org)["plan"]["allowance"] == 100

    def test_resumed_before_the_end_it_renews_normally(self, api: Api, engine: Engine) -> None:
        org = _pro_with_slots_and_top_up(api)
        api.clock_to("2026-12-01T00:00:00Z")
        ok(org.post("/subscription/cancel"))
        api.clock_to("2026-12-10T00:00:00Z")
        ok(org.post("/subscription/resume"))
        api.clock_to("2026-12-15T09:00:00Z")
        summary = org.summary()
        assert summary["plan"]["code"] == "pro" and summary["subscription"]["status"] == "active"
        assert summary["subscription"]["current_period"]["start"].startswith("2026-12-15T09:00:00")
        renewal = org.invoices()[0]
        assert renewal["kind"] == "renewal" and renewal["status"] == "paid"
        assert [(line["code"], line["quantity"], line["amount"]) for line in renewal["lines"]] == [
            ("pro", 1, PRO), ("agent_slots", 2, 2 * AGENT)]
        assert renewal["total"] == PRO + 2 * AGENT
        balance = credits(org)
        assert balance["plan"]["allowance"] == PRO and balance["topup"]["remaining"] == 1000
        (sub,) = subscriptions_of(engine, org)
        assert sub.status == "active" and sub.canceled_at is None
