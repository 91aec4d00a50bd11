"""The worked example of SPEC §4 through the API, on both databases."""

from __future__ import annotations

from tests.factories import Api


def test_two_agent_slots_on_nov_26_charge_887(api: Api) -> None:
    org = api.create_org("pro")  # period 2026-11-15 → 2026-12-15
    api.clock_to("2026-11-26T12:00:00Z")
    response = org.add_slots("agent_slots", 2)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Slots added successfully."
    assert body["invoice"]["total"] == 887
    line = body["invoice"]["lines"][0]
    assert line["description"] == "Additional Chatbot Slots × 2, Nov 26 – Dec 15, 19/30 days"
    assert (line["quantity"], line["unit_price"], line["amount"], line["proration"]) == (2, 700, 887, "19/30")
    assert org.capacity("agents")["total"] == 7
