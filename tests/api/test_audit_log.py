"""The audit trail's reading side (SPEC §14): ``GET /v1/organizations/{org}/audit-log`` — the Owner's,
newest first, paged like every list, one kind or a family of kinds; and entries the database itself
refuses to change or remove, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from slotwise.models import AuditEntry
from slotwise.services import audit
from tests.factories import DECLINED_CARD, GOOD_CARD, Api, Org, error_of

AT = datetime(2026, 11, 15, 9, 0, tzinfo=UTC)


def write(sessions: sessionmaker[Session], org: Org, kinds: list[str], **fields: Any) -> list[str]:
    """Entries written by ``audit.record`` as a service would, one transaction; their ids in write order."""
    with sessions.begin() as db:
        return [audit.record(db, org_id=org.id, by=audit.By("user", org.owner_id, "owner@example.test"), kind=kind,
                             at=AT + timedelta(minutes=n), **fields) for n, kind in enumerate(kinds)]


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def every_page(org: Org, query: str, limit: int) -> tuple[list[int], list[dict[str, Any]]]:
    """The size of each page and every entry, following ``starting_after`` to the end."""
    sep = "&" if query else ""
    bodies = [ok(org.get(f"/audit-log?{query}{sep}limit={limit}"))]
    while bodies[-1]["has_more"]:
        assert len(bodies) < 100, "the pages never end"
        last = quote(bodies[-1]["data"][-1]["id"])
        bodies.append(ok(org.get(f"/audit-log?{query}{sep}limit={limit}&starting_after={last}")))
    return [len(b["data"]) for b in bodies], [e for b in bodies for e in b["data"]]


def newest_first_in_db(engine: Engine, org: Org, kind_like: str = "%") -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(select(AuditEntry.id).where(AuditEntry.org_id == org.id,
                                                             AuditEntry.kind.like(kind_like))
                                 .order_by(AuditEntry.seq.desc())))


class TestTheOwnerReads:
    def test_an_entry_says_who_what_before_after_and_the_money(self, api: Api, sessions: sessionmaker[Session]) -> None:
        org = api.create_org("pro")
        [entry_id] = write(sessions, org, ["addon.added"], subject_id="agent_slots", before={"active_slots": 0},
                           after={"active_slots": 2, "quantity": 2}, amount=887, currency="usd", invoice_id="inv_x")
        [entry] = ok(org.get("/audit-log?kind=addon.added"))["data"]
        assert entry == {
            "id": entry_id, "at": "2026-11-15T09:00:00Z",
            "actor": {"type": "user", "id": org.owner_id, "label": "owner@example.test"},
            "kind": "addon.added", "subject_id": "agent_slots", "before": {"active_slots": 0},
            "after": {"active_slots": 2, "quantity": 2}, "amount": 887, "currency": "usd", "invoice_id": "inv_x"}

    def test_the_operator_and_the_system_have_no_user_id(self, api: Api, sessions: sessionmaker[Session]) -> None:
        org = api.create_org("pro")
        with sessions.begin() as db:
            audit.record(db, org_id=org.id, by=audit.OPERATOR, kind="test.operator", at=AT)
            audit.record(db, org_id=org.id, by=audit.SYSTEM, kind="test.system", at=AT)
        entries = ok(org.get("/audit-log?kind=test."))["data"]
        assert [(e["kind"], e["actor"]) for e in entries] == [
            ("test.system", {"type": "system", "id": None, "label": "slotwise"}),
            ("test.operator", {"type": "operator", "id": None, "label": "operator"})]
        assert all(e["before"] is None and e["amount"] is None and e["invoice_id"] is None for e in entries)

    def test_a_real_change_through_the_api_appears_with_its_actor(self, api: Api) -> None:
        org = api.create_org("pro")
        agent = org.create_agents(1)[0]
        changed = org.put(f"/agents/{agent}/access", {"mode": "restricted"})
        assert changed.status_code == 200, changed.text
        [entry] = ok(org.get("/audit-log?kind=agent.access_changed"))["data"]
        assert entry["subject_id"] == agent
        assert (entry["actor"]["type"], entry["actor"]["id"]) == ("user", org.owner_id)
        assert entry["actor"]["label"].endswith("@example.test")
        assert (entry["before"]["mode"], entry["after"]["mode"]) == ("free", "restricted")

    def test_slots_bought_removed_and_kept_through_the_api_appear_with_their_money(self, api: Api) -> None:
        org = api.create_org("pro", card=GOOD_CARD)
        bought = org.add_slots("agent_slots", 2)
        assert bought.status_code == 200, bought.text
        invoice = bought.json()["invoice"]
        assert org.remove_slots("agent_slots", 1).status_code == 200
        assert org.post("/addons/agent_slots/keep").status_code == 200
        kept, scheduled, added = ok(org.get("/audit-log?kind=addon."))["data"]
        assert (added["kind"], added["subject_id"]) == ("addon.added", "agent_slots")
        assert (added["actor"]["type"], added["actor"]["id"]) == ("user", org.owner_id)
        assert (added["before"], added["after"]) == ({"active_slots": 0, "renewal_slots": 0},
                                                     {"active_slots": 2, "renewal_slots": 2})
        assert (added["amount"], added["currency"], added["invoice_id"]) == (invoice["total"], "usd", invoice["id"])
        assert (scheduled["kind"], scheduled["after"]["renewal_slots"], scheduled["amount"]) == (
            "addon.removal_scheduled", 1, None)
        assert (kept["kind"], kept["after"]["renewal_slots"]) == ("addon.removal_cancelled", 2)

    def test_a_refused_change_leaves_no_entry(self, api: Api) -> None:
        org = api.create_org("pro", card=GOOD_CARD)
        admin = org.add_member("admin")
        assert org.put("/payment-method", {"card_number": DECLINED_CARD}).status_code == 200  # declines at charge
        before = ok(org.get("/audit-log"))
        error_of(org.add_slots("agent_slots", 1, token=admin["api_token"]), 403, "owner_only")
        error_of(org.remove_slots("member_slots", 1), 422, "invalid_request")
        error_of(org.add_slots("agent_slots", 1), 402, "payment_failed")  # the invoice, slots and entry roll back
        assert ok(org.get("/audit-log")) == before

    def test_only_this_organizations_entries(self, api: Api, sessions: sessionmaker[Session], engine: Engine) -> None:
        mine, theirs = api.create_org("pro"), api.create_org("pro")
        write(sessions, theirs, ["test.theirs"] * 3)
        write(sessions, mine, ["test.mine"])
        _, entries = every_page(mine, "", 100)
        assert [e["id"] for e in entries] == newest_first_in_db(engine, mine)
        assert "test.theirs" not in {e["kind"] for e in entries}


class TestWhoMayRead:
    @pytest.mark.parametrize("role", ["admin", "member"])
    def test_admins_and_members_are_refused_owner_only(self, api: Api, sessions: sessionmaker[Session],
                                                       role: str) -> None:
        org = api.create_org("pro")
        write(sessions, org, ["test.secret"])
        user = org.add_member(role)
        error = error_of(org.get("/audit-log", token=user["api_token"]), 403, "owner_only")
        assert "Owner Only" in error["message"]

    def test_another_organization_is_not_found(self, api: Api, sessions: sessionmaker[Session]) -> None:
        org, other = api.create_org("pro"), api.create_org("pro")
        write(sessions, org, ["test.secret"])
        error_of(org.get("/audit-log", token=other.token), 404, "not_found")

    @pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer swt_not-a-real-token"},
                                         {"Authorization": "Basic x"}])
    def test_no_or_a_bad_token_is_unauthenticated(self, api: Api, headers: dict[str, str]) -> None:
        org = api.create_org("pro")
        error_of(api.client.get(f"{org.path}/audit-log", headers=headers), 401, "unauthenticated")


class TestPaging:
    def test_newest_first_across_pages_with_no_gap_and_no_duplicate(self, api: Api, sessions: sessionmaker[Session],
                                                                    engine: Engine) -> None:
        org = api.create_org("pro")
        write(sessions, org, [f"test.n{n % 7}" for n in range(120)])
        expected = newest_first_in_db(engine, org)
        sizes, entries = every_page(org, "", 50)
        total = len(expected)  # 120, and whatever creating the organization recorded
        assert sizes == [50, 50, total - 100]
        assert [e["id"] for e in entries] == expected
        assert len({e["id"] for e in entries}) == total
        assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)

    def test_the_default_page_is_50_and_a_full_last_page_says_no_more(self, api: Api,
                                                                       sessions: sessionmaker[Session]) -> None:
        org = api.create_org("pro")
        write(sessions, org, ["test.page"] * 60)
        first = ok(org.get("/audit-log?kind=test.page"))
        assert (len(first["data"]), first["has_more"]) == (50, True)
        sizes, _ = every_page(org, "kind=test.page", 20)
        assert sizes == [20, 20, 20]

    def test_an_empty_log_and_an_empty_remainder(self, api: Api, sessions: sessionmaker[Session]) -> None:
        org = api.create_org("pro")
        assert ok(org.get("/audit-log?kind=test.nothing")) == {"data": [], "has_more": False}
        [oldest] = write(sessions, org, ["test.only"])
        assert ok(org.get(f"/audit-log?kind=test.only&starting_after={oldest}")) == {"data": [], "has_more": False}

    def test_a_page_is_one_indexed_query_plus_the_cursor_lookup(self, api: Api, sessions: sessionmaker[Session],
                                                                engine: Engine) -> None:
        org = api.create_org("pro")
        first, *_ = write(sessions, org, ["test.q"] * 5)
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(" ".join(statement.lower().split()))

        event.listen(engine, "before_cursor_execute", seen)
        try:
            ok(org.get("/audit-log?kind=test.q&limit=2"))
            ok(org.get(f"/audit-log?kind=test.q&limit=2&starting_after={first}"))
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        on_audit = [s for s in statements if "from audit_entries" in s]
        assert len(on_audit) == 3, on_audit  # the page; then the cursor's place, and the page after it
        assert "order by audit_entries.seq desc" in on_audit[0] and "audit_entries.kind =" in on_audit[0]
        assert "audit_entries.seq <" in on_audit[2]  # a keyset: where the cursor was, not how many came before


class TestKindFilter:
    def test_one_kind_or_a_family(self, api: Api, sessions: sessionmaker[Session], engine: Engine) -> None:
        org = api.create_org("pro")
        write(sessions, org, ["addon.added", "addon.removed", "credits.topped_up", "addon.added", "addonx.added",
                              "addon"])
        exact = [e["kind"] for e in ok(org.get("/audit-log?kind=addon.added"))["data"]]
        assert exact == ["addon.added", "addon.added"]
        family = ok(org.get("/audit-log?kind=addon."))["data"]
        assert [e["id"] for e in family] == newest_first_in_db(engine, org, "addon.%")
        assert {e["kind"] for e in family} == {"addon.added", "addon.removed"}
        assert [e["kind"] for e in ok(org.get("/audit-log?kind=addon"))["data"]] == ["addon"]

    def test_an_underscore_in_a_family_is_no_wildcard(self, api: Api, sessions: sessionmaker[Session]) -> None:
        org = api.create_org("pro")
        write(sessions, org, ["auto_recharge.disabled", "autoxrecharge.disabled"])
        kinds = [e["kind"] for e in ok(org.get("/audit-log?kind=auto_recharge."))["data"]]
        assert kinds == ["auto_recharge.disabled"]

    def test_pages_of_a_family_and_a_cursor_of_any_kind(self, api: Api, sessions: sessionmaker[Session],
                                                         engine: Engine) -> None:
        org = api.create_org("pro")
        ids = write(sessions, org, ["pass.sold", "agent.created", "pass.refunded"] * 20)
        sizes, entries = every_page(org, "kind=pass.", 15)
        assert sizes == [15, 15, 10]
        assert [e["id"] for e in entries] == newest_first_in_db(engine, org, "pass.%")
        after_agent = ok(org.get(f"/audit-log?kind=pass.&limit=1&starting_after={ids[-2]}"))["data"]
        assert [e["id"] for e in after_agent] == [ids[-3]]  # an entry of another kind still marks a place


class TestBadParameters:
    @pytest.mark.parametrize("kind", ["%00", "addon.%00", "Addon.added", "addon..added", ".addon", "addon added",
                                      "addon.*", "a%25", "x" * 49, "", "%F0%9F%92%A5", "addon.added%0A"])
    def test_a_kind_that_is_no_slug_is_invalid(self, api: Api, kind: str) -> None:
        org = api.create_org("pro")
        error = error_of(org.get(f"/audit-log?kind={kind}"), 422, "invalid_request")
        assert ["query", "kind"] in [e["loc"] for e in error["errors"]]

    def test_the_longest_kind_is_read(self, api: Api) -> None:
        org = api.create_org("pro")
        assert ok(org.get("/audit-log?kind=" + "x" * 48)) == {"data": [], "has_more": False}

    @pytest.mark.parametrize("limit", ["0", "101", "abc", "1.5", "-1", "", "%2B5", "99999999999999999999"])
    def test_a_limit_outside_1_to_100_is_invalid(self, api: Api, limit: str) -> None:
        org = api.create_org("pro")
        error = error_of(org.get(f"/audit-log?limit={limit}"), 422, "invalid_request")
        assert ["query", "limit"] in [e["loc"] for e in error["errors"]]

    @pytest.mark.parametrize("cursor", ["a%00b", "%00", "aud_%0A", "%7F", "x" * 5000, "", "%F0%9F%92%A5",
                                        "aud_missing"])
    def test_a_cursor_that_names_no_entry_is_invalid(self, api: Api, cursor: str) -> None:
        org = api.create_org("pro")
        error = error_of(org.get(f"/audit-log?starting_after={cursor}"), 422, "invalid_request")
        assert error["field"] == "starting_after"

    def test_another_organizations_entry_or_another_lists_id_is_no_cursor(self, api: Api,
                                                                          sessions: sessionmaker[Session]) -> None:
        mine, theirs = api.create_org("pro"), api.create_org("pro")
        [their_entry] = write(sessions, theirs, ["test.theirs"])
        [agent] = mine.create_agents(1)
        for cursor in (their_entry, agent):
            error = error_of(mine.get(f"/audit-log?starting_after={cursor}"), 422, "invalid_request")
            assert error["field"] == "starting_after"


class TestEntriesAreImmutable:
    """The database refuses to change or remove an entry, whoever asks (triggers on both databases)."""

    @pytest.mark.parametrize("statement", [
        "update audit_entries set amount = 1, kind = 'test.forged' where id = :id",
        "update audit_entries set actor_label = 'someone else' where org_id = :org",
        "delete from audit_entries where id = :id",
        "delete from audit_entries where org_id = :org",
    ])
    def test_an_update_or_delete_is_refused(self, api: Api, sessions: sessionmaker[Session], engine: Engine,
                                            statement: str) -> None:
        org = api.create_org("pro")
        [entry_id] = write(sessions, org, ["test.kept"], amount=500, currency="usd")
        before = ok(org.get("/audit-log?kind=test.kept"))
        with pytest.raises(DBAPIError, match="audit entries are immutable"), engine.begin() as conn:
            conn.execute(text(statement), {"id": entry_id, "org": org.id})
        assert ok(org.get("/audit-log?kind=test.kept")) == before
        assert before["data"][0]["amount"] == 500
