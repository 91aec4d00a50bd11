"""What a hostile tester broke (issue 7), each as the user would hit it, on SQLite and PostgreSQL.

Every test here failed on the code before the fix it guards.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from slotwise.models import ClockState, IdempotencyRecord, Invoice
from tests.factories import DECLINED_CARD, Api, Org, change_plan, error_of, invite, preview, set_card


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


class TestIdempotencyKeysBelongToTheCaller:
    """SPEC §6: a key is the caller's; permission is checked before anything is replayed."""

    def test_a_member_cannot_replay_the_owners_invitation(self, api: Api) -> None:
        org = api.create_org("pro")
        member = org.add_member("member")["api_token"]
        body = {"email": "cfo@acme.test", "role": "admin"}
        first = ok(org.post("/invitations", body, key="invite-cfo"), 201)
        assert first["token"].startswith("inv_")
        replay = org.post("/invitations", body, key="invite-cfo", token=member)
        error_of(replay, 403, "forbidden")
        assert "Idempotent-Replayed" not in replay.headers and "inv_" not in replay.text

    def test_an_admin_cannot_replay_the_owners_purchase(self, api: Api) -> None:
        org = api.create_org("pro")
        admin = org.add_member("admin")["api_token"]
        ok(org.add_slots("agent_slots", 2, key="buy"))
        replay = org.add_slots("agent_slots", 2, key="buy", token=admin)
        error_of(replay, 403, "owner_only")
        assert "Idempotent-Replayed" not in replay.headers and "inv_" not in replay.text

    def test_a_refusal_stored_for_one_caller_is_not_replayed_to_another(self, api: Api) -> None:
        org = api.create_org("pro")  # 5 agents included
        member = org.add_member("member")["api_token"]
        org.create_agents(5)
        error_of(org.post("/agents", {"name": "Sixth"}, key="k", token=member), 409, "limit_reached")
        ok(org.add_slots("agent_slots", 1))
        # The Owner's request under the same key runs as its own, now that there is room.
        owners = org.post("/agents", {"name": "Sixth"}, key="k")
        assert owners.status_code == 201 and "Idempotent-Replayed" not in owners.headers
        # The member gets the answer they were given (their refusal, replayed).
        again = org.post("/agents", {"name": "Sixth"}, key="k", token=member)
        assert error_of(again, 409, "limit_reached") and again.headers["Idempotent-Replayed"] == "true"

    def test_members_of_one_organization_have_keys_of_their_own(self, api: Api) -> None:
        org = api.create_org("pro")
        admin = org.add_member("admin")["api_token"]
        mine = ok(org.post("/agents", {"name": "Same"}, key="agent"), 201)
        theirs = org.post("/agents", {"name": "Same"}, key="agent", token=admin)
        assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers
        assert theirs.json()["id"] != mine["id"]


class TestNoSecretAtRest:
    """SPEC §6: stored answers keep no API or invitation token; a replay withholds it, with a note."""

    def test_replays_withhold_tokens_and_the_table_never_holds_them(self, api: Api, engine: Engine) -> None:
        body = {"name": "Keyed", "owner_email": "keyed@example.test", "plan": "pro"}
        headers = {**api.bearer(api.operator_key), "Idempotency-Key": "create-keyed"}
        first = ok(api.client.post("/v1/operator/organizations", json=body, headers=headers), 201)
        api_token = first["owner"]["api_token"]
        assert api_token.startswith("swt_") and first["replay_note"] is None
        replay = api.client.post("/v1/operator/organizations", json=body, headers=headers)
        assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json()["owner"]["api_token"] is None and replay.json()["id"] == first["id"]
        assert "shown only once" in replay.json()["replay_note"]

        org = Org(api, first["id"], first["owner"]["id"], api_token)
        invitation = ok(invite(org, "someone@example.test", key="inv-1"), 201)
        assert invitation["token"].startswith("inv_")
        again = ok(invite(org, "someone@example.test", key="inv-1"), 201)
        assert again["token"] is None and again["id"] == invitation["id"]

        with Session(engine) as db:
            stored = " ".join(r.response_body for r in db.scalars(select(IdempotencyRecord)))
        assert api_token not in stored and invitation["token"] not in stored
        assert "swt_" not in stored and "inv_" + invitation["token"][4:] not in stored


def _clock_without_sweep(engine: Engine, to: datetime) -> None:
    """The cron job has not run yet: the shared clock moves, no renewal happens."""
    with Session(engine) as db, db.begin():
        db.execute(update(ClockState).values(now=to))


class TestTheGapBeforeTheBillingRun:
    """SPEC §3: a request about an organization first runs what came due for it."""

    def test_every_request_after_the_period_ends_sees_the_next_period(self, api: Api, engine: Engine) -> None:
        org = api.create_org("pro")
        org.summary()  # the simulated clock's row exists
        _clock_without_sweep(engine, datetime(2026, 12, 20, 12, tzinfo=UTC))
        quote = ok(preview(org, "agent_slots", "add", 2))
        assert (quote["days_left"], quote["days_in_period"]) == (26, 31)  # Dec 15 → Jan 15, from Dec 20
        summary = org.summary()
        assert summary["subscription"]["current_period"]["start"] == "2026-12-15T09:00:00Z"
        bought = ok(org.add_slots("agent_slots", 2))
        assert bought["invoice"]["total"] == round(2 * 700 * 26 / 31)
        ok(change_plan(org, "business"))
        kinds = [i["kind"] for i in _all_invoices(org)]
        assert kinds.count("renewal") == 1  # renewed once, on first touch, not by each request

    def test_the_billing_run_afterwards_bills_nothing_twice(self, api: Api, engine: Engine) -> None:
        org = api.create_org("pro")
        org.summary()
        _clock_without_sweep(engine, datetime(2027, 1, 20, tzinfo=UTC))
        assert org.summary()["subscription"]["current_period"]["start"] == "2027-01-15T09:00:00Z"
        report = ok(api.operator("/billing/run", None))
        assert report["renewed"] == []
        assert [i["kind"] for i in _all_invoices(org)].count("renewal") == 2


class TestDunningEnds:
    """SPEC §3: after the last retry the subscription is unpaid: no more invoices, no growth."""

    def test_thirteen_months_of_a_declined_card_leave_one_open_invoice(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(set_card(org, DECLINED_CARD))
        api.advance(396)
        invoices = _all_invoices(org)
        assert [i["status"] for i in invoices].count("open") == 1 and len(invoices) == 2
        assert org.summary()["subscription"]["status"] == "unpaid"
        error_of(org.post("/agents", {"name": "More"}), 402, "payment_required")
        error_of(invite(org), 402, "payment_required")
        error_of(org.add_slots("agent_slots", 1), 402, "payment_required")
        quote = ok(preview(org, "agent_slots", "add", 1))
        assert quote["allowed"] is False and quote["reason"] == "payment_required"


class TestRenewalDay:
    def test_slots_bought_on_the_renewal_date_before_the_instant_cost_one_day(self, api: Api) -> None:
        org = api.create_org("pro")  # Nov 15 09:00 → Dec 15 09:00
        api.clock_to("2026-12-15T08:00:00Z")
        bought = ok(org.add_slots("agent_slots", 3))
        line = bought["invoice"]["lines"][0]
        assert (line["proration"], bought["invoice"]["total"]) == ("1/30", 70)  # 3 × 700 × 1/30


class TestEmails:
    """Emails compare case-folded on both databases (SQLite's lower() is ASCII only)."""

    def test_non_ascii_case_variants_are_one_address(self, api: Api) -> None:
        org = api.create_org("business")
        ok(api.operator(f"/organizations/{org.id}/users", {"email": "Ölaf@x.test", "role": "member"}), 201)
        for variant in ("ölaf@x.test", "Ölaf@x.test", " ÖLAF@X.TEST "):
            error_of(api.operator(f"/organizations/{org.id}/users", {"email": variant, "role": "member"}),
                     409, "email_taken")
        error_of(invite(org, "ölaf@X.test"), 409, "conflict")  # already a member here: may be said


class TestAccountsDoNotLeak:
    def test_inviting_someone_with_an_account_elsewhere_answers_like_anyone_else(self, api: Api) -> None:
        a, b = api.create_org("pro"), api.create_org("pro")
        owner_b = b.get("/members").json()["data"][0]["email"]
        known, unknown = invite(a, owner_b), invite(a, "nobody-yet@example.test")
        assert known.status_code == unknown.status_code == 201
        assert set(known.json()) == set(unknown.json())


class TestInvitationsToRegisteredEmails:
    """An invitation whose email has an account elsewhere can't be accepted, so it holds no seat."""

    def test_registering_elsewhere_frees_the_seat(self, api: Api) -> None:
        a = api.create_org("pro")
        ok(invite(a, "Wanderer@example.test"), 201)
        assert a.capacity("members")["used"] == 2
        api.create_org("pro", owner_email="wanderer@EXAMPLE.test")
        assert a.capacity("members")["used"] == 1
        assert a.get("/invitations").json()["data"] == []

    def test_accepting_an_invitation_to_a_registered_email_withdraws_it(self, api: Api) -> None:
        a, b = api.create_org("pro"), api.create_org("pro")
        owner_b = b.get("/members").json()["data"][0]["email"]
        token = ok(invite(a, owner_b), 201)["token"]
        assert a.capacity("members")["used"] == 2
        refused = api.client.post(f"/v1/invitations/{token}/accept", json={"password": "long-enough-1"})
        error_of(refused, 409, "invitation_withdrawn")
        assert a.capacity("members")["used"] == 1
        error_of(api.client.post(f"/v1/invitations/{token}/accept", json={"password": "long-enough-1"}),
                 404, "not_found")


class TestClockBounds:
    def test_out_of_range_moves_are_refused_not_crashed(self, api: Api) -> None:
        error_of(api.operator("/clock", {"advance_days": 3661}), 422, "invalid_request")
        error_of(api.operator("/clock", {"to": "9999-12-31T23:59:59Z"}), 422, "invalid_request")
        error_of(api.operator("/clock", {"to": "2099-01-01T00:00:00Z"}), 422, "invalid_request")

    def test_a_ten_year_move_renews_every_period_in_order(self, api: Api, engine: Engine) -> None:
        orgs = [api.create_org("pro") for _ in range(3)]
        ok(orgs[1].add_slots("agent_slots", 1))
        report = api.advance(3660)
        assert len(report["renewed"]) == 3 * 120
        for org in orgs:
            invoices = sorted(_all_invoices(org), key=lambda i: i["number"])
            starts = [i["period_start"] for i in invoices if i["kind"] in ("subscription", "renewal")]
            assert starts == sorted(starts) and len(starts) == 121
        with Session(engine) as db:
            assert db.scalar(select(text("count(*)")).select_from(Invoice)) == 3 * 121 + 1


def _all_invoices(org: Org) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = ""
    while True:
        page = org.get(f"/invoices?limit=100{'&starting_after=' + after if after else ''}").json()
        found += page["data"]
        if not page["has_more"]:
            return found
        after = page["data"][-1]["id"]


class TestRefusalsSayWhatWasRefused:
    def test_growth_with_a_downgrade_to_a_plan_without_the_addon_points_to_plans(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(change_plan(org, "starter"))  # 1 member on Starter, which has no team-member slots
        error = error_of(invite(org), 409, "limit_reached")
        assert "Team Member Slots first" not in error["message"]
        assert "cancel the scheduled change" in error["message"]


class TestRateLimitLogPruning:
    def test_the_sweep_forgets_quantity_changes_older_than_the_window(self, api: Api, engine: Engine) -> None:
        """The request path only counts the last hour; the billing run prunes what is older."""
        org = api.create_org("pro")
        for _ in range(3):
            ok(org.add_slots("agent_slots", 1))
        with Session(engine) as db:
            assert db.scalar(text("select count(*) from quantity_changes")) == 3
        api.advance(1)  # the clock's sweep runs a day later
        with Session(engine) as db:
            assert db.scalar(text("select count(*) from quantity_changes")) == 0
        ok(org.add_slots("agent_slots", 1))  # and counting starts afresh
