"""Credit usage over a date range (SPEC §11 Usage), on SQLite and PostgreSQL: buckets by day, week and
month, the agent filter, who may read it, and the refusals. The roll-up rows are written directly,
as the spend writes them (a row per organization, day and agent; ``''`` for no agent)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from slotwise.db import transaction
from slotwise.models import CreditUsage
from tests.api.test_spend import set_balances
from tests.conftest import OPERATOR_KEY
from tests.factories import Api, Org, error_of

Rows = list[tuple[str, str, int, int]]  # (day, agent_key, credits, messages)


def roll_up(sessions: sessionmaker[Session], org: Org, rows: Rows) -> None:
    with transaction(sessions) as db:
        db.add_all(CreditUsage(org_id=org.id, day=date.fromisoformat(day), agent_key=agent, credits=credits,
                               messages=messages) for day, agent, credits, messages in rows)


def usage(org: Org, token: str | None = None, **params: str) -> dict[str, Any]:
    response = org.api.client.get(org.path + "/usage", params=params,
                                  headers=org.api.bearer(token or org.token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def series(body: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(b["start"], b["credits"], b["messages"]) for b in body["series"]]


class TestBuckets:
    def test_by_default_the_last_30_days_by_day_all_zero_without_usage(self, api: Api) -> None:
        org = api.create_org("pro")  # the clock is at 2026-11-15
        body = usage(org)
        assert (body["from"], body["to"], body["interval"], body["agent_id"]) == (
            "2026-10-17", "2026-11-15", "day", None)
        assert len(body["series"]) == 30
        assert body["series"][0]["start"] == "2026-10-17" and body["series"][-1]["start"] == "2026-11-15"
        assert {(b["credits"], b["messages"]) for b in body["series"]} == {(0, 0)}
        assert (body["credits_used"], body["messages"]) == (0, 0)

    def test_days_sum_every_agent_and_count_only_the_range_and_the_organization(
        self, api: Api, sessions: sessionmaker[Session]
    ) -> None:
        org, other = api.create_org("pro"), api.create_org("pro")
        roll_up(sessions, org, [("2026-11-01", "", 5, 5), ("2026-11-01", "agt_a", 10, 2),
                                ("2026-11-03", "agt_b", 7, 0), ("2026-10-31", "agt_a", 1000, 1000),
                                ("2026-11-04", "agt_a", 1000, 1000)])
        roll_up(sessions, other, [("2026-11-02", "", 99, 99)])
        body = usage(org, **{"from": "2026-11-01", "to": "2026-11-03"})
        assert series(body) == [("2026-11-01", 15, 7), ("2026-11-02", 0, 0), ("2026-11-03", 7, 0)]
        assert (body["credits_used"], body["messages"]) == (22, 7)

    def test_weeks_start_on_monday_and_count_only_days_in_the_range(
        self, api: Api, sessions: sessionmaker[Session]
    ) -> None:
        org = api.create_org("pro")
        roll_up(sessions, org, [("2026-11-03", "", 500, 500),  # Tuesday before 'from': not counted
                                ("2026-11-04", "", 1, 1), ("2026-11-08", "agt_a", 2, 0),  # Wed and Sun
                                ("2026-11-09", "", 4, 4), ("2026-11-20", "", 8, 8),
                                ("2026-11-21", "", 500, 500)])  # after 'to'
        body = usage(org, **{"from": "2026-11-04", "to": "2026-11-20", "interval": "week"})
        assert series(body) == [("2026-11-02", 3, 1), ("2026-11-09", 4, 4), ("2026-11-16", 8, 8)]
        assert (body["credits_used"], body["messages"], body["interval"]) == (15, 13, "week")

    def test_months_start_on_the_first_across_a_new_year(self, api: Api, sessions: sessionmaker[Session]) -> None:
        org = api.create_org("pro")
        roll_up(sessions, org, [("2026-11-30", "", 3, 1), ("2026-12-01", "", 4, 2), ("2026-12-31", "agt_a", 5, 0),
                                ("2027-01-05", "", 6, 6), ("2027-01-06", "", 100, 100)])
        body = usage(org, **{"from": "2026-11-30", "to": "2027-01-05", "interval": "month"})
        assert series(body) == [("2026-11-01", 3, 1), ("2026-12-01", 9, 2), ("2027-01-01", 6, 6)]
        assert body["credits_used"] == 18

    def test_a_single_day_and_the_longest_range(self, api: Api, sessions: sessionmaker[Session]) -> None:
        org = api.create_org("pro")
        roll_up(sessions, org, [("2025-11-15", "", 1, 1), ("2027-11-16", "", 2, 2)])
        one = usage(org, **{"from": "2027-11-16", "to": "2027-11-16"})
        assert series(one) == [("2027-11-16", 2, 2)]
        longest = usage(org, **{"from": "2025-11-15", "to": "2027-11-16"})  # 732 days, both ends included
        assert len(longest["series"]) == 732 and longest["credits_used"] == 3
        months = usage(org, **{"from": "2025-11-15", "to": "2027-11-16", "interval": "month"})
        assert len(months["series"]) == 25


class TestAgentFilter:
    def test_one_agent_only_and_archived_agents_keep_their_usage(
        self, api: Api, sessions: sessionmaker[Session]
    ) -> None:
        org = api.create_org("pro")
        first, second = org.create_agents(2)
        roll_up(sessions, org, [("2026-11-10", first, 10, 3), ("2026-11-10", second, 20, 4),
                                ("2026-11-10", "", 40, 5), ("2026-11-11", first, 1, 1)])
        body = usage(org, agent_id=first, **{"from": "2026-11-10", "to": "2026-11-11"})
        assert series(body) == [("2026-11-10", 10, 3), ("2026-11-11", 1, 1)]
        assert body["agent_id"] == first
        assert org.post(f"/agents/{second}/archive").status_code == 200
        body = usage(org, agent_id=second, **{"from": "2026-11-10", "to": "2026-11-11"})
        assert (body["credits_used"], body["messages"]) == (20, 4)
        everyone = usage(org, agent_id="", **{"from": "2026-11-10", "to": "2026-11-11"})
        assert (everyone["agent_id"], everyone["credits_used"]) == (None, 71)

    @pytest.mark.parametrize("agent_id", ["agt_nobody", "agt_\x00", "a" * 500])
    def test_an_unknown_agent_is_not_found(self, agent_id: str, api: Api) -> None:
        org = api.create_org("pro")
        response = org.api.client.get(org.path + "/usage", params={"agent_id": agent_id},
                                      headers=api.bearer(org.token))
        error_of(response, 404, "not_found")

    def test_another_organizations_agent_is_not_found(self, api: Api, sessions: sessionmaker[Session]) -> None:
        org, other = api.create_org("pro"), api.create_org("pro")
        (theirs,) = other.create_agents(1)
        roll_up(sessions, other, [("2026-11-10", theirs, 10, 3)])
        response = org.get(f"/usage?agent_id={theirs}")
        error_of(response, 404, "not_found")


class TestCapacity:
    def test_chatbots_and_team_members_used_of_their_limits(self, api: Api) -> None:
        org = api.create_org("pro")  # 5 agents, 3 members
        org.create_agents(2)
        org.add_member()
        assert org.add_slots("agent_slots", 2).status_code == 200
        body = usage(org)
        assert body["agents"] == {"used": 2, "limit": 7}
        assert body["members"] == {"used": 2, "limit": 3}
        summary = org.summary()["capacity"]  # the numbers the organization's summary shows
        assert (summary["agents"]["used"], summary["agents"]["total"]) == (2, 7)


class TestWhoMayRead:
    def test_the_operator_key_and_any_member(self, api: Api, sessions: sessionmaker[Session]) -> None:
        org = api.create_org("pro")
        roll_up(sessions, org, [("2026-11-15", "", 4, 4)])
        member = org.add_member("member")
        for token in (OPERATOR_KEY, member["api_token"], org.token):
            assert usage(org, token=token)["credits_used"] == 4

    def test_another_organizations_token_is_not_found(self, api: Api) -> None:
        org, other = api.create_org("pro"), api.create_org("pro")
        error_of(org.get("/usage", token=other.token), 404, "not_found")

    @pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc"])
    def test_no_valid_token_is_unauthenticated(self, header: str | None, api: Api) -> None:
        org = api.create_org("pro")
        headers = {} if header is None else {"Authorization": header}
        error_of(api.client.get(org.path + "/usage", headers=headers), 401, "unauthenticated")

    def test_an_unknown_organization_with_the_operator_key_is_not_found(self, api: Api) -> None:
        response = api.client.get("/v1/organizations/org_nobody/usage", headers=api.bearer(OPERATOR_KEY))
        error_of(response, 404, "not_found")


class TestRefusals:
    @pytest.mark.parametrize(("params", "field"), [
        ({"from": "2026-11-10", "to": "2026-11-09"}, "from"),
        ({"from": "2024-11-13", "to": "2026-11-15"}, "from"),  # 733 days, both ends counted
        ({"from": "2026-02-30"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "20261101"}, "from"),
        ({"to": "2026-11-15T00:00:00Z"}, "to"),
        ({"from": "١٠٢٦-11-01"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "2026-10-01"}, None),  # fine: to defaults to today
        ({"interval": "year"}, "interval"),
        ({"interval": "DAY"}, "interval"),
    ])
    def test_bad_ranges_dates_and_intervals(self, params: dict[str, str], field: str | None, api: Api) -> None:
        org = api.create_org("pro")
        response = api.client.get(org.path + "/usage", params=params, headers=api.bearer(org.token))
        if field is None:
            assert response.status_code == 200, response.text
            return
        assert error_of(response, 422, "invalid_request")["field"] == field

    def test_the_range_check_comes_after_the_caller_check(self, api: Api) -> None:
        org = api.create_org("pro")
        response = api.client.get(org.path + "/usage", params={"from": "bad"})
        error_of(response, 401, "unauthenticated")


class TestThroughTheSpend:
    def test_spends_show_on_the_day_they_were_made_once_each(self, api: Api, engine: Engine) -> None:
        org = api.create_org("pro")
        (agent,) = org.create_agents(1)
        set_balances(engine, org, plan=100, topup=0)
        spends = [{"activity": "message", "model": "premium", "units": 2, "agent_id": agent, "reference": "a-1"},
                  {"activity": "document", "agent_id": agent, "reference": "d-1"},
                  {"activity": "message", "playground": True, "reference": "p-1"},
                  {"activity": "message", "model": "premium", "units": 2, "agent_id": agent, "reference": "a-1"}]
        for body in spends:  # the last one repeats a reference: answered, not counted again
            assert org.post("/credits/spend", body, token=OPERATOR_KEY).status_code == 200
        assert org.post("/credits/spend", {"activity": "document", "units": 100, "reference": "too-much"},
                        token=OPERATOR_KEY).status_code == 402  # refused: nothing spent, nothing counted
        today = usage(org, **{"from": "2026-11-15", "to": "2026-11-15"})
        assert series(today) == [("2026-11-15", 20, 3)]
        mine = usage(org, agent_id=agent, **{"from": "2026-11-15", "to": "2026-11-15"})
        assert (mine["credits_used"], mine["messages"]) == (20, 2)
