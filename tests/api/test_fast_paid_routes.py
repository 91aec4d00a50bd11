"""The paid agents' fast routes (api/paid_lane.py) answer exactly as the general routes do.

On PostgreSQL ``FastRoutes`` answers the access check and the visitor message (operator key) on the
fast lane, each one statement. A request with an ``Idempotency-Key`` header passes through to the
general route (``services.paid_access``), which ignores the key: so every case here sends the same
request both ways, on the same data, and compares status and body. A message that spends is compared
across two organizations set up alike (the lane in one, the general route in the other), their
stored rows too. SQLite has no lane (both ways would be the general route), so these run on PostgreSQL only.
"""

from __future__ import annotations

import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, text

from slotwise.api import paid_lane
from tests.api.test_paid_agents import agent_of, buy, paid_agent, set_access
from tests.credit_support import set_balances
from tests.factories import Api, Org, error_of
from tests.test_round_trips import counted_over_http

_keys = itertools.count(1)
CONFIG = {"price": 999, "currency": "usd", "access_days": 30, "message_credits": 3}


@pytest.fixture(params=["postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The fast lane is PostgreSQL's: this module's cases run there only (not skipped on SQLite)."""
    return str(request.param)


def _post(api: Api, path: str, body: Any, *, general: bool, token: str | bool | None = None,
          content: bytes | None = None, content_type: str = "application/json") -> Response:
    headers = {"Content-Type": content_type}
    if token is not False:  # False: no Authorization header
        headers.update(api.bearer(token if isinstance(token, str) else api.operator_key))
    if general:  # passes FastRoutes by; the general route ignores the key
        headers["Idempotency-Key"] = f"general-{next(_keys)}"
    raw = content if content is not None else json.dumps(body).encode()
    return api.client.post(path, content=raw, headers=headers)


def both(api: Api, path: str, body: Any = None, **kw: Any) -> Response:
    """The lane's answer, after checking the general route answers the same (status, body, headers
    that matter)."""
    lane = _post(api, path, body, general=False, **kw)
    general = _post(api, path, body, general=True, **kw)
    assert (lane.status_code, lane.json()) == (general.status_code, general.json())
    assert lane.headers["content-type"] == general.headers["content-type"]
    return lane


def access(api: Api, agent_id: str, **visitor: str) -> dict[str, Any]:
    answer = both(api, f"/v1/agents/{agent_id}/access", visitor)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def message(api: Api, agent_id: str, reference: str, **visitor: str) -> Response:
    """A message both ways on the same data: for a refusal or a replay, which change nothing."""
    return both(api, f"/v1/agents/{agent_id}/messages", {"reference": reference, **visitor})


def state(engine: Engine, org: Org) -> dict[str, Any]:
    """What a message changes, ids left out."""
    with engine.connect() as conn:
        return {
            "account": conn.execute(text("select plan_balance, topup_balance, used_in_period, recharge_job_id is null "
                                         "from credit_accounts where org_id = :o"), {"o": org.id}).all(),
            "ledger": conn.execute(text("select kind, plan_delta, topup_delta, reference, activity, model, units, "
                                        "cost, playground, plan_after, topup_after from credit_ledger "
                                        "where org_id = :o order by created_at, reference"), {"o": org.id}).all(),
            "usage": conn.execute(text("select day, credits, messages from credit_usage where org_id = :o"),
                                  {"o": org.id}).all(),
            "passes": conn.execute(text("select credits_left from passes where org_id = :o"), {"o": org.id}).all(),
            "jobs": conn.execute(text("select kind from jobs where org_id = :o"), {"o": org.id}).all()}


def _without_ids(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("pass"):
        body = {**body, "pass": {**body["pass"], "id": "<id>"}}
    return body


class TestTheLaneAnswers:
    def test_each_route_is_one_statement_on_the_lane_after_the_clock(self, api: Api, client: TestClient,
                                                                     engine: Engine) -> None:
        _, agent_id = paid_agent(api, CONFIG)
        token = buy(client, agent_id).json()["visitor_token"]
        for route, body, statement in (("access", {"visitor_token": token}, paid_lane.ACCESS[True]),
                                       ("messages", {"visitor_token": token, "reference": "one"},
                                        paid_lane.MESSAGE[True])):
            with counted_over_http(api, engine) as sent:
                assert _post(api, f"/v1/agents/{agent_id}/{route}", body, general=False).status_code == 200
            # The simulated clock (the suite's) is read first; on the system clock it is the one statement.
            assert len(sent) == 2 and "clock_state" in sent[0] and sent[1] == statement.sql, sent
            with counted_over_http(api, engine) as sent:  # and the keyed one is the general route's
                again = {**body, "reference": "two"} if route == "messages" else body
                assert _post(api, f"/v1/agents/{agent_id}/{route}", again, general=True).status_code == 200
            assert statement.sql not in sent and len(sent) > 2, sent


class TestTheAccessCheck:
    def test_allowed_by_token_and_by_email(self, api: Api, client: TestClient) -> None:
        _, agent_id = paid_agent(api, CONFIG)
        token = buy(client, agent_id, email="Visitor@Example.test").json()["visitor_token"]
        assert access(api, agent_id, visitor_token=token)["allowed"] is True
        assert access(api, agent_id, visitor_email="visitor@example.TEST")["pass"]["credits_left"] == 3

    def test_no_pass_unknown_token_stranger_and_refunded(self, api: Api, client: TestClient) -> None:
        org, agent_id = paid_agent(api, CONFIG)
        assert access(api, agent_id, visitor_token="swv_nope")["reason"] == "no_pass"
        assert access(api, agent_id, visitor_email="stranger@example.test")["reason"] == "no_pass"
        token = buy(client, agent_id).json()["visitor_token"]
        [sold] = org.get("/passes").json()["data"]
        assert org.post(f"/passes/{sold['id']}/refund").status_code == 200
        assert access(api, agent_id, visitor_token=token)["reason"] == "no_pass"
        assert access(api, agent_id, visitor_email="visitor@example.test")["pass"]["status"] == "refunded"

    def test_agent_not_public_missing_archived_or_unsubscribed(self, api: Api, client: TestClient,
                                                               engine: Engine) -> None:
        org, agent_id = paid_agent(api, CONFIG)
        token = buy(client, agent_id).json()["visitor_token"]
        assert access(api, "agt_missing", visitor_token=token)["reason"] == "agent_not_public"
        with engine.begin() as conn:
            conn.execute(text("update subscriptions set status = 'canceled' where org_id = :o"), {"o": org.id})
        assert access(api, agent_id, visitor_token=token)["reason"] == "agent_not_public"
        with engine.begin() as conn:
            conn.execute(text("update subscriptions set status = 'active' where org_id = :o"), {"o": org.id})
        assert org.post(f"/agents/{agent_id}/archive").status_code == 200
        assert access(api, agent_id, visitor_token=token) == {"allowed": False, "reason": "agent_not_public",
                                                              "pass": None}

    def test_restricted_and_free(self, api: Api, client: TestClient) -> None:
        org = api.create_org("pro")
        agent_id = agent_of(org)
        assert access(api, agent_id, visitor_email="anyone@example.test")["allowed"] is True
        set_access(org, agent_id, "restricted")
        org.post("/contacts", {"email": "friend@example.test"})
        assert access(api, agent_id, visitor_email="FRIEND@example.test")["allowed"] is True
        assert access(api, agent_id, visitor_email="stranger@example.test")["reason"] == "not_a_contact"
        assert access(api, agent_id, visitor_token="swv_nope")["reason"] == "not_a_contact"
        paid_id = agent_of(org, "Paid")  # a pass on another of the organization's agents makes its buyer known
        assert set_access(org, paid_id, "paid", CONFIG).status_code == 200
        token = buy(client, paid_id, email="buyer@example.test").json()["visitor_token"]
        assert access(api, agent_id, visitor_token=token)["allowed"] is True
        _, foreign_paid = paid_agent(api, CONFIG)
        foreign = buy(client, foreign_paid, email="stranger@example.test").json()["visitor_token"]
        assert access(api, agent_id, visitor_token=foreign)["reason"] == "not_a_contact"
        assert message(api, agent_id, "r", visitor_token=foreign).status_code == 403

    def test_expired_credits_used_and_org_out_of_credits(self, api: Api, client: TestClient, engine: Engine) -> None:
        org, agent_id = paid_agent(api, {**CONFIG, "message_credits": 1})
        token = buy(client, agent_id).json()["visitor_token"]
        set_balances(engine, org, plan=0, topup=0)
        assert access(api, agent_id, visitor_token=token)["reason"] == "org_out_of_credits"
        set_balances(engine, org, plan=0, topup=10)
        assert _post(api, f"/v1/agents/{agent_id}/messages", {"visitor_token": token, "reference": "m"},
                     general=False).status_code == 200
        assert access(api, agent_id, visitor_token=token)["reason"] == "credits_used"
        other = buy(client, agent_id, email="other@example.test", checkout="form-2").json()["visitor_token"]
        api.advance(30)
        assert access(api, agent_id, visitor_token=other)["reason"] == "expired"


class TestTheVisitorMessage:
    def test_allowed_spends_alike_on_the_lane_and_the_general_route(self, api: Api, client: TestClient,
                                                                    engine: Engine) -> None:
        worlds = []
        for _ in range(2):
            org, agent_id = paid_agent(api, CONFIG)
            worlds.append((org, agent_id, buy(client, agent_id).json()["visitor_token"]))
        answers: list[list[Any]] = [[], []]
        for n, model in enumerate(("standard", "premium", "standard")):
            for general, (_, agent_id, token) in enumerate(worlds):
                sent = _post(api, f"/v1/agents/{agent_id}/messages",
                             {"visitor_token": token, "reference": f"m{n}", "model": model}, general=bool(general))
                answers[general].append((sent.status_code, _without_ids(sent.json())))
        assert answers[0] == answers[1]
        assert [a[1]["pass"]["credits_left"] for a in answers[0]] == [2, 1, 0]
        assert answers[0][-1][1]["pass"]["status"] == "used_up"
        assert state(engine, worlds[0][0]) == state(engine, worlds[1][0])

    @pytest.mark.parametrize("general", [False, True], ids=["lane", "general"])
    def test_the_message_that_crosses_the_low_line_writes_credits_low_once(
            self, api: Api, client: TestClient, engine: Engine, general: bool) -> None:
        org, agent_id = paid_agent(api, CONFIG)
        token = buy(client, agent_id).json()["visitor_token"]
        set_balances(engine, org, plan=0, topup=101)  # the auto-recharge threshold is 100
        for n, total in enumerate((100, 99, 98)):
            sent = _post(api, f"/v1/agents/{agent_id}/messages", {"visitor_token": token, "reference": f"m{n}"},
                         general=general)
            assert sent.status_code == 200 and sent.json()["balance"]["total"] == total, sent.text
        with engine.connect() as conn:
            crossed = conn.execute(text("select type, payload from events where org_id = :o and type like 'credits.%'"),
                                   {"o": org.id}).all()
        assert [(e.type, json.loads(e.payload)["balance"]["total"]) for e in crossed] == [("credits.low", 99)]
        assert json.loads(crossed[0].payload)["reference"] == "m1"

    def test_free_and_restricted_agents_spend_alike(self, api: Api, engine: Engine) -> None:
        orgs = []
        for general in (False, True):
            org = api.create_org("pro")
            free_agent, restricted = agent_of(org), agent_of(org, "Restricted")
            set_access(org, restricted, "restricted")
            org.post("/contacts", {"email": "friend@example.test"})
            for agent_id, ref in ((free_agent, "f"), (restricted, "r")):
                sent = _post(api, f"/v1/agents/{agent_id}/messages",
                             {"visitor_email": "friend@example.test", "reference": ref}, general=general)
                assert sent.status_code == 200 and sent.json()["pass"] is None, sent.text
            orgs.append(org)
        assert state(engine, orgs[0]) == state(engine, orgs[1])

    def test_each_refusal_reason_takes_nothing(self, api: Api, client: TestClient, engine: Engine) -> None:
        org, agent_id = paid_agent(api, {**CONFIG, "message_credits": 1})
        token = buy(client, agent_id).json()["visitor_token"]
        refused = error_of(message(api, agent_id, "x", visitor_token="swv_nope"), 403, "access_denied")
        assert refused["reason"] == "no_pass"
        assert error_of(message(api, "agt_missing", "x", visitor_token=token), 403,
                        "access_denied")["reason"] == "agent_not_public"
        set_balances(engine, org, plan=0, topup=0)
        before = state(engine, org)
        error = error_of(message(api, agent_id, "x", visitor_token=token), 402, "insufficient_credits")
        assert error["balance"] == 0
        assert state(engine, org) == before
        set_balances(engine, org, plan=5, topup=0)
        assert _post(api, f"/v1/agents/{agent_id}/messages", {"visitor_token": token, "reference": "last"},
                     general=False).status_code == 200
        before = state(engine, org)
        assert error_of(message(api, agent_id, "x", visitor_token=token), 403,
                        "access_denied")["reason"] == "credits_used"
        restricted = agent_of(org, "Restricted")
        set_access(org, restricted, "restricted")
        assert error_of(message(api, restricted, "x", visitor_email="stranger@example.test"), 403,
                        "access_denied")["reason"] == "not_a_contact"
        other = buy(client, agent_id, email="other@example.test", checkout="form-2").json()["visitor_token"]
        api.advance(30)
        before = state(engine, org)
        assert error_of(message(api, agent_id, "x", visitor_token=other), 403,
                        "access_denied")["reason"] == "expired"
        assert state(engine, org) == before

    def test_a_repeated_reference_replays_and_takes_nothing(self, api: Api, client: TestClient,
                                                            engine: Engine) -> None:
        org, agent_id = paid_agent(api, CONFIG)
        token = buy(client, agent_id).json()["visitor_token"]
        first = _post(api, f"/v1/agents/{agent_id}/messages", {"visitor_token": token, "reference": "r1"},
                      general=False)
        assert first.status_code == 200, first.text
        before = state(engine, org)
        replay = message(api, agent_id, "r1", visitor_token=token).json()
        assert replay["replayed"] is True and replay["balance"] == first.json()["balance"]
        assert replay["pass"]["credits_left"] == 2  # the pass as it is
        error_of(both(api, f"/v1/agents/{agent_id}/messages",
                      {"visitor_token": token, "reference": "r1", "model": "premium"}), 409, "idempotency_conflict")
        assert state(engine, org) == before

    def test_concurrent_messages_on_one_pass_take_exactly_its_credits(self, api: Api, client: TestClient,
                                                                     engine: Engine) -> None:
        org, agent_id = paid_agent(api, CONFIG)
        token = buy(client, agent_id).json()["visitor_token"]
        before = state(engine, org)["account"][0]

        def send(n: int) -> int:
            return _post(api, f"/v1/agents/{agent_id}/messages", {"visitor_token": token, "reference": f"c{n}"},
                         general=False).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(send, range(12)))
        assert sorted(codes) == [200] * 3 + [403] * 9
        after = state(engine, org)
        assert after["passes"] == [(0,)] and len([e for e in after["ledger"] if e.kind == "spend"]) == 3
        assert after["account"][0][0] + after["account"][0][1] == before[0] + before[1] - 3


class TestWhatTheLaneDoesNotTake:
    @pytest.mark.parametrize("route", ["access", "messages"])
    def test_bad_bodies_are_the_general_routes_422(self, api: Api, client: TestClient, route: str) -> None:
        _, agent_id = paid_agent(api, CONFIG)
        path = f"/v1/agents/{agent_id}/{route}"
        extra = {"reference": "b"} if route == "messages" else {}
        for body in ({**extra}, {"visitor_token": "t", "visitor_email": "a@example.test", **extra},
                     {"visitor_token": "", **extra}, {"visitor_token": "t", "other": 1, **extra}):
            error_of(both(api, path, body), 422, "invalid_request")
        error_of(both(api, path, None, content=b'{"visitor_token": '), 422, "invalid_request")
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            both(api, path, None, content=b'{"visitor_token": "t", "reference": "b"}', content_type=content_type)
        if route == "messages":
            error_of(both(api, path, {"visitor_token": "t"}), 422, "invalid_request")
            error_of(both(api, path, {"visitor_token": "t", "reference": "b", "model": "huge"}), 422,
                     "invalid_request")

    @pytest.mark.parametrize("route", ["access", "messages"])
    def test_no_key_a_wrong_key_and_a_user_token_are_refused(self, api: Api, client: TestClient,
                                                             route: str) -> None:
        org, agent_id = paid_agent(api, CONFIG)
        token = buy(client, agent_id).json()["visitor_token"]
        body = {"visitor_token": token, "reference": "k"}
        path = f"/v1/agents/{agent_id}/{route}"
        error_of(both(api, path, body, token=False), 401, "unauthenticated")
        error_of(both(api, path, body, token="not-the-key"), 401, "unauthenticated")
        error_of(both(api, path, body, token=org.token), 401, "unauthenticated")
        error_of(both(api, "/v1/agents/agt%01x/" + route, body), 404, "not_found")
