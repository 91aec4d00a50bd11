"""POST /v1/organizations/{org}/credits/spend (SPEC §11): plan first, then top-up; refused whole when
short; a reference answers once for ever; on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.conftest import OPERATOR_KEY
from tests.credit_support import set_balances
from tests.factories import Api, Org, error_of


def account(engine: Engine, org: Org) -> Any:
    with engine.connect() as conn:
        return conn.execute(text("select * from credit_accounts where org_id = :o"), {"o": org.id}).one()


def ledger_sums(engine: Engine, org: Org) -> tuple[int, int]:
    with engine.connect() as conn:
        row = conn.execute(text("select coalesce(sum(plan_delta), 0), coalesce(sum(topup_delta), 0)"
                                " from credit_ledger where org_id = :o"), {"o": org.id}).one()
    return int(row[0]), int(row[1])


def spend(org: Org, reference: str, activity: str = "message", token: str | None = None, **body: Any) -> Any:
    return org.post("/credits/spend", {"activity": activity, "reference": reference, **body}, token=token)


@pytest.fixture
def org(api: Api) -> Org:
    return api.create_org(plan="pro")


class TestSpendOrder:
    def test_plan_credits_go_first_then_top_up(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=3, topup=10)
        response = spend(org, "answer-1", units=5)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["cost"], body["from_plan"], body["from_topup"]) == (5, 3, 2)
        assert body["balance"] == {"plan": 0, "topup": 8, "total": 8}
        assert body["reference"] == "answer-1" and body["replayed"] is False
        assert ledger_sums(engine, org) == (0, 8)

    def test_costs_come_from_the_catalog(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=1000, topup=0)
        costs = {("message", "standard"): 1, ("message", "premium"): 5, ("document", "standard"): 10,
                 ("voice", "standard"): 2, ("tool", "standard"): 1}
        for i, ((activity, model), unit) in enumerate(costs.items()):
            body = spend(org, f"ref-{i}", activity, model=model, units=3).json()
            assert body["cost"] == 3 * unit, (activity, model, body)
        assert account(engine, org).plan_balance == 1000 - 3 * sum(costs.values())

    def test_a_spend_that_fits_exactly_leaves_zero(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=2, topup=3)
        assert spend(org, "all", "voice", units=2).json()["balance"]["total"] == 1
        assert spend(org, "rest", "tool").json()["balance"] == {"plan": 0, "topup": 0, "total": 0}


class TestRefusal:
    def test_short_is_refused_whole_with_cost_and_balance(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=3, topup=1)
        error = error_of(spend(org, "doc-1", "document"), 402, "insufficient_credits")
        assert error["message"] == "Not enough credits to respond."
        assert (error["cost"], error["balance"]) == (10, 4)
        assert (account(engine, org).plan_balance, account(engine, org).topup_balance) == (3, 1)
        assert ledger_sums(engine, org) == (3, 1)

    def test_voice_says_so(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=1, topup=0)
        error = error_of(spend(org, "rec-1", "voice"), 402, "insufficient_credits")
        assert error["message"] == "Insufficient credits to transcribe this recording."

    def test_a_refused_spend_does_not_claim_its_reference(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=0, topup=0)
        error_of(spend(org, "later"), 402, "insufficient_credits")
        set_balances(engine, org, plan=5, topup=0)
        response = spend(org, "later")
        assert response.status_code == 200 and response.json()["replayed"] is False
        assert response.json()["balance"]["total"] == 4


class TestReference:
    def test_the_same_body_answers_the_first_result_and_debits_nothing(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=10, topup=5)
        first = spend(org, "a-1", units=12).json()
        again = spend(org, "a-1", units=12).json()
        assert again["replayed"] is True
        first.pop("replayed"), again.pop("replayed")
        assert again == first
        assert account(engine, org).plan_balance + account(engine, org).topup_balance == 3

    def test_another_body_is_a_conflict(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=10, topup=0)
        spend(org, "a-2")
        error_of(spend(org, "a-2", units=2), 409, "idempotency_conflict")
        error_of(spend(org, "a-2", "tool"), 409, "idempotency_conflict")
        assert account(engine, org).plan_balance == 9

    def test_references_are_per_organization(self, api: Api, org: Org, engine: Engine) -> None:
        other = api.create_org(plan="starter")
        set_balances(engine, org, plan=5, topup=0)
        set_balances(engine, other, plan=5, topup=0)
        assert spend(org, "shared").json()["replayed"] is False
        assert spend(other, "shared").json()["replayed"] is False


class TestPlayground:
    def test_costs_nothing_but_is_recorded(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=0, topup=0)
        body = spend(org, "play-1", units=7, playground=True, model="premium").json()
        assert (body["cost"], body["balance"]["total"]) == (0, 0)
        with engine.connect() as conn:
            usage = conn.execute(text("select credits, messages from credit_usage where org_id = :o"),
                                 {"o": org.id}).one()
            kinds = conn.execute(text("select kind, cost, playground from credit_ledger where org_id = :o"
                                      " and reference = 'play-1'"), {"o": org.id}).one()
        assert tuple(usage) == (0, 7)
        assert (kinds.kind, kinds.cost, bool(kinds.playground)) == ("spend", 0, True)


class TestAgents:
    def test_the_agent_must_be_the_organizations_and_not_archived(self, api: Api, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=10, topup=0)
        mine = org.create_agents(1)[0]
        theirs = api.create_org(plan="pro").create_agents(1)[0]
        assert spend(org, "m-1", agent_id=mine).status_code == 200
        error_of(spend(org, "m-2", agent_id=theirs), 404, "not_found")
        error_of(spend(org, "m-3", agent_id="agt_nope"), 404, "not_found")
        assert org.post(f"/agents/{mine}/archive", None).status_code == 200
        error_of(spend(org, "m-4", agent_id=mine), 409, "conflict")
        assert account(engine, org).plan_balance == 9

    def test_usage_is_rolled_up_per_day_and_agent(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=100, topup=0)
        agent = org.create_agents(1)[0]
        spend(org, "u-1", agent_id=agent, units=2)
        spend(org, "u-2", agent_id=agent, model="premium")
        spend(org, "u-3", "document")
        with engine.connect() as conn:
            rows = {r.agent_key: (r.credits, r.messages) for r in conn.execute(
                text("select agent_key, credits, messages from credit_usage where org_id = :o"), {"o": org.id})}
        assert rows == {agent: (7, 3), "": (10, 0)}


class TestWhoMaySpend:
    def test_the_operator_key_and_any_member(self, api: Api, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=10, topup=0)
        member = org.add_member("member")
        assert spend(org, "k-1", token=OPERATOR_KEY).status_code == 200
        assert spend(org, "k-2", token=member["api_token"]).status_code == 200
        stranger = api.create_org(plan="pro")
        error_of(spend(org, "k-3", token=stranger.token), 404, "not_found")
        error_of(spend(org, "k-4", token="nope"), 401, "unauthenticated")
        assert account(engine, org).plan_balance == 8

    def test_an_unknown_organization_is_not_found_for_the_operator(self, api: Api) -> None:
        response = api.client.post("/v1/organizations/org_nope/credits/spend",
                                   json={"activity": "message", "reference": "x"}, headers=api.bearer(OPERATOR_KEY))
        error_of(response, 404, "not_found")

    @pytest.mark.parametrize("body", [
        {"activity": "video", "reference": "r"}, {"activity": "message"}, {"activity": "message", "reference": ""},
        {"activity": "message", "reference": "r", "units": 0},
        {"activity": "message", "reference": "r", "units": 1001},
        {"activity": "message", "reference": "r", "units": "2"},
        {"activity": "message", "reference": "r", "model": "x"},
        {"activity": "message", "reference": "r\x00"}, {"activity": "message", "reference": "r", "extra": 1},
        {"activity": "message", "reference": "r", "agent_id": "agt_\x00"},
    ])
    def test_bad_input_is_a_clear_422(self, org: Org, body: dict[str, Any]) -> None:
        error_of(org.post("/credits/spend", body), 422, "invalid_request")


class TestAutoRechargeRequest:
    def test_falling_below_the_threshold_queues_one_recharge(self, org: Org, engine: Engine) -> None:
        set_balances(engine, org, plan=0, topup=120)
        with engine.begin() as conn:
            conn.execute(text("update credit_accounts set recharge_enabled = true, recharge_threshold = 100,"
                              " recharge_max_per_period = 2 where org_id = :o"), {"o": org.id})
        spend(org, "r-1", units=10)  # 110: still above
        assert account(engine, org).recharge_job_id is None
        spend(org, "r-2", units=20)  # 90: below, one recharge queued
        spend(org, "r-3", units=20)  # 70: one is already in flight
        job_id = account(engine, org).recharge_job_id
        with engine.connect() as conn:
            jobs = conn.execute(text("select id, kind from jobs where org_id = :o"), {"o": org.id}).all()
        assert [tuple(j) for j in jobs] == [(job_id, "credit_recharge")]


@pytest.mark.parametrize("suffix", ["", "/agents", "/credits/spend"])
def test_an_id_with_a_control_character_is_simply_not_found(api: Api, org: Org, suffix: str) -> None:
    """PostgreSQL refuses a NUL in a parameter outright: it must never reach a statement (a 500)."""
    path = f"/v1/organizations/{org.id}%00{suffix}"
    headers = api.bearer(org.token)
    response = (api.client.get(path, headers=headers) if not suffix else
                api.client.post(path, headers=headers, json={"name": "A"} if suffix == "/agents"
                                else {"activity": "tool", "reference": "nul"}))
    error_of(response, 404, "not_found")
    operator = api.client.post(f"/v1/organizations/{org.id}%00/credits/spend", headers=api.bearer(OPERATOR_KEY),
                               json={"activity": "tool", "reference": "nul"})
    error_of(operator, 404, "not_found")


def test_a_spend_sent_with_an_idempotency_key_takes_the_general_path_alike(org: Org, engine: Engine) -> None:
    """On PostgreSQL a request with an Idempotency-Key is not taken by the fast lane: the general route
    answers it the same way (the reference, not the key, is what makes a spend idempotent)."""
    set_balances(engine, org, plan=10, topup=0)
    first = org.post("/credits/spend", {"activity": "tool", "reference": "keyed", "units": 3}, key="k-1")
    again = org.post("/credits/spend", {"activity": "tool", "reference": "keyed", "units": 3}, key="k-2")
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json()["balance"]["total"] == 7 and again.json()["replayed"] is True
    error_of(org.post("/credits/spend", {"activity": "tool", "reference": "big", "units": 8}, key="k-3"),
             402, "insufficient_credits")
    assert account(engine, org).plan_balance == 7
