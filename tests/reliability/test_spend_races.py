"""The credit spend under concurrency, across two `slotwise serve` processes on one database
(PostgreSQL and SQLite): the balance never goes below zero, and a reference debits once."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import OPERATOR_KEY
from tests.credit_support import set_balances
from tests.factories import Org
from tests.reliability.harness import headers, trials
from tests.reliability.test_two_servers import Pair, Request, codes, race, two_servers

SPEND_TRIALS = trials("SLOTWISE_RACE_TRIALS", 2)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def spend_pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with two_servers(request, tmp_path_factory.mktemp("spend-races"), "spends") as found:
        yield found


def post(path: str, body: Any, token: str) -> Request:
    """A spend sent as the platform's backend sends it: answered, or (admission control keeps each
    organization to part of a server's queue) refused 503 and sent again after its Retry-After."""
    def send(client: httpx.Client) -> httpx.Response:
        while True:
            response = client.post(path, json=body, headers=headers(token, None))
            if response.status_code != 503:
                return response
            time.sleep(float(response.headers.get("Retry-After", "1")) * random.random())
    return send


def fund(pair: Pair, org: Org, *, plan: int, topup: int) -> None:
    set_balances(pair.store.engine, org, plan=plan, topup=topup)


def balances_and_ledger(pair: Pair, org: Org) -> tuple[int, int, int, int]:
    plan = pair.store.scalar("select plan_balance from credit_accounts where org_id = :o", o=org.id)
    topup = pair.store.scalar("select topup_balance from credit_accounts where org_id = :o", o=org.id)
    plan_sum = pair.store.scalar("select coalesce(sum(plan_delta), 0) from credit_ledger where org_id = :o", o=org.id)
    topup_sum = pair.store.scalar("select coalesce(sum(topup_delta), 0) from credit_ledger where org_id = :o",
                                  o=org.id)
    return int(plan), int(topup), int(plan_sum), int(topup_sum)


def test_64_spends_of_one_credit_against_40_give_exactly_40(spend_pair: Pair) -> None:
    rng = random.Random()
    for trial in range(SPEND_TRIALS):
        org = spend_pair.api.create_org(plan="pro")
        plan = rng.randrange(0, 41)
        fund(spend_pair, org, plan=plan, topup=40 - plan)  # 40 in all, split at random between the pools
        path = f"{org.path}/credits/spend"
        tokens = [org.token, OPERATOR_KEY]
        responses = race(spend_pair, [post(path, {"activity": "tool", "reference": f"t{trial}-{i}"}, tokens[i % 2])
                                      for i in range(64)])
        assert codes(responses) == {"200": 40, "insufficient_credits": 24}, (trial, plan)
        assert balances_and_ledger(spend_pair, org) == (0, 0, 0, 0)
        totals = sorted(r.json()["balance"]["total"] for r in responses if r.status_code == 200)
        assert totals == list(range(40)), "each success answered a distinct balance"


def test_16_spends_with_one_reference_debit_once(spend_pair: Pair) -> None:
    for trial in range(SPEND_TRIALS):
        org = spend_pair.api.create_org(plan="pro")
        fund(spend_pair, org, plan=10, topup=10)
        body = {"activity": "message", "reference": f"same-{trial}", "units": 3}
        responses = race(spend_pair, [post(f"{org.path}/credits/spend", body, org.token) for _ in range(16)])
        assert codes(responses) == {"200": 16}
        answers = [r.json() for r in responses]
        assert len({a["id"] for a in answers}) == 1
        assert sum(1 for a in answers if not a["replayed"]) == 1
        assert {a["balance"]["total"] for a in answers} == {17}
        assert balances_and_ledger(spend_pair, org) == (7, 10, 7, 10)
