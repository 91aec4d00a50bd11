"""Checkout, whole cycle (SPEC §12), through the pages on both databases: a Free organization's Owner
opens the checkout page, enters the sandbox's test card and is back on Billing with Pro active, its
first invoice paid and its credits granted; a month later it renews. A declined card, a cancel and a
resubmitted form change nothing; a card the bank must verify goes to its verification page, and the
plan starts once it is verified (nothing before, nothing if the bank refuses)."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from tests.factories import Api, Org, billing_run
from tests.web.test_sessions import PASSWORD, login

GOOD, DECLINED_AT_ATTACH, DECLINED_AT_CHARGE, NEEDS_VERIFICATION = (
    "4242 4242 4242 4242", "4000000000000002", "4000000000000341", "4000002500003155")


def free_org(api: Api, client: TestClient) -> Org:
    org = api.create_org("free", owner_email="owner@checkout.test", owner_password=PASSWORD)
    assert login(client, "owner@checkout.test").status_code == 303
    return org


def form_of(client: TestClient, path: str) -> dict[str, str]:
    page = client.get(path)
    assert page.status_code == 200, page.text
    fields = dict(re.findall(r'name="(csrf_token|submission|plan|mode)" value="([^"]*)"', page.text))
    return fields


def pay(client: TestClient, plan: str, card: str, form: dict[str, str] | None = None) -> Any:
    data = {**(form or form_of(client, f"/billing/checkout?plan={plan}")), "card_number": card}
    return client.post("/billing/checkout", data=data, follow_redirects=False)


def state(org: Org) -> list[Any]:
    return [org.summary(), org.invoices(), org.get("/credits").json()]


def test_free_to_pro_through_checkout_then_a_renewal(api: Api, client: TestClient) -> None:
    org = free_org(api, client)
    page = client.get("/billing/checkout?plan=pro").text
    assert "Subscribe to Pro" in page and "Due today" in page and "$150.00" in page
    assert "4000 0000 0000 0002" in page  # the sandbox's test numbers are listed

    done = pay(client, "pro", GOOD)
    assert done.status_code == 303 and done.headers["location"] == "/billing"
    billing = client.get("/billing").text
    assert "Your Pro plan is active." in billing and "15,000 credits were added." in billing

    summary = org.summary()
    assert summary["plan"]["code"] == "pro" and summary["subscription"]["status"] == "active"
    assert summary["payment_method"] == {"brand": "visa", "last4": "4242"}
    [invoice] = org.invoices()
    assert invoice["status"] == "paid" and invoice["total"] == 15000
    credits = org.get("/credits").json()
    assert credits["plan"]["allowance"] == 15000 and credits["total"] == 15000

    api.advance(31)
    billing_run(api)
    renewal = org.invoices()[0]
    assert renewal["kind"] == "renewal" and renewal["status"] == "paid"  # the checkout's card renews it


def test_a_declined_card_changes_nothing_and_says_why(api: Api, client: TestClient) -> None:
    org = free_org(api, client)
    before = state(org)
    for card in (DECLINED_AT_ATTACH, DECLINED_AT_CHARGE):
        answer = pay(client, "pro", card)
        assert answer.headers["location"] == "/billing/checkout?plan=pro"
        again = client.get(answer.headers["location"]).text
        assert "Your card was declined." in again and "Nothing was charged and nothing changed." in again
        assert state(org) == before  # no plan, no invoice, the old card still on file


def test_cancel_returns_to_billing_with_no_charge_and_no_change(api: Api, client: TestClient) -> None:
    org = free_org(api, client)
    before = state(org)
    page = client.get("/billing/checkout?plan=pro").text
    assert 'href="/billing?checkout=canceled"' in page
    assert "Checkout canceled — no charge and no change." in client.get("/billing?checkout=canceled").text
    assert state(org) == before


def test_a_resubmitted_checkout_pays_once(api: Api, client: TestClient) -> None:
    org = free_org(api, client)
    form = form_of(client, "/billing/checkout?plan=pro")
    assert pay(client, "pro", GOOD, form).headers["location"] == "/billing"
    again = pay(client, "pro", GOOD, form)
    assert again.headers["location"] == "/billing"
    assert "already submitted" in client.get("/billing").text
    assert len(org.invoices()) == 1


def test_a_declined_attempt_leaves_the_form_usable(api: Api, client: TestClient) -> None:
    org = free_org(api, client)
    form = form_of(client, "/billing/checkout?plan=pro")
    pay(client, "pro", DECLINED_AT_CHARGE, form)
    assert pay(client, "pro", GOOD, form).headers["location"] == "/billing"  # the refusal released its id
    assert org.summary()["plan"]["code"] == "pro"


def verify_on_the_page(client: TestClient, location: str, verdict: str) -> Any:
    page = client.get(location)
    assert page.status_code == 200 and "Complete authentication" in page.text, page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    return client.post(location, data={"csrf_token": token.group(1), "verdict": verdict}, follow_redirects=False)


def test_a_card_the_bank_must_verify_goes_to_its_verification_page_then_the_plan_starts(
        api: Api, client: TestClient) -> None:
    org = free_org(api, client)
    answer = pay(client, "pro", NEEDS_VERIFICATION)
    location = answer.headers["location"]
    assert re.fullmatch(r"/billing/invoices/[^/]+/verify", location), location
    summary = org.summary()
    assert summary["plan"]["code"] == "free" and summary["subscription"] is None  # nothing granted until verified
    assert summary["payment_method"]["last4"] == "3155"  # the card stays, with the open invoice
    [waiting] = org.invoices()
    assert waiting["status"] == "open" and waiting["verify_url"] == location
    assert org.get("/credits").json()["plan"]["allowance"] == 100

    done = verify_on_the_page(client, location, "approve")
    assert done.status_code == 303 and done.headers["location"] == f"/billing/invoices/{waiting['id']}"
    assert "Payment verified." in client.get(done.headers["location"]).text
    summary = org.summary()
    assert summary["plan"]["code"] == "pro" and summary["subscription"]["status"] == "active"
    credits = org.get("/credits").json()
    assert credits["plan"]["allowance"] == credits["plan"]["remaining"] == 15000
    [invoice] = org.invoices()
    assert invoice["status"] == "paid" and invoice["total"] == 15000

    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/billing").text)
    assert token is not None  # a second submission (back button, double click) is answered as it is
    again = client.post(location, data={"csrf_token": token.group(1), "verdict": "approve"}, follow_redirects=False)
    assert again.status_code == 303 and "Payment verified." in client.get(again.headers["location"]).text
    assert org.invoices() == [invoice] and org.get("/credits").json() == credits  # no second grant

    assert org.put("/payment-method", {"payment_method": GOOD.replace(" ", "")}).status_code == 200
    api.advance(31)
    billing_run(api)
    renewal = org.invoices()[0]
    assert renewal["kind"] == "renewal" and renewal["status"] == "paid" and renewal["total"] == 15000


def test_a_failed_verification_after_checkout_changes_nothing_and_checkout_works_again(
        api: Api, client: TestClient) -> None:
    org = free_org(api, client)
    location = pay(client, "pro", NEEDS_VERIFICATION).headers["location"]
    verify_on_the_page(client, location, "fail")
    assert org.summary()["plan"]["code"] == "free" and org.summary()["subscription"] is None
    assert [i["status"] for i in org.invoices()] == ["void"]
    assert pay(client, "pro", GOOD).headers["location"] == "/billing"
    assert org.summary()["plan"]["code"] == "pro"


def test_checkout_waits_for_a_plan_change_the_bank_still_verifies(api: Api, client: TestClient) -> None:
    org = free_org(api, client)
    location = pay(client, "pro", NEEDS_VERIFICATION).headers["location"]
    again = client.get("/billing/checkout?plan=pro", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/billing/plans"
    assert "waiting for your bank" in client.get("/billing/plans").text
    assert [i["verify_url"] for i in org.invoices()] == [location]


def test_the_checkout_page_refuses_what_cannot_be_checked_out(api: Api, client: TestClient) -> None:
    free_org(api, client)
    for plan in ("free", "enterprise", "nope"):
        answer = client.get(f"/billing/checkout?plan={plan}", follow_redirects=False)
        assert answer.headers["location"] == "/billing/plans"


def test_update_card_on_billing_leads_to_the_card_only_checkout(api: Api, client: TestClient) -> None:
    org = free_org(api, client)
    assert 'href="/billing/checkout?mode=card"' in client.get("/billing").text
    page = client.get("/billing/checkout?mode=card").text
    assert "New card number" in page and "Order summary" not in page
    form = form_of(client, "/billing/checkout?mode=card")
    answer = client.post("/billing/checkout", data={**form, "card_number": "5555 5555 5555 4444"},
                         follow_redirects=False)
    assert answer.headers["location"] == "/billing#payment-method"
    assert org.summary()["payment_method"] == {"brand": "mastercard", "last4": "4444"}
    assert org.summary()["plan"]["code"] == "free"


def test_plans_sends_a_free_organization_to_checkout(api: Api, client: TestClient) -> None:
    free_org(api, client)
    plans = client.get("/billing/plans").text
    assert 'href="/billing/checkout?plan=pro" data-checkout-link' in plans
