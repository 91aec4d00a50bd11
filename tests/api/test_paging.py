"""Lists are paged by a cursor (SPEC §6): `?limit=` 1–100 (default 50) and `?starting_after=<id>`,
answering `{data, has_more}`. Walking the pages gives every item exactly once, in the list's order."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, event

from tests.factories import GOOD_CARD, Api, Org, error_of, invite

LISTS = ["/invoices", "/agents", "/members", "/invitations"]


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def pages(org: Org, suffix: str, limit: int) -> list[dict[str, Any]]:
    """Every page of a list, following ``starting_after`` from the last item of each page."""
    bodies = [ok(org.get(f"{suffix}?limit={limit}"))]
    while bodies[-1]["has_more"]:
        assert len(bodies) < 100, "the pages never end"
        last = bodies[-1]["data"][-1]["id"]
        bodies.append(ok(org.get(f"{suffix}?limit={limit}&starting_after={quote(last)}")))
    return bodies


def walk(org: Org, suffix: str, limit: int) -> tuple[list[int], list[dict[str, Any]]]:
    """The size of each page and every item, in the order the pages gave them."""
    bodies = pages(org, suffix, limit)
    assert [b["has_more"] for b in bodies] == [True] * (len(bodies) - 1) + [False]
    return [len(b["data"]) for b in bodies], [item for b in bodies for item in b["data"]]


def by_time_then_id(items: list[dict[str, Any]]) -> list[str]:
    return [i["id"] for i in sorted(items, key=lambda i: (i["created_at"], i["id"]))]


class TestEveryItemOnce:
    def test_122_invoices_in_pages_of_50_newest_first(self, api: Api) -> None:
        org = api.create_org("pro", card=GOOD_CARD)  # invoice #1
        api.clock_to("2031-11-15T09:00:00Z")
        api.clock_to("2036-12-15T09:00:00Z")  # 121 monthly renewals: #2 … #122
        sizes, invoices = walk(org, "/invoices", 50)
        assert sizes == [50, 50, 22]
        assert [i["number"] for i in invoices] == list(range(122, 0, -1))
        assert len({i["id"] for i in invoices}) == 122

    def test_the_default_page_is_50_and_100_is_the_largest(self, api: Api) -> None:
        org = api.create_org("pro", card=GOOD_CARD)
        api.clock_to("2031-11-15T09:00:00Z")  # 61 invoices
        first = ok(org.get("/invoices"))
        assert (len(first["data"]), first["has_more"]) == (50, True)
        whole = ok(org.get("/invoices?limit=100"))
        assert (len(whole["data"]), whole["has_more"]) == (61, False)
        assert whole["data"][:50] == first["data"]

    def test_more_than_100_agents_by_creation_then_name_then_id(self, api: Api) -> None:
        org = api.create_org("pro", card=GOOD_CARD)  # 5 agents included
        assert org.add_slots("agent_slots", 100).status_code == 200
        names = [f"b-{n:03d}" for n in range(60)]
        names[50] = names[49]  # equal time and name across the first page boundary: the id decides
        first_day = [self._agent(org, name) for name in names]
        api.clock_to("2026-11-16T09:00:00Z")
        second_day = [self._agent(org, f"a-{n:03d}") for n in range(45)]  # later, though named earlier
        expected = sorted(first_day, key=lambda a: (a["name"], a["id"])) + second_day
        sizes, agents = walk(org, "/agents", 50)
        assert sizes == [50, 50, 5]
        assert [a["id"] for a in agents] == [a["id"] for a in expected]

    @staticmethod
    def _agent(org: Org, name: str) -> dict[str, Any]:
        response = org.post("/agents", {"name": name})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def test_members_and_invitations_by_time_then_id(self, api: Api) -> None:
        org = api.create_org("business")  # 10 seats
        for day in ("2026-11-16", "2026-11-17"):
            org.add_member()
            org.add_member("admin")
            assert invite(org).status_code == 201
            assert invite(org).status_code == 201
            api.clock_to(f"{day}T09:00:00Z")
        org.add_member()
        sizes, members = walk(org, "/members", 2)
        assert sizes == [2, 2, 2]  # a full last page still says has_more: false
        assert [m["id"] for m in members] == by_time_then_id(members)
        sizes, invitations = walk(org, "/invitations", 3)
        assert sizes == [3, 1]
        assert [i["id"] for i in invitations] == by_time_then_id(invitations)

    @pytest.mark.parametrize("suffix", LISTS)
    def test_an_empty_remainder_and_an_empty_list(self, api: Api, suffix: str) -> None:
        org = api.create_org("business", card=GOOD_CARD)
        if suffix == "/agents":
            assert ok(org.get(suffix)) == {"data": [], "has_more": False}
            return
        if suffix == "/invitations":
            assert ok(org.get(suffix)) == {"data": [], "has_more": False}
            assert invite(org).status_code == 201
        [only] = ok(org.get(suffix))["data"]
        assert ok(org.get(f"{suffix}?starting_after={only['id']}")) == {"data": [], "has_more": False}


class TestOneQueryAPage:
    def test_a_page_is_one_keyset_query_plus_the_cursor_lookup(self, api: Api, engine: Engine) -> None:
        org = api.create_org("pro")
        first, _, _ = org.create_agents(3)
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(" ".join(statement.lower().split()))

        event.listen(engine, "before_cursor_execute", seen)
        try:
            page = ok(org.get(f"/agents?limit=1&starting_after={first}"))
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        assert (len(page["data"]), page["has_more"]) == (1, True)
        on_agents = [s for s in statements if "from agents" in s]
        assert len(on_agents) == 2, on_agents  # the cursor row, then the page
        assert "(agents.created_at, agents.name, agents.id) > (" in on_agents[1]  # a keyset, not an offset


class TestBadParameters:
    @pytest.mark.parametrize("suffix", LISTS)
    @pytest.mark.parametrize("limit", ["0", "101", "abc", "1.5", "-1", "", "1e1", "%2B5", "99999999999999999999"])
    def test_a_limit_outside_1_to_100_is_invalid(self, api: Api, suffix: str, limit: str) -> None:
        org = api.create_org("pro")
        error = error_of(org.get(f"{suffix}?limit={limit}"), 422, "invalid_request")
        assert ["query", "limit"] in [e["loc"] for e in error["errors"]]

    @pytest.mark.parametrize("suffix", LISTS)
    def test_a_cursor_from_another_organization_is_refused(self, api: Api, suffix: str) -> None:
        mine, theirs = api.create_org("business", card=GOOD_CARD), api.create_org("business", card=GOOD_CARD)
        theirs.create_agents(1)
        assert invite(theirs).status_code == 201
        [their_item] = ok(theirs.get(suffix))["data"]
        error = error_of(mine.get(f"{suffix}?starting_after={their_item['id']}"), 422, "invalid_request")
        assert error["field"] == "starting_after"

    @pytest.mark.parametrize("suffix", LISTS)
    def test_a_cursor_from_another_list_is_refused(self, api: Api, suffix: str) -> None:
        org = api.create_org("business", card=GOOD_CARD)
        org.create_agents(1)
        assert invite(org).status_code == 201
        other = "/agents" if suffix != "/agents" else "/invoices"
        [item] = ok(org.get(other))["data"]
        error = error_of(org.get(f"{suffix}?starting_after={item['id']}"), 422, "invalid_request")
        assert error["field"] == "starting_after"

    @pytest.mark.parametrize("suffix", LISTS)
    @pytest.mark.parametrize("cursor", ["a%00b", "%00", "agt_%0A", "%7F", "x" * 5000, "", "%F0%9F%92%A5", "%25"])
    def test_a_malformed_cursor_is_a_4xx_never_a_500(self, api: Api, suffix: str, cursor: str) -> None:
        org = api.create_org("pro")
        error = error_of(org.get(f"{suffix}?starting_after={cursor}"), 422, "invalid_request")
        assert error["field"] == "starting_after"

    def test_a_deleted_agent_is_no_cursor(self, api: Api) -> None:
        org = api.create_org("pro")
        gone, _ = org.create_agents(2)
        assert org.delete(f"/agents/{gone}").status_code == 204
        error_of(org.get(f"/agents?starting_after={gone}"), 422, "invalid_request")

    def test_a_member_cannot_page_invoices_either(self, api: Api) -> None:
        org = api.create_org("pro")
        member = org.add_member()
        error_of(org.get("/invoices?limit=10", token=member["api_token"]), 403, "forbidden")
