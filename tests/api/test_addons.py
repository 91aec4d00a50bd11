"""Add-ons as SPEC §4 makes them exact: preview = commit, pro-ration, removal at renewal, keep, the
monthly total, the 1000-slot cap, and usage growing while a removal is scheduled."""

from __future__ import annotations

from typing import Any

from tests.factories import (
    Api,
    Org,
    assert_invariant,
    error_of,
    invite,
    preview,
    prorated,
)

AGENT_PRICE, MEMBER_PRICE, PRO_PRICE = 700, 1500, 15000
PERIOD = ("2026-11-15", "2026-12-15")  # the pro org's first period (clock starts 2026-11-15 09:00)


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def addon(org: Org, code: str) -> dict[str, Any]:
    found: dict[str, Any] = next(a for a in org.get("/addons").json() if a["code"] == code)
    return found


class TestPreviewEqualsCommit:
    def test_add(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(org.add_slots("agent_slots", 1))
        api.clock_to("2026-11-29T18:30:00Z")
        quote = ok(preview(org, "agent_slots", "add", 3))
        charge = prorated(3, AGENT_PRICE, *PERIOD, "2026-11-29")
        assert quote["allowed"] is True
        assert (quote["price_per_slot"], quote["quantity"], quote["charge_now"]) == (AGENT_PRICE, 3, charge)
        assert (quote["days_left"], quote["days_in_period"], quote["proration"]) == (16, 30, "16/30")
        assert (quote["current_slots"], quote["new_slots"]) == (1, 4)
        assert (quote["current_capacity"], quote["new_capacity"]) == (6, 9)
        assert quote["current_monthly_total"] == PRO_PRICE + AGENT_PRICE
        assert quote["new_monthly_total"] == PRO_PRICE + 4 * AGENT_PRICE

        done = ok(org.add_slots("agent_slots", 3))
        assert done["message"] == "Slots added successfully."
        invoice = done["invoice"]
        assert invoice["total"] == quote["charge_now"] == sum(line["amount"] for line in invoice["lines"])
        assert invoice["status"] == "paid" and invoice["currency"] == "usd"
        [line] = invoice["lines"]
        assert (line["quantity"], line["unit_price"], line["amount"]) == (3, AGENT_PRICE, charge)
        assert line["proration"] == quote["proration"]
        assert line["period_end"] == invoice["period_end"]
        summary = org.summary()
        assert summary["monthly_total"] == quote["new_monthly_total"]
        assert summary["capacity"]["agents"]["total"] == quote["new_capacity"]
        assert (done["addon"]["active_slots"], done["addon"]["renewal_slots"]) == (4, 4)
        assert done["addon"]["monthly_cost"] == 4 * AGENT_PRICE

    def test_preview_changes_nothing(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(org.add_slots("member_slots", 2))
        before = org.summary()
        ok(preview(org, "member_slots", "add", 5))
        ok(preview(org, "member_slots", "remove", 1))
        ok(preview(org, "member_slots", "remove"))
        assert org.summary() == before
        assert len(org.invoices()) == 2

    def test_remove(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(org.add_slots("member_slots", 4))
        api.clock_to("2026-12-01T00:00:00Z")
        quote = ok(preview(org, "member_slots", "remove", 3))
        assert quote["allowed"] is True and quote["charge_now"] == 0
        assert (quote["current_slots"], quote["new_slots"]) == (4, 1)
        assert (quote["current_capacity"], quote["new_capacity"]) == (7, 4)
        assert quote["new_monthly_total"] == PRO_PRICE + 1 * MEMBER_PRICE
        done = ok(org.remove_slots("member_slots", 3))
        assert done["message"] == "Slots removed successfully."
        assert done["invoice"] is None
        assert done["effective_at"] == quote["effective_at"] == org.summary()["subscription"]["next_billing_date"]
        assert org.summary()["monthly_total"] == quote["new_monthly_total"]
        assert org.capacity("members")["renewal_total"] == quote["new_capacity"]


class TestProration:
    def test_first_day_of_the_period_charges_the_full_month(self, api: Api) -> None:
        org = api.create_org("pro")  # 2026-11-15 09:00, the period's first day
        api.clock_to("2026-11-15T23:59:00Z")
        invoice = ok(org.add_slots("agent_slots", 2))["invoice"]
        assert invoice["total"] == 2 * AGENT_PRICE
        assert invoice["lines"][0]["proration"] == "30/30"

    def test_first_day_of_a_renewed_period_charges_the_full_month(self, api: Api) -> None:
        org = api.create_org("pro")
        api.clock_to("2026-12-15T12:00:00Z")  # renewed at 09:00; the next period has 31 days
        invoice = ok(org.add_slots("member_slots", 1))["invoice"]
        assert invoice["total"] == MEMBER_PRICE
        assert invoice["lines"][0]["proration"] == "31/31"

    def test_last_day_of_the_period(self, api: Api) -> None:
        org = api.create_org("pro")
        api.clock_to("2026-12-14T20:00:00Z")
        invoice = ok(org.add_slots("member_slots", 1))["invoice"]
        assert invoice["total"] == prorated(1, MEMBER_PRICE, *PERIOD, "2026-12-14") == 50

    def test_rounds_once_to_the_nearest_cent(self, api: Api) -> None:
        org = api.create_org("pro")
        api.clock_to("2026-11-16T10:00:00Z")  # 1 × 700 × 29/30 = 676.67 → 677
        assert ok(org.add_slots("agent_slots", 1))["invoice"]["total"] == prorated(
            1, AGENT_PRICE, *PERIOD, "2026-11-16") == 677
        api.clock_to("2026-12-14T10:00:00Z")  # 1 × 700 × 1/30 = 23.33 → 23
        assert ok(org.add_slots("agent_slots", 1))["invoice"]["total"] == prorated(
            1, AGENT_PRICE, *PERIOD, "2026-12-14") == 23
        api.clock_to("2026-12-31T10:00:00Z")  # 31-day period: 1 × 1500 × 15/31 = 725.81 → 726
        invoice = ok(org.add_slots("member_slots", 1))["invoice"]
        assert invoice["total"] == prorated(1, MEMBER_PRICE, "2026-12-15", "2027-01-15", "2026-12-31") == 726
        assert invoice["lines"][0]["proration"] == "15/31"


class TestRemove:
    def test_effective_at_next_billing_date_with_no_money_moved(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(org.add_slots("agent_slots", 3))
        invoices = org.invoices()
        api.clock_to("2026-11-20T00:00:00Z")
        done = ok(org.remove_slots("agent_slots", 2))
        assert done["effective_at"].startswith("2026-12-15T09:00:00")
        assert done["addon"]["active_slots"] == 3 and done["addon"]["renewal_slots"] == 1
        assert done["addon"]["scheduled_removal"] == 2
        assert done["addon"]["effective_at"] == done["effective_at"]
        assert org.invoices() == invoices  # no refund, no credit, no charge
        cap = org.capacity("agents")
        assert (cap["total"], cap["renewal_total"]) == (8, 6)  # capacity stays until renewal
        org.create_agents(6)  # within the renewal capacity

        report = api.clock_to("2026-12-15T09:00:00Z")
        assert len(report["renewed"]) == 1
        cap = org.capacity("agents")
        assert (cap["active_slots"], cap["renewal_slots"], cap["total"]) == (1, 1, 6)
        renewal = org.invoices()[0]
        assert [(line["code"], line["quantity"]) for line in renewal["lines"]] == [("pro", 1), ("agent_slots", 1)]
        assert addon(org, "agent_slots")["effective_at"] is None

    def test_remove_all(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(org.add_slots("member_slots", 2))
        ok(org.add_slots("agent_slots", 1))
        done = ok(org.remove_slots("member_slots"))
        assert (done["addon"]["active_slots"], done["addon"]["renewal_slots"]) == (2, 0)
        assert done["addon"]["monthly_cost"] == 0
        assert org.summary()["monthly_total"] == PRO_PRICE + AGENT_PRICE
        api.clock_to("2026-12-15T09:00:00Z")
        assert addon(org, "member_slots")["active_slots"] == 0
        assert org.capacity("members")["total"] == 3
        renewal = org.invoices()[0]
        assert [line["code"] for line in renewal["lines"]] == ["pro", "agent_slots"]
        assert renewal["total"] == PRO_PRICE + AGENT_PRICE

    def test_keep_undoes_a_scheduled_removal(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(org.add_slots("agent_slots", 3))
        ok(org.remove_slots("agent_slots", 2))
        assert org.summary()["monthly_total"] == PRO_PRICE + AGENT_PRICE
        invoices = org.invoices()
        kept = ok(org.post("/addons/agent_slots/keep"))
        assert (kept["active_slots"], kept["renewal_slots"], kept["scheduled_removal"]) == (3, 3, 0)
        assert kept["effective_at"] is None
        assert org.summary()["monthly_total"] == PRO_PRICE + 3 * AGENT_PRICE
        assert org.invoices() == invoices  # free of charge
        api.clock_to("2026-12-15T09:00:00Z")
        line = org.invoices()[0]["lines"][1]
        assert (line["code"], line["quantity"], line["amount"]) == ("agent_slots", 3, 3 * AGENT_PRICE)

    def test_keep_after_remove_all(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(org.add_slots("agent_slots", 2))
        ok(org.remove_slots("agent_slots"))
        ok(org.post("/addons/agent_slots/keep"))
        assert org.capacity("agents")["renewal_slots"] == 2

    def test_adding_while_a_removal_is_scheduled_keeps_the_removal(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(org.add_slots("agent_slots", 3))
        ok(org.remove_slots("agent_slots", 2))
        ok(org.add_slots("agent_slots", 1))
        cap = org.capacity("agents")
        assert (cap["active_slots"], cap["renewal_slots"]) == (4, 2)
        assert_invariant(org)


class TestMonthlyTotal:
    def test_plan_plus_renewal_slots_times_price(self, api: Api) -> None:
        org = api.create_org("pro")
        assert org.summary()["monthly_total"] == PRO_PRICE
        ok(org.add_slots("agent_slots", 3))
        ok(org.add_slots("member_slots", 2))
        assert org.summary()["monthly_total"] == PRO_PRICE + 3 * AGENT_PRICE + 2 * MEMBER_PRICE
        ok(org.remove_slots("agent_slots", 1))  # renewal slots count, not active ones
        summary = org.summary()
        assert summary["monthly_total"] == PRO_PRICE + 2 * AGENT_PRICE + 2 * MEMBER_PRICE
        assert summary["currency"] == "usd"
        addons = {a["code"]: a for a in org.get("/addons").json()}
        assert addons["agent_slots"]["monthly_cost"] == 2 * AGENT_PRICE
        assert addons["member_slots"]["monthly_cost"] == 2 * MEMBER_PRICE
        # It is exactly what the next renewal bills.
        api.clock_to("2026-12-15T09:00:00Z")
        assert org.invoices()[0]["total"] == summary["monthly_total"]

    def test_free_org_pays_nothing(self, api: Api) -> None:
        org = api.create_org("free")
        assert org.summary()["monthly_total"] == 0
        assert org.summary()["subscription"] is None


class TestSlotCap:
    def test_an_addon_holds_at_most_1000_slots(self, api: Api) -> None:
        org = api.create_org("business")
        for _ in range(9):
            ok(org.add_slots("agent_slots", 100))
        ok(org.add_slots("agent_slots", 99))
        ok(org.add_slots("agent_slots", 1))
        assert org.capacity("agents")["active_slots"] == 1000
        error = error_of(org.add_slots("agent_slots", 1), 422, "invalid_request")
        assert "1000" in error["message"]
        quote = ok(preview(org, "agent_slots", "add", 1))
        assert quote["allowed"] is False and quote["reason"] == "invalid_request"
        assert org.capacity("agents")["active_slots"] == 1000
        # The other add-on has its own cap.
        ok(org.add_slots("member_slots", 1))


class TestUsageGrowsWhileARemovalIsScheduled:
    def test_new_agents_shrink_the_scheduled_removal(self, api: Api) -> None:
        org = api.create_org("pro")  # 5 agents included
        ok(org.add_slots("agent_slots", 2))
        org.create_agents(5)
        ok(org.remove_slots("agent_slots", 2))
        cap = org.capacity("agents")
        assert (cap["used"], cap["renewal_total"], cap["total"]) == (5, 5, 7)

        sixth = ok(org.post("/agents", {"name": "Sixth"}), 201)
        assert sixth["restored_slots"] == 1
        assert "reduced by 1 slot" in sixth["notice"]
        assert_invariant(org)
        cap = org.capacity("agents")
        assert (cap["used"], cap["renewal_slots"], cap["renewal_total"]) == (6, 1, 6)
        assert addon(org, "agent_slots")["scheduled_removal"] == 1
        assert org.summary()["monthly_total"] == PRO_PRICE + AGENT_PRICE

        seventh = ok(org.post("/agents", {"name": "Seventh"}), 201)
        assert seventh["restored_slots"] == 1
        assert_invariant(org)
        assert addon(org, "agent_slots")["scheduled_removal"] == 0
        error_of(org.post("/agents", {"name": "Eighth"}), 409, "limit_reached")

        api.clock_to("2026-12-15T09:00:00Z")
        assert_invariant(org)
        assert org.capacity("agents")["active_slots"] == 2
        line = org.invoices()[0]["lines"][1]
        assert (line["code"], line["quantity"]) == ("agent_slots", 2)

    def test_an_agent_within_the_renewal_capacity_leaves_the_removal_alone(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(org.add_slots("agent_slots", 2))
        org.create_agents(3)
        ok(org.remove_slots("agent_slots", 2))
        created = ok(org.post("/agents", {"name": "Fourth"}), 201)
        assert created["restored_slots"] == 0 and created["notice"] is None
        assert org.capacity("agents")["renewal_slots"] == 0

    def test_unarchiving_shrinks_the_removal_too(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(org.add_slots("agent_slots", 1))
        ids = org.create_agents(6)
        ok(org.post(f"/agents/{ids[0]}/archive"))
        ok(org.remove_slots("agent_slots", 1))
        back = ok(org.post(f"/agents/{ids[0]}/unarchive"))
        assert back["restored_slots"] == 1 and back["notice"]
        assert_invariant(org)
        assert org.capacity("agents")["renewal_slots"] == 1

    def test_invitations_shrink_a_member_slot_removal(self, api: Api) -> None:
        org = api.create_org("pro")  # 3 members included
        ok(org.add_slots("member_slots", 2))
        org.add_member()
        org.add_member()
        ok(org.remove_slots("member_slots"))
        invited = ok(invite(org), 201)
        assert invited["restored_slots"] == 1
        assert_invariant(org)
        org.add_member()  # the operator path restores too
        assert_invariant(org)
        cap = org.capacity("members")
        assert (cap["used"], cap["renewal_slots"], cap["active_slots"]) == (5, 2, 2)
        error_of(invite(org), 409, "limit_reached")
