"""Whole billing cycles that travel in time (Lago-style scenarios), through the HTTP API.

Each scenario moves the simulated clock across renewals and then reads every invoice back: numbers in
sequence, lines, totals equal to the sum of the lines, and the period each invoice and line covers.
"""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from slotwise.api.app import create_app
from slotwise.catalog import parse_catalog
from slotwise.clock import SimulatedClock
from slotwise.config import Settings
from slotwise.models import Charge
from tests.conftest import OPERATOR_KEY
from tests.factories import (
    DECLINED_CARD,
    GOOD_CARD,
    Api,
    Org,
    billing_run,
    change_plan,
    error_of,
    prorated,
    set_card,
)

PRO, STARTER, BUSINESS, AGENT, MEMBER = 15000, 4000, 50000, 700, 1500


@dataclass(frozen=True)
class Line:
    code: str
    quantity: int
    unit_price: int
    amount: int
    proration: str | None = None  # checked when given
    starts: str | None = None  # the line's period start (ISO prefix), checked when given


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def all_invoices(org: Org) -> list[dict[str, Any]]:
    """Oldest first, after checking the numbers run 1, 2, 3… with no gap or repeat."""
    invoices = sorted(org.invoices(), key=lambda i: i["number"])
    assert [i["number"] for i in invoices] == list(range(1, len(invoices) + 1))
    return invoices


def check_invoice(invoice: dict[str, Any], *, kind: str, period: tuple[str, str], lines: list[Line],
                  status: str = "paid") -> None:
    assert invoice["kind"] == kind, invoice
    assert invoice["status"] == status, invoice
    assert invoice["currency"] == "usd"
    assert (invoice["period_start"], invoice["period_end"]) == (iso(period[0]), iso(period[1])), invoice
    got = invoice["lines"]
    assert [(x["code"], x["quantity"], x["unit_price"], x["amount"]) for x in got] == [
        (x.code, x.quantity, x.unit_price, x.amount) for x in lines], got
    assert invoice["total"] == sum(x["amount"] for x in got)
    for want, line in zip(lines, got, strict=True):
        assert line["currency"] == "usd"
        assert line["period_end"] == invoice["period_end"]
        if want.proration is not None:
            assert line["proration"] == want.proration, line
        if want.starts is not None:
            assert line["period_start"] == iso(want.starts), line


def iso(text: str) -> str:
    """``2026-11-15T09:00`` → the API's spelling of that UTC instant."""
    value = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def full_month(code: str, price: int, quantity: int = 1) -> Line:
    return Line(code, quantity, price, quantity * price)


def subscription(org: Org) -> dict[str, Any]:
    sub: dict[str, Any] = org.summary()["subscription"]
    return sub


class TestSlotsAcrossRenewals:
    """(a) A pro org buys slots mid-period, removes some; later renewals bill what was kept."""

    def test_quantities_on_every_invoice(self, api: Api) -> None:
        org = api.create_org("pro")  # 2026-11-15 09:00
        api.clock_to("2026-11-26T12:00:00Z")
        ok(org.add_slots("agent_slots", 3))
        api.clock_to("2026-12-01T08:00:00Z")
        ok(org.add_slots("member_slots", 2))
        api.clock_to("2026-12-05T00:00:00Z")
        ok(org.remove_slots("agent_slots", 1))
        api.clock_to("2027-01-20T10:00:00Z")  # renews Dec 15 and Jan 15
        ok(org.remove_slots("member_slots"))
        ok(org.add_slots("agent_slots", 1))
        report = api.clock_to("2027-03-16T00:00:00Z")  # renews Feb 15 and Mar 15
        assert len(report["renewed"]) == 2 and report["payments_failed"] == []

        inv = all_invoices(org)
        assert len(inv) == 8
        first = ("2026-11-15T09:00", "2026-12-15T09:00")
        check_invoice(inv[0], kind="subscription", period=first,
                      lines=[Line("pro", 1, PRO, PRO, "30/30", "2026-11-15T09:00")])
        check_invoice(inv[1], kind="addon", period=first, lines=[
            Line("agent_slots", 3, AGENT, prorated(3, AGENT, *first, "2026-11-26"), "19/30", "2026-11-26T12:00")])
        check_invoice(inv[2], kind="addon", period=first, lines=[
            Line("member_slots", 2, MEMBER, prorated(2, MEMBER, *first, "2026-12-01"), "14/30",
                 "2026-12-01T08:00")])
        dec = ("2026-12-15T09:00", "2027-01-15T09:00")
        jan = ("2027-01-15T09:00", "2027-02-15T09:00")
        for invoice, period in ((inv[3], dec), (inv[4], jan)):
            check_invoice(invoice, kind="renewal", period=period, lines=[
                Line("pro", 1, PRO, PRO, None, period[0]), full_month("agent_slots", AGENT, 2),
                full_month("member_slots", MEMBER, 2)])
            assert invoice["created_at"] == iso(period[0])  # billed at the renewal instant
        assert inv[3]["lines"][1]["proration"] == "31/31"
        check_invoice(inv[5], kind="addon", period=jan, lines=[
            Line("agent_slots", 1, AGENT, prorated(1, AGENT, *jan, "2027-01-20"), "26/31")])
        feb = ("2027-02-15T09:00", "2027-03-15T09:00")
        mar = ("2027-03-15T09:00", "2027-04-15T09:00")
        check_invoice(inv[6], kind="renewal", period=feb, lines=[
            Line("pro", 1, PRO, PRO, "28/28"), full_month("agent_slots", AGENT, 3)])
        check_invoice(inv[7], kind="renewal", period=mar, lines=[
            Line("pro", 1, PRO, PRO, "31/31"), full_month("agent_slots", AGENT, 3)])

        summary = org.summary()
        assert summary["capacity"]["agents"]["total"] == 5 + 3
        assert summary["capacity"]["members"]["total"] == 3
        assert summary["monthly_total"] == PRO + 3 * AGENT == inv[7]["total"]
        assert summary["subscription"]["next_billing_date"] == iso("2027-04-15T09:00")


class TestMonthEndAnchoring:
    """(b) Periods come from the anchor's day, clamped to each month, never from the last end."""

    def test_jan_31_renews_feb_28_mar_31_apr_30(self, api: Api) -> None:
        api.clock_to("2027-01-31T10:00:00Z")
        org = api.create_org("starter")
        api.clock_to("2027-02-10T12:00:00Z")
        slot = ok(org.add_slots("agent_slots", 1))["invoice"]
        assert slot["total"] == prorated(1, AGENT, "2027-01-31", "2027-02-28", "2027-02-10") == 450
        api.clock_to("2027-05-01T00:00:00Z")
        inv = all_invoices(org)
        ends = ["2027-02-28T10:00", "2027-02-28T10:00", "2027-03-31T10:00", "2027-04-30T10:00",
                "2027-05-31T10:00"]
        assert [i["period_end"] for i in inv] == [iso(e) for e in ends]
        renewals = [i for i in inv if i["kind"] == "renewal"]
        assert [(i["period_start"], i["lines"][0]["proration"]) for i in renewals] == [
            (iso("2027-02-28T10:00"), "31/31"), (iso("2027-03-31T10:00"), "30/30"),
            (iso("2027-04-30T10:00"), "31/31")]
        for invoice in renewals:
            assert invoice["total"] == STARTER + AGENT
        sub = subscription(org)
        assert sub["current_period"] == {"start": iso("2027-04-30T10:00"), "end": iso("2027-05-31T10:00")}

    def test_leap_years(self, api: Api) -> None:
        api.clock_to("2028-01-31T06:00:00Z")
        jan31 = api.create_org("starter")
        api.clock_to("2028-02-10T12:00:00Z")  # a 29-day period: 700 × 19/29 = 458.6 → 459
        assert ok(jan31.add_slots("agent_slots", 1))["invoice"]["total"] == prorated(
            1, AGENT, "2028-01-31", "2028-02-29", "2028-02-10") == 459
        api.clock_to("2028-02-29T12:00:00Z")
        feb29 = api.create_org("pro")
        api.clock_to("2029-03-30T00:00:00Z")

        ends = [i["period_end"][:10] for i in all_invoices(feb29)]
        assert ends == ["2028-03-29", "2028-04-29", "2028-05-29", "2028-06-29", "2028-07-29", "2028-08-29",
                        "2028-09-29", "2028-10-29", "2028-11-29", "2028-12-29", "2029-01-29", "2029-02-28",
                        "2029-03-29", "2029-04-29"]
        assert all(i["total"] == PRO and i["status"] == "paid" for i in all_invoices(feb29))

        renewals = [i for i in all_invoices(jan31) if i["kind"] == "renewal"]
        assert [i["period_start"][:10] for i in renewals] == [
            "2028-02-29", "2028-03-31", "2028-04-30", "2028-05-31", "2028-06-30", "2028-07-31", "2028-08-31",
            "2028-09-30", "2028-10-31", "2028-11-30", "2028-12-31", "2029-01-31", "2029-02-28"]
        assert renewals[-1]["period_end"] == iso("2029-03-31T06:00")
        assert all_invoices(jan31)[2]["period_start"] == iso("2028-02-29T06:00")


class TestFailedRenewal:
    """(c) A declined renewal stays open, is retried 1, 3 and 5 days later, then waits for a new card."""

    def test_retry_schedule_and_card_update(self, api: Api, engine: Engine) -> None:
        org = api.create_org("pro")
        api.clock_to("2026-12-01T00:00:00Z")
        ok(set_card(org, DECLINED_CARD))
        report = api.clock_to("2026-12-15T09:00:00Z")
        [renewal_id] = report["renewed"]
        assert report["payments_failed"] == [renewal_id]
        renewal = ok(org.get(f"/invoices/{renewal_id}"))
        check_invoice(renewal, kind="renewal", period=("2026-12-15T09:00", "2027-01-15T09:00"),
                      lines=[full_month("pro", PRO)], status="open")
        assert renewal["paid_at"] is None
        assert subscription(org)["status"] == "past_due"
        assert self.attempts(engine, renewal_id) == 1

        retried_at = []
        for day in range(1, 8):
            just_before = api.clock_to(f"2026-12-{15 + day:02d}T08:59:00Z")
            assert just_before["retried_failed"] == [] and just_before["retried_paid"] == []
            at = api.clock_to(f"2026-12-{15 + day:02d}T09:00:00Z")
            assert at["retried_paid"] == []
            if at["retried_failed"]:
                assert at["retried_failed"] == [renewal_id]
                retried_at.append(day)
        assert retried_at == [1, 3, 5]
        assert self.attempts(engine, renewal_id) == 4

        assert subscription(org)["status"] == "unpaid"  # the last retry failed: dunning is over
        report = api.clock_to("2027-01-14T00:00:00Z")  # no more retries
        assert report["retried_failed"] == [] and report["retried_paid"] == []
        assert self.attempts(engine, renewal_id) == 4
        assert ok(org.get(f"/invoices/{renewal_id}"))["status"] == "open"

        # A new card voids the stale invoice and starts a new period now, billed in full.
        updated = ok(set_card(org, GOOD_CARD))
        assert updated["payment_method"]["last4"] == GOOD_CARD[-4:]
        assert updated["voided_invoices"] == [renewal_id] and updated["retried_invoices"] == []
        restart = updated["restart_invoice"]
        check_invoice(restart, kind="renewal", period=("2027-01-14T00:00", "2027-02-14T00:00"),
                      lines=[full_month("pro", PRO)])
        assert ok(org.get(f"/invoices/{renewal_id}"))["status"] == "void"
        assert self.attempts(engine, renewal_id) == 4
        sub = subscription(org)
        assert sub["status"] == "active" and sub["next_billing_date"] == iso("2027-02-14T00:00")

        report = api.clock_to("2027-02-14T00:00:00Z")  # the next renewal follows the new anchor
        assert len(report["renewed"]) == 1 and report["payments_failed"] == []
        assert [i["status"] for i in all_invoices(org)] == ["paid", "void", "paid", "paid"]

    def test_updating_to_another_failing_card_keeps_it_past_due(self, api: Api, engine: Engine) -> None:
        org = api.create_org("pro")
        ok(set_card(org, DECLINED_CARD))
        [renewal_id] = api.clock_to("2026-12-15T09:00:00Z")["payments_failed"]
        api.clock_to("2026-12-17T00:00:00Z")
        updated = ok(set_card(org, "4000000000009995"))
        assert [(i["id"], i["status"]) for i in updated["retried_invoices"]] == [(renewal_id, "open")]
        assert subscription(org)["status"] == "past_due"
        # The schedule carries on: the +3 and +5 day retries still happen.
        assert api.clock_to("2026-12-18T09:00:00Z")["retried_failed"] == [renewal_id]
        assert api.clock_to("2026-12-20T09:00:00Z")["retried_failed"] == [renewal_id]
        assert self.attempts(engine, renewal_id) == 5

    def test_an_unpaid_subscription_stops_billing_and_growing_until_a_new_card(self, api: Api) -> None:
        org = api.create_org("starter")
        ok(org.add_slots("agent_slots", 2))
        org.create_agents(3)
        ok(set_card(org, DECLINED_CARD))
        report = api.clock_to("2027-12-20T00:00:00Z")  # 13 months on: one declined renewal, then nothing
        assert len(report["renewed"]) == 1 and report["unpaid"] == [subscription(org)["id"]]
        invoices = all_invoices(org)
        assert [i["status"] for i in invoices] == ["paid", "paid", "open"]
        assert subscription(org)["status"] == "unpaid"

        refusal = error_of(org.post("/agents", {"name": "One more"}), 402, "payment_required")
        assert refusal["message"] == "A renewal payment failed. Update your payment method to resume."
        error_of(org.add_slots("agent_slots", 1), 402, "payment_required")
        error_of(change_plan(org, "pro"), 402, "payment_required")
        assert org.capacity("agents")["used"] == 3  # what exists stays; nothing is deleted

        updated = ok(set_card(org, GOOD_CARD))
        assert updated["voided_invoices"] == [invoices[2]["id"]]
        check_invoice(updated["restart_invoice"], kind="renewal", period=("2027-12-20T00:00", "2028-01-20T00:00"),
                      lines=[full_month("starter", STARTER), Line("agent_slots", 2, AGENT, 2 * AGENT)])
        assert subscription(org)["status"] == "active"
        assert org.post("/agents", {"name": "One more"}).status_code == 201

    def test_a_declined_new_card_leaves_an_unpaid_subscription_as_it_was(self, api: Api) -> None:
        org = api.create_org("starter")
        ok(set_card(org, DECLINED_CARD))
        api.clock_to("2026-12-21T00:00:00Z")
        assert subscription(org)["status"] == "unpaid"
        error_of(set_card(org, "4000000000009995"), 402, "payment_failed")
        assert subscription(org)["status"] == "unpaid"
        assert [i["status"] for i in all_invoices(org)] == ["paid", "open"]
        assert org.summary()["payment_method"]["last4"] == "0002"  # the refused card was not kept

    @staticmethod
    def attempts(engine: Engine, invoice_id: str) -> int:
        with Session(engine) as db:
            return len(db.scalars(select(Charge).where(Charge.invoice_id == invoice_id)).all())


class TestUpgrade:
    """(d) An upgrade takes effect at once: the new plan pro-rated, the old plan's unused part credited."""

    def test_mid_period_upgrade_on_one_invoice(self, api: Api) -> None:
        org = api.create_org("starter")
        api.clock_to("2026-11-20T10:00:00Z")
        ok(org.add_slots("agent_slots", 1))
        api.clock_to("2026-11-26T12:00:00Z")
        change = ok(change_plan(org, "pro"))
        assert change["kind"] == "upgraded" and change["plan"] == "pro"
        period = ("2026-11-15T09:00", "2026-12-15T09:00")
        charge = prorated(1, PRO, *period, "2026-11-26")
        credit = prorated(-1, STARTER, *period, "2026-11-26")
        assert (charge, credit) == (9500, -2533)  # 15000 × 19/30; 4000 × 19/30 = 2533.33
        check_invoice(change["invoice"], kind="upgrade", period=period, lines=[
            Line("pro", 1, PRO, charge, "19/30", "2026-11-26T12:00"),
            Line("starter", -1, STARTER, credit, "19/30", "2026-11-26T12:00")])
        assert change["invoice"]["total"] == charge + credit
        assert change["invoice"] == all_invoices(org)[-1]

        summary = org.summary()
        assert summary["plan"]["code"] == "pro"
        assert summary["capacity"]["agents"]["total"] == 5 + 1  # the slot carries over
        assert summary["capacity"]["members"]["total"] == 3
        assert summary["subscription"]["next_billing_date"] == iso(period[1])  # same anchor
        assert summary["monthly_total"] == PRO + AGENT

        api.clock_to("2026-12-15T09:00:00Z")
        check_invoice(all_invoices(org)[-1], kind="renewal", period=("2026-12-15T09:00", "2027-01-15T09:00"),
                      lines=[full_month("pro", PRO), full_month("agent_slots", AGENT)])

    def test_upgrade_on_the_first_day_swaps_full_months(self, api: Api) -> None:
        org = api.create_org("pro")
        api.clock_to("2026-12-15T12:00:00Z")
        invoice = ok(change_plan(org, "business"))["invoice"]
        check_invoice(invoice, kind="upgrade", period=("2026-12-15T09:00", "2027-01-15T09:00"), lines=[
            Line("business", 1, BUSINESS, BUSINESS, "31/31"), Line("pro", -1, PRO, -PRO, "31/31")])
        assert invoice["total"] == BUSINESS - PRO

    def test_free_to_paid_starts_a_period_now(self, api: Api) -> None:
        org = api.create_org("free")
        api.clock_to("2026-11-30T15:00:00Z")
        change = ok(change_plan(org, "starter"))
        assert change["kind"] == "started"
        check_invoice(change["invoice"], kind="subscription", period=("2026-11-30T15:00", "2026-12-30T15:00"),
                      lines=[Line("starter", 1, STARTER, STARTER, "30/30")])


class TestDowngrade:
    """(e) A downgrade waits for renewal, is refused above usage, and bills the new price from then."""

    def test_scheduled_refused_above_usage_and_applied_at_renewal(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(org.add_slots("agent_slots", 1))
        agents = org.create_agents(5)
        error = error_of(change_plan(org, "starter"), 409, "below_usage")
        assert error["must_free"] == 5 - (2 + 1)
        for agent in agents[:2]:
            ok(org.post(f"/agents/{agent}/archive"))
        change = ok(change_plan(org, "starter"))
        assert change["kind"] == "downgrade_scheduled" and change["invoice"] is None
        assert change["effective_at"] == iso("2026-12-15T09:00")

        summary = org.summary()
        assert summary["plan"]["code"] == "pro"  # nothing changes until renewal
        assert summary["subscription"]["scheduled_plan"] == "starter"
        assert summary["capacity"]["agents"]["total"] == 6
        assert summary["capacity"]["agents"]["renewal_total"] == 3
        assert summary["monthly_total"] == STARTER + AGENT
        assert len(org.invoices()) == 2
        # Growing past what the next plan allows is refused now, not discovered at renewal.
        error_of(org.post("/agents", {"name": "Too many for Starter"}), 409, "limit_reached")
        error_of(org.post(f"/agents/{agents[0]}/unarchive"), 409, "limit_reached")

        api.clock_to("2026-12-15T09:00:00Z")
        renewal = all_invoices(org)[-1]
        check_invoice(renewal, kind="renewal", period=("2026-12-15T09:00", "2027-01-15T09:00"),
                      lines=[full_month("starter", STARTER), full_month("agent_slots", AGENT)])
        summary = org.summary()
        assert summary["plan"]["code"] == "starter"
        assert summary["subscription"]["plan_price"] == STARTER
        assert summary["subscription"]["scheduled_plan"] is None
        assert summary["capacity"]["agents"]["total"] == 3 == summary["capacity"]["agents"]["used"]
        assert summary["capacity"]["members"]["total"] == 1

    def test_choosing_the_current_plan_cancels_a_scheduled_downgrade(self, api: Api) -> None:
        org = api.create_org("business")
        ok(change_plan(org, "pro"))
        assert ok(change_plan(org, "business"))["kind"] == "downgrade_canceled"
        api.clock_to("2026-12-15T09:00:00Z")
        assert all_invoices(org)[-1]["lines"][0]["code"] == "business"
        assert org.summary()["plan"]["code"] == "business"

    def test_downgrade_to_free_cancels_at_renewal(self, api: Api) -> None:
        org = api.create_org("pro")
        org.create_agents(2)
        ok(org.add_slots("agent_slots", 1))
        assert error_of(change_plan(org, "free"), 409, "addon_unavailable")["addon"] == "agent_slots"
        ok(org.remove_slots("agent_slots"))
        assert error_of(change_plan(org, "free"), 409, "below_usage")["must_free"] == 1
        agent = org.items("/agents")[0]["id"]
        assert org.delete(f"/agents/{agent}").status_code == 204
        change = ok(change_plan(org, "free"))
        assert change["kind"] == "downgrade_scheduled"
        sub_id = subscription(org)["id"]
        assert org.summary()["monthly_total"] == 0

        report = api.clock_to("2026-12-15T09:00:00Z")
        assert report["canceled"] == [sub_id] and report["renewed"] == []
        summary = org.summary()
        assert summary["plan"]["code"] == "free" and summary["subscription"] is None
        assert summary["capacity"]["agents"]["total"] == 1
        assert summary["monthly_total"] == 0
        invoices = all_invoices(org)
        assert len(invoices) == 2  # the start and the slot; nothing billed at cancellation
        api.clock_to("2027-03-01T00:00:00Z")
        assert len(all_invoices(org)) == 2
        error_of(org.add_slots("agent_slots", 1), 409, "subscription_required")
        # Subscribing again starts a new period, anchored then.
        started = ok(change_plan(org, "pro"))
        check_invoice(started["invoice"], kind="subscription", period=("2027-03-01T00:00", "2027-04-01T00:00"),
                      lines=[full_month("pro", PRO)])
        assert started["invoice"]["number"] == 3


class TestBillingRunTwice:
    """(f) However often the sweep runs, and however late, each period is billed exactly once."""

    @pytest.fixture
    def jump(self, clock: SimulatedClock, sessions: sessionmaker[Session]) -> Any:
        """Move the clock without running the sweep: the billing job was down meanwhile."""

        def move(to: str) -> None:
            with sessions.begin() as db:
                clock.set(db, datetime.fromisoformat(to.replace("Z", "+00:00")))

        return move

    def test_sequential_runs(self, api: Api, jump: Any) -> None:
        org = api.create_org("pro")
        ok(org.add_slots("agent_slots", 2))
        jump("2026-12-15T09:00:00Z")
        first = billing_run(api)
        second = billing_run(api)
        assert len(first["renewed"]) == 1 and second["renewed"] == []
        renewals = [i for i in all_invoices(org) if i["kind"] == "renewal"]
        assert [i["id"] for i in renewals] == first["renewed"]

    def test_after_downtime_every_missed_period_is_billed_once_at_its_own_time(self, api: Api, jump: Any) -> None:
        org = api.create_org("pro")
        jump("2027-03-01T00:00:00Z")  # Dec 15, Jan 15 and Feb 15 were missed
        assert len(billing_run(api)["renewed"]) == 3
        assert billing_run(api)["renewed"] == []
        renewals = [i for i in all_invoices(org) if i["kind"] == "renewal"]
        assert [i["created_at"] for i in renewals] == [
            iso("2026-12-15T09:00"), iso("2027-01-15T09:00"), iso("2027-02-15T09:00")]
        assert [i["period_end"] for i in renewals] == [
            iso("2027-01-15T09:00"), iso("2027-02-15T09:00"), iso("2027-03-15T09:00")]

    def test_concurrent_runs(self, api: Api, jump: Any, engine: Engine) -> None:
        orgs = [api.create_org(plan) for plan in ("starter", "pro", "business", "pro")]
        ok(set_card(orgs[3], DECLINED_CARD))
        # Two renewals each; the declined one renews once, is retried three times and is unpaid after.
        jump("2027-01-16T12:00:00Z")
        reports: list[dict[str, Any]] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(4)

        def run() -> None:
            try:
                barrier.wait()
                reports.append(billing_run(api))
            except BaseException as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        renewed = [i for report in reports for i in report["renewed"]]
        assert len(renewed) == len(set(renewed)) == 2 * 3 + 1
        for org in orgs:
            renewals = [i for i in all_invoices(org) if i["kind"] == "renewal"]
            expected = ["2026-12-15"] if org is orgs[3] else ["2026-12-15", "2027-01-15"]
            assert [i["period_start"][:10] for i in renewals] == expected
        assert billing_run(api)["renewed"] == []
        # The reports account for every charge attempt on the declined card, no more, no less.
        failed = [i for report in reports for i in report["payments_failed"]]
        retried = [i for report in reports for i in report["retried_failed"] + report["retried_paid"]]
        assert len(failed) == 1 and len(retried) == 3
        assert sum(TestFailedRenewal.attempts(engine, i) for i in set(failed)) == len(failed) + len(retried)


class TestCatalogPriceChange:
    """(g) A new catalog price applies from each subscription's next renewal; invoices keep theirs."""

    @pytest.fixture
    def repriced(self, tmp_path: Path, settings: Settings, engine: Engine, clock: SimulatedClock) -> Iterator[Api]:
        text = resources.files("slotwise").joinpath("catalog.toml").read_text(encoding="utf-8")
        text = text.replace("price_per_slot = 700", "price_per_slot = 900")
        text = text.replace("price = 15000", "price = 16000")
        path = tmp_path / "catalog.toml"
        path.write_text(text, encoding="utf-8")
        catalog = parse_catalog(tomllib.loads(path.read_text(encoding="utf-8")))
        assert catalog.addon("agent_slots").price_per_slot == 900 and catalog.plan("pro").price == 16000
        app = create_app(settings, engine=engine, clock=clock, catalog=catalog)
        with TestClient(app) as client:
            yield Api(client, OPERATOR_KEY)

    def test_new_prices_from_the_next_renewal(self, api: Api, repriced: Api) -> None:
        org = api.create_org("pro")
        api.clock_to("2026-11-26T12:00:00Z")
        bought = ok(org.add_slots("agent_slots", 2))["invoice"]
        assert bought["total"] == 887

        # The operator deploys the new catalog mid-period; the same org seen through the new app:
        org = Org(repriced, org.id, org.owner_id, org.token)
        repriced.clock_to("2026-12-01T00:00:00Z")
        period = ("2026-11-15T09:00", "2026-12-15T09:00")
        quote = ok(org.post("/addons/agent_slots/preview", {"action": "add", "quantity": 1}))
        assert quote["price_per_slot"] == AGENT  # locked for the current period
        assert quote["charge_now"] == prorated(1, AGENT, *period, "2026-12-01")
        assert quote["new_monthly_total"] == 16000 + 3 * 900  # what the next renewal will bill
        extra = ok(org.add_slots("agent_slots", 1))["invoice"]
        assert extra["total"] == quote["charge_now"]
        assert extra["lines"][0]["unit_price"] == AGENT

        repriced.clock_to("2026-12-15T09:00:00Z")
        invoices = all_invoices(org)
        check_invoice(invoices[-1], kind="renewal", period=("2026-12-15T09:00", "2027-01-15T09:00"),
                      lines=[full_month("pro", 16000), full_month("agent_slots", 900, 3)])
        # Earlier invoices keep the prices they used.
        check_invoice(invoices[0], kind="subscription", period=period, lines=[full_month("pro", PRO)])
        assert invoices[1] == bought
        assert invoices[1]["lines"][0]["unit_price"] == AGENT
        # From the new period on, new slots cost the new price.
        repriced.clock_to("2026-12-20T00:00:00Z")
        later = ok(org.add_slots("agent_slots", 1))["invoice"]
        assert later["lines"][0]["unit_price"] == 900
        assert later["total"] == prorated(1, 900, "2026-12-15", "2027-01-15", "2026-12-20")
