"""An unpaid subscription (dunning over) on the billing page, and its restart with a new card."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.factories import DECLINED_CARD, GOOD_CARD, Api
from tests.web.test_sessions import login, make_org, page_csrf


def test_the_billing_page_says_billing_is_paused_and_a_new_card_restarts_it(api: Api, client: TestClient) -> None:
    made = make_org(api)
    headers = {"Authorization": f"Bearer {made['owner']['api_token']}"}
    assert client.put(f"/v1/organizations/{made['id']}/payment-method", json={"card_number": DECLINED_CARD},
                      headers=headers).status_code == 200
    api.advance(40)  # the renewal and its three retries are declined
    login(client, "owner@acme.test")
    page = client.get("/billing").text
    assert "Paused" in page and "A renewal payment failed. Update your payment method to resume." in page
    updated = client.post("/billing/payment-method", data={"card_number": GOOD_CARD,
                                                           "csrf_token": page_csrf(client, "/billing")})
    assert "Your subscription restarted today: $150.00 was charged" in updated.text
    assert "Unpaid invoices voided: 1." in updated.text and "Paused" not in updated.text
