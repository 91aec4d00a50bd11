"""A card attached through the processor (SPEC §12): ``PUT …/payment-method {payment_method}``.

The card becomes the organization's payment method at the processor (its customer created on first
use), and every later charge is made off-session against it, with the invoice and organization in the
charge's metadata. The sandbox takes its test numbers as ``payment_method``; a card it refuses at
attach changes nothing. The same flows against Stripe (localstripe) are in
``tests/scenarios/test_stripe_cycle.py``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from tests.factories import Api, error_of

GOOD, DECLINED_AT_ATTACH, DECLINED_AT_CHARGE, NEEDS_VERIFICATION = (
    "4242424242424242", "4000000000000002", "4000000000000341", "4000002500003155")


def attach(org: Any, payment_method: str) -> Any:
    return org.put("/payment-method", {"payment_method": payment_method})


def charges(engine: Engine, org_id: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(text("select status, gateway_reference from charges where org_id = :o order by created_at"),
                            {"o": org_id})
        return [(r.status, r.gateway_reference) for r in rows]


class TestAttach:
    def test_an_attached_card_is_charged_off_session_for_a_purchase(self, api: Api, engine: Engine) -> None:
        org = api.create_org("pro")
        answer = attach(org, GOOD)
        assert answer.status_code == 200, answer.text
        assert answer.json()["payment_method"] == {"brand": "visa", "last4": "4242"}
        before = org.capacity("agents")["active_slots"]
        assert org.add_slots("agent_slots", 2).status_code == 200
        assert org.capacity("agents")["active_slots"] == before + 2
        status, reference = charges(engine, org.id)[-1]
        assert status == "succeeded" and reference.startswith("sbxpi_"), reference  # a processor payment

    def test_a_card_refused_at_attach_changes_nothing(self, api: Api, engine: Engine) -> None:
        org = api.create_org("pro")
        before = org.summary()["payment_method"]
        error = error_of(attach(org, DECLINED_AT_ATTACH), 402, "card_declined")
        assert error["decline_code"] == "generic_decline"
        assert org.summary()["payment_method"] == before
        with engine.connect() as conn:
            assert conn.scalar(text("select processor_customer_id from organizations where id = :o"),
                               {"o": org.id}) is None

    def test_a_decline_at_charge_grants_nothing(self, api: Api) -> None:
        org = api.create_org("pro")
        assert attach(org, DECLINED_AT_CHARGE).status_code == 200
        before = org.capacity("agents")["active_slots"]
        error_of(org.add_slots("agent_slots", 1), 402, "payment_failed")
        assert org.capacity("agents")["active_slots"] == before

    def test_a_payment_needing_verification_grants_nothing(self, api: Api) -> None:
        """The bank asks the Owner to verify: the invoice stays open, nothing is granted until then
        (the whole flow: ``tests/api/test_verification.py``)."""
        org = api.create_org("pro")
        assert attach(org, NEEDS_VERIFICATION).status_code == 200
        before = org.capacity("agents")["active_slots"]
        error = error_of(org.add_slots("agent_slots", 1), 402, "payment_action_required")
        assert error["verify_url"] == f"/billing/invoices/{error['invoice']}/verify"
        assert org.capacity("agents")["active_slots"] == before

    def test_one_customer_per_organization_at_the_processor(self, api: Api, engine: Engine) -> None:
        org = api.create_org("pro")
        attach(org, GOOD)
        attach(org, "5555555555554444")
        with engine.connect() as conn:
            customer = conn.scalar(text("select processor_customer_id from organizations where id = :o"),
                                   {"o": org.id})
        assert customer is not None and customer.startswith("sbxcus_")
        assert org.summary()["payment_method"]["last4"] == "4444"

    def test_exactly_one_of_card_number_and_payment_method(self, api: Api) -> None:
        org = api.create_org("pro")
        error_of(org.put("/payment-method", {}), 422, "invalid_request")
        error_of(org.put("/payment-method", {"card_number": GOOD, "payment_method": GOOD}), 422, "invalid_request")

    def test_only_the_owner_attaches(self, api: Api) -> None:
        org = api.create_org("pro")
        admin = api.add_user(org.id, role="admin")
        error_of(org.put("/payment-method", {"payment_method": GOOD}, token=admin["api_token"]), 403, "owner_only")


def test_a_processor_outage_writes_nothing_and_the_retry_charges_once(api: Api, engine: Engine, env: Any) -> None:
    org = api.create_org("pro")
    attach(org, GOOD)
    before, paid_before = org.capacity("agents")["active_slots"], len(charges(engine, org.id))
    env.gateway._outages = 1  # the sandbox's next charge answers "retry later", as a processor outage would
    error_of(org.add_slots("agent_slots", 1, key="outage-1"), 503, "gateway_unavailable")
    assert org.capacity("agents")["active_slots"] == before
    assert len(charges(engine, org.id)) == paid_before
    assert org.add_slots("agent_slots", 1, key="outage-1").status_code == 200
    assert org.capacity("agents")["active_slots"] == before + 1
    assert len(charges(engine, org.id)) == paid_before + 1
