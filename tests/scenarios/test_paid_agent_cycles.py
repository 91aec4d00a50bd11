"""Paid agents through whole cycles (SPEC §13), on both databases, as the organization, its visitors
and the platform's backend use them: a pass bought, chatted with until its message credits are used
up and bought again; a pass running out across moves of the simulated clock (a day, and years); a
refund (revoked at once, out of the revenue, given back through the gateway once); a restricted agent
with its contacts and a stranger; and the organization running out of credits, then topping up.

Every message is checked on both sides of the money: the pass's message credits and the
organization's own credits (§11), each taken once per message, never by a replay or a refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, text

from slotwise.services.context import Env
from tests.api.test_paid_agents import access, agent_of, buy, message, set_access
from tests.factories import Api, Org, error_of

EMAIL = "visitor@example.test"
CONFIG = {"price": 1500, "currency": "usd", "access_days": 30, "message_credits": 5}
FEE, NET = 75, 1425  # 5% of 15.00, the platform's; the rest the organization's


def paid_agent(api: Api, config: dict[str, Any] | None = None) -> tuple[Org, str]:
    org = api.create_org("pro")
    agent_id = agent_of(org)
    response = set_access(org, agent_id, "paid", config or CONFIG)
    assert response.status_code == 200, response.text
    return org, agent_id


def bought(client: TestClient, agent_id: str, checkout: str, email: str = EMAIL) -> dict[str, Any]:
    response = buy(client, agent_id, email=email, checkout=checkout)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["visitor_token"], body
    return body


def sent(response: Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def total(org: Org) -> int:
    response = org.get("/credits")
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def spends(engine: Engine, org: Org) -> dict[str, int]:
    """The organization's spend entries: reference → credits taken."""
    with engine.connect() as conn:
        rows = conn.execute(text("select reference, plan_delta + topup_delta from credit_ledger"
                                 " where org_id = :o and kind = 'spend'"), {"o": org.id}).all()
    found = {str(r[0]): -int(r[1]) for r in rows}
    assert len(found) == len(rows), "one entry per reference"
    return found


def stored_pass(engine: Engine, pass_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(text("select * from passes where id = :p"), {"p": pass_id}).one()


def passes(org: Org) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in org.items("/passes")}


def paid_charges(env: Env, pass_id: str) -> list[Any]:
    """The sandbox's paid charges (this process's) for one pass."""
    since = datetime(2000, 1, 1, tzinfo=UTC)
    return [c for c in env.gateway.recent_charges(since=since) if c.invoice_id == pass_id]


def drain(org: Org) -> None:
    """Spend every credit the organization has, the platform's way (documents, then tool runs)."""
    n = 0
    while (left := total(org)) > 0:
        n += 1
        body = ({"activity": "document", "units": min(1000, left // 10), "reference": f"drain-{n}"} if left >= 10
                else {"activity": "tool", "units": left, "reference": f"drain-{n}"})
        response = org.post("/credits/spend", body)
        assert response.status_code == 200, response.text
    assert total(org) == 0


def refused(response: Response, reason: str) -> None:
    assert error_of(response, 403, "access_denied")["reason"] == reason


class TestUsedUpThenBoughtAgain:
    def test_messages_take_one_credit_each_until_used_up_then_a_new_pass(
            self, api: Api, client: TestClient, engine: Engine, env: Env) -> None:
        org, agent_id = paid_agent(api)
        first = bought(client, agent_id, "visit-1")
        token, first_id = first["visitor_token"], first["pass"]["id"]
        assert (first["pass"]["price"], first["pass"]["platform_fee"], first["pass"]["net"]) == (1500, FEE, NET)
        start = total(org)

        for n in range(5):
            body = sent(message(api, agent_id, f"m{n}", visitor_token=token))
            assert (body["replayed"], body["cost"], body["pass"]["credits_left"]) == (False, 1, 4 - n)
            assert body["balance"]["total"] == start - n - 1 == total(org)
        assert body["pass"]["status"] == "used_up"

        for n in (0, 4):  # the platform retries: each answers its first result and takes nothing
            replay = sent(message(api, agent_id, f"m{n}", visitor_token=token))
            assert replay["replayed"] is True and replay["reference"] == f"m{n}"
        assert total(org) == start - 5

        refused(message(api, agent_id, "m5", visitor_token=token), "credits_used")
        refused(message(api, agent_id, "m6", visitor_email="VISITOR@example.test"), "credits_used")
        assert total(org) == start - 5
        assert spends(engine, org) == {f"m{n}": 1 for n in range(5)}  # once per message; refusals claim nothing
        for visitor in ({"visitor_token": token}, {"visitor_email": EMAIL}):
            answer = access(api, agent_id, **visitor)
            assert (answer["allowed"], answer["reason"]) == (False, "credits_used")
            assert (answer["pass"]["id"], answer["pass"]["status"], answer["pass"]["credits_left"]) == (
                first_id, "used_up", 0)
        assert passes(org)[first_id]["status"] == "used_up"

        again = bought(client, agent_id, "visit-2")
        token2, second_id = again["visitor_token"], again["pass"]["id"]
        assert second_id != first_id and token2 != token
        assert (again["pass"]["status"], again["pass"]["credits_left"]) == ("active", 5)
        for visitor in ({"visitor_token": token2}, {"visitor_email": EMAIL}):  # by email: the usable pass
            answer = access(api, agent_id, **visitor)
            assert (answer["allowed"], answer["reason"], answer["pass"]["id"]) == (True, "none", second_id)
        assert access(api, agent_id, visitor_token=token)["reason"] == "credits_used"  # the old one stays so

        body = sent(message(api, agent_id, "m5", visitor_token=token2))  # the refused reference is free
        assert (body["replayed"], body["pass"]["id"], body["pass"]["credits_left"]) == (False, second_id, 4)
        body = sent(message(api, agent_id, "m6", visitor_email=EMAIL))
        assert (body["pass"]["id"], body["pass"]["credits_left"]) == (second_id, 3)
        assert total(org) == start - 7 and len(spends(engine, org)) == 7
        assert stored_pass(engine, first_id).credits_left == 0  # the new pass's messages left the old one

        listed = passes(org)
        assert (listed[first_id]["status"], listed[second_id]["status"]) == ("used_up", "active")
        assert [(c["email"], c["source"]) for c in org.items("/contacts")] == [(EMAIL, "purchase")]  # one contact
        revenue = org.get("/revenue").json()
        assert revenue["totals"] == [{"currency": "usd", "gross": 3000, "platform_fee": 2 * FEE, "net": 2 * NET,
                                      "sales": 2, "refunded": 0}]
        assert revenue["active_subscribers"] == 1
        for pass_id in (first_id, second_id):  # each pass charged once, for its price
            [charge] = paid_charges(env, pass_id)
            assert (charge.amount, charge.reference) == (1500, stored_pass(engine, pass_id).gateway_reference)


class TestExpiry:
    def test_allowed_the_day_before_expired_after(self, api: Api, client: TestClient, engine: Engine) -> None:
        org, agent_id = paid_agent(api)
        sold = bought(client, agent_id, "visit-1")
        token, pass_id = sold["visitor_token"], sold["pass"]["id"]
        expires = datetime.fromisoformat(sold["pass"]["expires_at"].replace("Z", "+00:00"))
        assert expires == datetime(2026, 11, 15, 9, tzinfo=UTC) + timedelta(days=30)  # purchase + duration

        api.advance(29)
        assert access(api, agent_id, visitor_token=token)["allowed"] is True
        assert sent(message(api, agent_id, "day-29", visitor_token=token))["pass"]["credits_left"] == 4
        api.clock_to((expires - timedelta(seconds=1)).isoformat())
        answer = access(api, agent_id, visitor_email=EMAIL)
        assert (answer["allowed"], answer["reason"], answer["pass"]["status"]) == (True, "none", "active")

        api.clock_to(expires.isoformat())  # the clock crosses the subscription's renewal too
        before = total(org)
        for visitor in ({"visitor_token": token}, {"visitor_email": EMAIL}):
            answer = access(api, agent_id, **visitor)
            assert (answer["allowed"], answer["reason"]) == (False, "expired")
            assert (answer["pass"]["status"], answer["pass"]["credits_left"]) == ("expired", 4)
            refused(message(api, agent_id, "after", **visitor), "expired")
        assert total(org) == before and "after" not in spends(engine, org)
        assert passes(org)[pass_id]["status"] == "expired"
        assert org.get("/revenue").json()["active_subscribers"] == 0
        assert org.get("/revenue").json()["totals"][0]["gross"] == 1500  # an expired pass was still sold

        renewed = bought(client, agent_id, "visit-2")
        assert access(api, agent_id, visitor_email=EMAIL)["pass"]["id"] == renewed["pass"]["id"]
        assert sent(message(api, agent_id, "after", visitor_email=EMAIL))["pass"]["credits_left"] == 4

    def test_the_clock_moving_years(self, api: Api, client: TestClient, engine: Engine) -> None:
        org, agent_id = paid_agent(api, {**CONFIG, "access_days": 3650, "message_credits": 1_000_000})
        decade = bought(client, agent_id, "decade")["visitor_token"]
        set_access(org, agent_id, "paid", {**CONFIG, "access_days": 365})  # passes sold keep their ten years
        year = bought(client, agent_id, "year", email="yearly@example.test")["visitor_token"]
        assert buy(client, agent_id, email="yearly@example.test", checkout="year").status_code == 200  # same form

        api.advance(364)
        assert access(api, agent_id, visitor_token=year)["allowed"] is True
        api.advance(731)  # three years in, past the one-year pass; the subscription renewed every month
        answer = access(api, agent_id, visitor_token=year)
        assert (answer["allowed"], answer["reason"]) == (False, "expired")
        assert access(api, agent_id, visitor_token=decade)["allowed"] is True
        assert sent(message(api, agent_id, "year-3", visitor_token=decade))["pass"]["credits_left"] == 999_999

        api.advance(3650 - 364 - 731 - 1)  # the day before the ten-year pass ends
        answer = access(api, agent_id, visitor_token=decade)
        assert (answer["allowed"], answer["pass"]["expires_at"][:10]) == (True, "2036-11-12")
        api.advance(1)
        answer = access(api, agent_id, visitor_token=decade)
        assert (answer["allowed"], answer["reason"], answer["pass"]["credits_left"]) == (False, "expired", 999_999)
        refused(message(api, agent_id, "year-10", visitor_token=decade), "expired")
        assert "year-10" not in spends(engine, org)
        assert {p["status"] for p in passes(org).values()} == {"expired"}
        assert org.summary()["subscription"]["status"] == "active"  # still selling: a new pass works
        fresh = bought(client, agent_id, "year-10")["visitor_token"]
        assert access(api, agent_id, visitor_token=fresh)["allowed"] is True


class TestRefund:
    def test_refund_revokes_reverses_the_revenue_and_happens_once(
            self, api: Api, client: TestClient, engine: Engine, env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
        refunds: list[dict[str, Any]] = []
        real_refund = env.gateway.refund

        def refund(**kw: Any) -> Any:
            made = real_refund(**kw)
            refunds.append({**kw, "made": made.reference})
            return made

        monkeypatch.setattr(env.gateway, "refund", refund)
        org, agent_id = paid_agent(api)
        sold = bought(client, agent_id, "visit-1")
        token, pass_id = sold["visitor_token"], sold["pass"]["id"]
        sent(message(api, agent_id, "before", visitor_token=token))
        assert org.get("/revenue").json()["totals"] == [{"currency": "usd", "gross": 1500, "platform_fee": FEE,
                                                        "net": NET, "sales": 1, "refunded": 0}]
        [charge] = paid_charges(env, pass_id)

        refunded = org.post(f"/passes/{pass_id}/refund")
        assert refunded.status_code == 200, refunded.text
        assert (refunded.json()["status"], refunded.json()["credits_left"]) == ("refunded", 4)
        refunded_at = refunded.json()["refunded_at"]
        assert refunded_at is not None

        before = total(org)
        for visitor in ({"visitor_token": token}, {"visitor_email": EMAIL}):
            answer = access(api, agent_id, **visitor)
            assert (answer["allowed"], answer["reason"]) == (False, "no_pass")
            refused(message(api, agent_id, "after", **visitor), "no_pass")
        assert total(org) == before and set(spends(engine, org)) == {"before"}
        revenue = org.get("/revenue").json()
        reversed_ = [{"currency": "usd", "gross": 0, "platform_fee": 0, "net": 0, "sales": 0, "refunded": 1500}]
        assert revenue["totals"] == reversed_ and revenue["this_month"] == reversed_
        assert revenue["active_subscribers"] == 0
        # At the gateway: the whole payment, on the pass's own charge, once.
        stored = stored_pass(engine, pass_id)
        assert [(r["reference"], r["amount"], r["refunded_before"]) for r in refunds] == [
            (charge.reference, 1500, 0)]
        assert stored.gateway_reference == charge.reference and stored.refund_reference == refunds[0]["made"]
        assert stored.refund_reference.startswith("sbxre_")

        again = org.post(f"/passes/{pass_id}/refund")
        assert again.status_code == 200, again.text
        assert (again.json()["status"], again.json()["refunded_at"]) == ("refunded", refunded_at)
        assert len(refunds) == 1  # nothing more given back
        assert org.get("/revenue").json() == revenue
        assert stored_pass(engine, pass_id).refund_reference == stored.refund_reference

        renewed = bought(client, agent_id, "visit-2")  # a refunded visitor may buy again
        assert access(api, agent_id, visitor_email=EMAIL)["pass"]["id"] == renewed["pass"]["id"]
        assert access(api, agent_id, visitor_token=token)["reason"] == "no_pass"  # the old token stays revoked


class TestRestricted:
    def test_contacts_by_the_api_and_by_a_purchase_and_a_stranger(
            self, api: Api, client: TestClient, engine: Engine) -> None:
        org, paid_id = paid_agent(api)
        restricted = agent_of(org, "Members only")
        assert set_access(org, restricted, "restricted").json()["mode"] == "restricted"
        assert org.post("/contacts", {"email": "friend@example.test"}).status_code == 201
        sold = bought(client, paid_id, "visit-1", email="buyer@example.test")
        assert sorted((c["email"], c["source"]) for c in org.items("/contacts")) == [
            ("buyer@example.test", "purchase"), ("friend@example.test", "api")]

        for email in ("friend@example.test", "Buyer@Example.test"):
            answer = access(api, restricted, visitor_email=email)
            assert answer == {"allowed": True, "reason": "none", "pass": None}
        answer = access(api, restricted, visitor_email="stranger@example.test")
        assert (answer["allowed"], answer["reason"]) == (False, "not_a_contact")

        start = total(org)
        for n, email in enumerate(("friend@example.test", "buyer@example.test")):
            body = sent(message(api, restricted, f"r{n}", visitor_email=email))
            assert body["pass"] is None and body["balance"]["total"] == start - n - 1
        refused(message(api, restricted, "r2", visitor_email="stranger@example.test"), "not_a_contact")
        assert total(org) == start - 2 and set(spends(engine, org)) == {"r0", "r1"}
        # The restricted agent's messages are the organization's credits only, never the pass's.
        assert access(api, paid_id, visitor_token=sold["visitor_token"])["pass"]["credits_left"] == 5

        # Being a contact is not a pass: the paid agent still wants one.
        for email in ("friend@example.test", "stranger@example.test"):
            assert access(api, paid_id, visitor_email=email)["reason"] == "no_pass"
            refused(message(api, paid_id, f"p-{email}", visitor_email=email), "no_pass")
        assert sent(message(api, paid_id, "p-buyer", visitor_email="buyer@example.test"))["pass"]["credits_left"] == 4

        set_access(org, restricted, "free")  # open to anyone, then closed again
        assert access(api, restricted, visitor_email="stranger@example.test")["allowed"] is True
        set_access(org, restricted, "restricted")
        assert access(api, restricted, visitor_email="stranger@example.test")["reason"] == "not_a_contact"
        assert org.post("/contacts", {"email": "stranger@example.test"}).status_code == 201
        assert sent(message(api, restricted, "r2", visitor_email="stranger@example.test"))["replayed"] is False


class TestOrganizationOutOfCredits:
    def test_refused_while_empty_nothing_taken_from_the_pass_then_a_top_up(
            self, api: Api, client: TestClient, engine: Engine) -> None:
        org, agent_id = paid_agent(api)
        sold = bought(client, agent_id, "visit-1")
        token, pass_id = sold["visitor_token"], sold["pass"]["id"]
        sent(message(api, agent_id, "m0", visitor_token=token))
        drain(org)

        for visitor in ({"visitor_token": token}, {"visitor_email": EMAIL}):
            answer = access(api, agent_id, **visitor)
            assert (answer["allowed"], answer["reason"]) == (False, "org_out_of_credits")
            assert (answer["pass"]["status"], answer["pass"]["credits_left"]) == ("active", 4)  # the pass is valid
            error = error_of(message(api, agent_id, "m1", **visitor), 402, "insufficient_credits")
            assert (error.get("cost"), error.get("balance")) == (1, 0), error
        assert stored_pass(engine, pass_id).credits_left == 4  # nothing taken from the pass
        assert "m1" not in spends(engine, org) and total(org) == 0
        assert passes(org)[pass_id]["status"] == "active"

        topped = org.post("/credits/top-up", {"packs": 1})
        assert topped.status_code == 201, topped.text
        assert total(org) == 1000

        assert access(api, agent_id, visitor_token=token)["allowed"] is True
        body = sent(message(api, agent_id, "m1", visitor_token=token))  # the refused reference, now paid for
        assert (body["replayed"], body["pass"]["credits_left"]) == (False, 3)
        assert body["balance"] == {"plan": 0, "topup": 999, "total": 999}
        assert spends(engine, org)["m1"] == 1 and stored_pass(engine, pass_id).credits_left == 3
