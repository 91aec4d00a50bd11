"""Paid agents (SPEC §13) under concurrency, across two `slotwise serve` processes on one database
(SQLite and PostgreSQL): visitor messages racing for a pass's last message credits take exactly as
many as it has (and the organization's credits once each), and one paywall form submitted many times
at once is one charge and one pass."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import OPERATOR_KEY
from tests.factories import Org
from tests.reliability.harness import headers, record, trials
from tests.reliability.test_two_servers import Pair, Request, codes, race, rng_for, two_servers

RACE_TRIALS = trials("SLOTWISE_RACE_TRIALS", 2)
MESSAGES, PASS_CREDITS, SUBMITS = 32, 10, 16
GOOD_CARD = "4242424242424242"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def paid_pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with two_servers(request, tmp_path_factory.mktemp("paid-races"), "paid") as found:
        yield found


def send(path: str, body: Any, token: str | None) -> Request:
    """Sent as the platform's backend (or the paywall page) sends it: answered, or refused 503 by
    admission control and sent again after its Retry-After."""
    def run(client: httpx.Client) -> httpx.Response:
        while True:
            response = client.post(path, json=body, headers=headers(token) if token else {})
            if response.status_code != 503:
                return response
            time.sleep(float(response.headers.get("Retry-After", "1")) * random.random())
    return run


def paid_agent(pair: Pair, message_credits: int) -> tuple[Org, str]:
    org = pair.api.create_org("pro")
    created = org.post("/agents", {"name": "Paid bot"})
    assert created.status_code == 201, created.text
    agent_id = str(created.json()["id"])
    config = {"price": 1200, "currency": "usd", "access_days": 30, "message_credits": message_credits}
    response = org.put(f"/agents/{agent_id}/access", {"mode": "paid", "paid": config})
    assert response.status_code == 200, response.text
    return org, agent_id


def total(org: Org) -> int:
    response = org.get("/credits")
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def test_32_visitor_messages_on_a_10_message_pass_give_exactly_10(paid_pair: Pair) -> None:
    pair, orgs = paid_pair, []
    for trial in range(RACE_TRIALS):
        org, agent_id = paid_agent(pair, PASS_CREDITS)
        orgs.append(org)
        bought = pair.api.client.post(f"/v1/agents/{agent_id}/checkout", json={
            "email": f"visitor{trial}@example.test", "card_number": GOOD_CARD, "checkout": f"form-{uuid.uuid4()}"})
        assert bought.status_code == 201, bought.text
        token, pass_id = bought.json()["visitor_token"], bought.json()["pass"]["id"]
        before = total(org)
        path = f"/v1/agents/{agent_id}/messages"

        responses = race(pair, [send(path, {"visitor_token": token, "reference": f"t{trial}-m{i}"}, OPERATOR_KEY)
                                for i in range(MESSAGES)])

        outcome = codes(responses)
        reasons = Counter(r.json()["error"].get("reason") for r in responses if r.status_code == 403)
        allowed = [r.json() for r in responses if r.status_code == 200]
        assert outcome == Counter({"200": PASS_CREDITS, "access_denied": MESSAGES - PASS_CREDITS}), (outcome, reasons)
        assert reasons == Counter({"credits_used": MESSAGES - PASS_CREDITS})
        # Each success took its own credit: the pass's counts answered are 9, 8, …, 0, each once.
        assert sorted(a["pass"]["credits_left"] for a in allowed) == list(range(PASS_CREDITS))
        assert all(not a["replayed"] and a["cost"] == 1 for a in allowed)
        assert pair.store.scalar("select credits_left from passes where id = :p", p=pass_id) == 0
        spent = pair.store.scalar("select count(*) from credit_ledger where org_id = :o and kind = 'spend'"
                                  " and reference like :r", o=org.id, r=f"t{trial}-m%")
        assert spent == PASS_CREDITS and total(org) == before - PASS_CREDITS
        won = {a["reference"] for a in allowed}
        claimed = pair.store.scalar("select count(*) from credit_ledger where org_id = :o and kind = 'spend'",
                                    o=org.id)
        assert claimed == PASS_CREDITS and len(won) == PASS_CREDITS  # the refused references claimed nothing
        record(f"race: {MESSAGES} visitor messages on a {PASS_CREDITS}-message pass [{pair.backend}]", trials=1,
               violations=0, allowed=len(allowed), refused=MESSAGES - len(allowed))
    pair.assert_healthy(orgs)


def test_16_paywall_submits_of_one_form_make_one_pass(paid_pair: Pair) -> None:
    pair, orgs = paid_pair, []
    rng = rng_for(pair, "paywall_submits")
    for trial in range(RACE_TRIALS):
        org, agent_id = paid_agent(pair, rng.randint(1, 50))
        orgs.append(org)
        form = {"email": f"buyer{trial}@example.test", "card_number": GOOD_CARD, "checkout": f"form-{uuid.uuid4()}"}

        responses = race(pair, [send(f"/v1/agents/{agent_id}/checkout", form, None) for _ in range(SUBMITS)])

        assert Counter(r.status_code for r in responses) == Counter({201: 1, 200: SUBMITS - 1}), \
            [r.text for r in responses if r.status_code not in (200, 201)]
        answers = [r.json() for r in responses]
        assert len({a["pass"]["id"] for a in answers}) == 1
        tokens = [a["visitor_token"] for a in answers if a["visitor_token"] is not None]
        assert len(tokens) == 1 and tokens[0].startswith("swv_")
        [pass_id] = {a["pass"]["id"] for a in answers}
        assert pair.store.scalar("select count(*) from passes where org_id = :o", o=org.id) == 1
        assert pair.store.scalar("select count(*) from contacts where org_id = :o", o=org.id) == 1
        assert pair.store.scalar("select count(distinct gateway_reference) from passes where org_id = :o",
                                 o=org.id) == 1
        # The one token opens the one pass.
        checked = pair.api.client.post(f"/v1/agents/{agent_id}/access", json={"visitor_token": tokens[0]},
                                       headers=headers(OPERATOR_KEY))
        assert checked.status_code == 200 and checked.json()["pass"]["id"] == pass_id, checked.text
        revenue = org.get("/revenue").json()["totals"]
        assert [(t["gross"], t["sales"]) for t in revenue] == [(1200, 1)]
        record(f"race: {SUBMITS} paywall submits of one checkout id [{pair.backend}]", trials=1, violations=0,
               passes=1)
    pair.assert_healthy(orgs)
