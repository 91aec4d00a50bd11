"""The hourly cap on add-on quantity changes (30 adds or removals per organization per sliding hour):
answered with 429 ``rate_limited`` and a ``Retry-After`` that is exact, changing nothing; only
changes that commit count; other organizations are unaffected; a rate-limited request made with an
``Idempotency-Key`` is not remembered, so retrying it later with the same key goes through.

That the count holds across server processes is shown in ``test_two_servers.py``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from slotwise.config import parse_instant
from tests.factories import DECLINED_CARD, Api, Org, error_of, set_card

CAP = 30


def _now(api: Api) -> Any:
    return parse_instant(api.advance(0)["at"])


def _use_up(org: Org) -> None:
    """30 changes: add 2, then remove 1 and add 1 alternately; a slot is left to remove afterwards."""
    assert org.add_slots("agent_slots", 2).status_code == 200
    for i in range(CAP - 1):
        response = org.remove_slots("agent_slots", 1) if i % 2 == 0 else org.add_slots("agent_slots", 1)
        assert response.status_code == 200, (i, response.text)
    assert org.capacity("agents")["renewal_slots"] == 1


class TestQuantityChangeRateLimit:
    def test_the_31st_change_in_an_hour_is_refused_with_retry_after(self, api: Api) -> None:
        org = api.create_org("pro")
        started = _now(api)
        _use_up(org)
        before = (org.capacity("agents"), len(org.invoices()))

        preview = org.post("/addons/agent_slots/preview", {"action": "add", "quantity": 1}).json()
        assert (preview["allowed"], preview["reason"]) == (False, "rate_limited")  # as the commit will answer
        refused = org.add_slots("agent_slots", 1)
        error = error_of(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) == error["retry_after"] == 3600  # the clock has not moved
        assert error["limit"] == CAP
        error_of(org.remove_slots("agent_slots", 1), 429, "rate_limited")
        assert (org.capacity("agents"), len(org.invoices())) == before  # no invoice, no charge, no slots

        api.clock_to((started + timedelta(minutes=59, seconds=59)).isoformat())
        error_of(org.add_slots("agent_slots", 1), 429, "rate_limited")
        api.clock_to((started + timedelta(hours=1, seconds=1)).isoformat())
        assert org.add_slots("agent_slots", 1).status_code == 200

    def test_the_hour_slides(self, api: Api) -> None:
        org = api.create_org("pro")
        start = _now(api)
        for i in range(CAP):  # one change a minute
            api.clock_to((start + timedelta(minutes=i)).isoformat())
            assert org.add_slots("agent_slots", 1).status_code == 200
        api.clock_to((start + timedelta(minutes=CAP, seconds=30)).isoformat())
        refused = org.add_slots("agent_slots", 1)
        assert int(refused.headers["Retry-After"]) == 60 * 30 - 30  # when the first change leaves the hour
        api.clock_to((start + timedelta(minutes=60, seconds=1)).isoformat())  # only the first has left
        assert org.add_slots("agent_slots", 1).status_code == 200
        error_of(org.add_slots("agent_slots", 1), 429, "rate_limited")

    def test_refusals_and_declines_do_not_count(self, api: Api) -> None:
        org = api.create_org("pro")
        org.create_agents(5)
        for _ in range(CAP):
            error_of(org.remove_slots("agent_slots", 1), 422, "invalid_request")  # nothing to remove
        assert set_card(org, DECLINED_CARD).status_code == 200
        for _ in range(5):
            error_of(org.add_slots("agent_slots", 1), 402, "payment_failed")
        assert set_card(org, "4242424242424242").status_code == 200
        assert org.add_slots("agent_slots", 1).status_code == 200

    def test_previews_reads_and_other_organizations_are_unaffected(self, api: Api) -> None:
        org, other = api.create_org("pro"), api.create_org("pro")
        _use_up(org)
        preview = org.post("/addons/agent_slots/preview", {"action": "add", "quantity": 1})
        assert preview.status_code == 200
        assert org.get("/addons").status_code == 200
        assert org.post("/agents", {"name": "still fine"}).status_code == 201
        assert other.add_slots("agent_slots", 1).status_code == 200

    def test_a_limited_request_with_a_key_goes_through_when_retried_later(self, api: Api) -> None:
        org = api.create_org("pro")
        _use_up(org)
        slots = org.capacity("agents")["active_slots"]
        error_of(org.add_slots("agent_slots", 2, key="buy-two"), 429, "rate_limited")
        error_of(org.add_slots("agent_slots", 2, key="buy-two"), 429, "rate_limited")
        api.advance(1)
        done = org.add_slots("agent_slots", 2, key="buy-two")
        assert done.status_code == 200 and "Idempotent-Replayed" not in done.headers
        again = org.add_slots("agent_slots", 2, key="buy-two")
        assert again.json() == done.json() and again.headers["Idempotent-Replayed"] == "true"
        assert org.capacity("agents")["active_slots"] == slots + 2  # once
