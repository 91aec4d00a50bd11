"""Auto-recharge through whole stories (SPEC §11): spends cross the threshold, a worker charges one pack
off the request, the cap per period, one recharge in flight, three declines turn it off, a new card
and re-enabling bring it back; and the server's own worker doing it within seconds."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from slotwise.api.app import create_app
from slotwise.clock import SimulatedClock
from slotwise.config import Settings
from slotwise.services.context import Env
from slotwise.services.recharges import request_recharge
from slotwise.worker import Worker
from tests.conftest import START
from tests.credit_support import (
    DISABLED_MESSAGE,
    account,
    auto_recharge,
    credits,
    jobs_of,
    ledger,
    ledger_matches_balances,
    make_worker,
    set_account,
    set_balances,
    spend,
)
from tests.factories import DECLINED_CARD, GOOD_CARD, Api, Org, set_card

PACK = 1000


@pytest.fixture
def org(api: Api) -> Org:
    return api.create_org(plan="pro")


@pytest.fixture
def worker(sessions: sessionmaker[Session], env: Env, clock: SimulatedClock) -> Worker:
    return make_worker(sessions, env, clock)


def enable(org: Org, **settings: int) -> None:
    response = auto_recharge(org, enabled=True, **settings)
    assert response.status_code == 200, response.text


def recharge_invoices(org: Org) -> list[dict[str, object]]:
    return [i for i in org.invoices() if i["kind"] == "recharge"]


class TestThresholdReached:
    def test_a_spend_below_the_threshold_gets_one_pack_from_the_worker(self, org: Org, engine: Engine,
                                                                      worker: Worker) -> None:
        set_balances(engine, org, plan=0, topup=150)
        enable(org, threshold=100, max_per_month=3)
        assert jobs_of(engine, org) == []
        spent = spend(org, 40)  # 110 left: not below
        assert spent["balance"]["total"] == 110 and jobs_of(engine, org) == []
        spend(org, 20)  # 90 left: below the threshold
        assert len(jobs_of(engine, org)) == 1
        assert credits(org)["topup"]["remaining"] == 90  # the spend never waits for the card
        assert worker.run_pending() == 1
        after = credits(org)
        assert after["topup"]["remaining"] == 90 + PACK
        recharge = after["auto_recharge"]
        assert recharge["used_this_month"] == 1 and recharge["last_recharged_at"] == "2026-11-15T09:00:00Z"
        [invoice] = recharge_invoices(org)
        assert (invoice["status"], invoice["total"]) == ("paid", 2000)
        assert invoice["lines"][0]["description"] == "Auto-recharge credits × 1,000"  # type: ignore[index]
        [entry] = ledger(engine, org, "recharge")
        assert (entry.topup_delta, entry.invoice_id) == (PACK, invoice["id"])
        assert account(engine, org).recharge_job_id is None and jobs_of(engine, org) == []
        assert ledger_matches_balances(engine, org)
        spend(org, 10)  # above the threshold again: nothing more
        assert jobs_of(engine, org) == []

    def test_the_recharge_is_billed_at_the_billing_clock(self, api: Api, org: Org, engine: Engine,
                                                         worker: Worker) -> None:
        set_balances(engine, org, plan=0, topup=50)
        api.clock_to("2026-11-20T12:00:00Z")
        enable(org)
        worker.run_pending()
        assert credits(org)["auto_recharge"]["last_recharged_at"] == "2026-11-20T12:00:00Z"
        assert recharge_invoices(org)[0]["created_at"] == "2026-11-20T12:00:00Z"


class TestCapPerPeriod:
    def test_it_stops_at_the_cap(self, org: Org, engine: Engine, worker: Worker) -> None:
        set_balances(engine, org, plan=0, topup=100)
        enable(org, threshold=100, max_per_month=2)
        for used in (1, 2):
            spend(org, 1)
            assert worker.run_pending() == 1
            spend(org, PACK)  # back below the threshold
            assert credits(org)["auto_recharge"]["used_this_month"] == used
        assert jobs_of(engine, org) == []  # the cap is reached: no third
        assert len(recharge_invoices(org)) == 2
        enable(org, max_per_month=3)  # raising the cap while below the threshold recharges at once
        assert worker.run_pending() == 1 and credits(org)["auto_recharge"]["used_this_month"] == 3


class TestOneInFlight:
    def test_spends_while_a_recharge_waits_queue_no_second(self, org: Org, engine: Engine, worker: Worker) -> None:
        set_balances(engine, org, plan=0, topup=300)
        enable(org, threshold=200, max_per_month=10)
        for _ in range(5):
            spend(org, 40)
        [job] = jobs_of(engine, org)
        assert account(engine, org).recharge_job_id == job.id
        assert worker.run_pending() == 1
        assert credits(org)["topup"]["remaining"] == 100 + PACK and len(recharge_invoices(org)) == 1

    def test_request_recharge_asks_once(self, org: Org, engine: Engine, sessions: sessionmaker[Session]) -> None:
        set_balances(engine, org, plan=0, topup=0)
        enable(org, threshold=100, max_per_month=5)
        with sessions.begin() as db:
            assert request_recharge(db, org.id, at=START, wall_now=START) is None  # enabling queued one already
        assert len(jobs_of(engine, org)) == 1

    def test_a_recharge_turned_off_meanwhile_is_not_charged(self, org: Org, engine: Engine, worker: Worker) -> None:
        set_balances(engine, org, plan=0, topup=10)
        enable(org)
        assert auto_recharge(org, enabled=False).status_code == 200
        assert worker.run_pending() == 1
        assert recharge_invoices(org) == [] and credits(org)["topup"]["remaining"] == 10
        assert account(engine, org).recharge_job_id is None


class TestDeclines:
    def test_three_failures_in_a_row_turn_it_off_and_a_new_card_brings_it_back(
        self, api: Api, org: Org, engine: Engine, worker: Worker
    ) -> None:
        set_balances(engine, org, plan=0, topup=500)
        assert set_card(org, DECLINED_CARD).status_code == 200
        enable(org, threshold=100, max_per_month=5)
        invoices_before = len(org.invoices())
        spend(org, 450)  # 50 left
        moment = START
        for failures in (1, 2, 3):
            assert len(jobs_of(engine, org)) == 1, failures
            assert worker.run_pending() == 1
            row = account(engine, org)
            assert (row.recharge_failures, row.recharge_failed_at, row.recharge_job_id) == (failures, moment, None)
            spend(org, 1)  # within the hour after a failure: not tried again
            assert jobs_of(engine, org) == []
            moment += timedelta(hours=1)
            api.clock_to(moment.isoformat())
            spend(org, 1)  # an hour on, the next spend below the threshold tries again
        recharge = credits(org)["auto_recharge"]
        assert recharge["enabled"] is False and recharge["disabled_reason"] == DISABLED_MESSAGE
        assert jobs_of(engine, org) == [] and len(org.invoices()) == invoices_before  # declines issue nothing
        assert credits(org)["topup"]["remaining"] == 50 - 6 and recharge["used_this_month"] == 0

        assert set_card(org, GOOD_CARD).status_code == 200
        enable(org)  # re-enabled below the threshold: recharged at once
        back = credits(org)["auto_recharge"]
        assert back["enabled"] is True and back["disabled_reason"] is None
        assert worker.run_pending() == 1
        assert credits(org)["topup"]["remaining"] == 44 + PACK
        assert account(engine, org).recharge_failures == 0 and len(recharge_invoices(org)) == 1

    def test_a_success_ends_the_failures_in_a_row(self, org: Org, engine: Engine, worker: Worker) -> None:
        set_balances(engine, org, plan=0, topup=10)
        enable(org, max_per_month=5)
        set_account(engine, org, recharge_failures=2)
        worker.run_pending()
        assert account(engine, org).recharge_failures == 0


class TestTheServersWorker:
    def test_the_server_recharges_within_seconds(self, settings: Settings, engine: Engine, clock: SimulatedClock,
                                                 env: Env) -> None:
        app = create_app(replace(settings, run_worker=True), engine=engine, clock=clock, gateway=env.gateway,
                         catalog=env.catalog)
        with TestClient(app) as client:
            org = Api(client, settings.operator_key or "").create_org(plan="pro")
            set_balances(engine, org, plan=0, topup=20)
            enable(org)
            deadline = time.monotonic() + 10
            while credits(org)["topup"]["remaining"] != 20 + PACK and time.monotonic() < deadline:
                time.sleep(0.1)
            assert credits(org)["topup"]["remaining"] == 20 + PACK
