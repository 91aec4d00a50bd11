"""Reconciliation (SPEC §12): a crash between the processor charging and slotwise committing is
settled by the next billing run — a renewal redone with the same key is paid with the payment
already made, an open invoice paid at the processor is completed, a purchase that never committed is
refunded in full, and nothing is settled twice. ``slotwise doctor`` (given the gateway) sees the
unreconciled payment, then a clean record. The crash here is an exception right after the
processor answered, which rolls the request's transaction back; ``tests/reliability/
test_reconcile_crash.py`` kills a real process against a fake Stripe."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from slotwise.catalog import load_catalog
from slotwise.doctor import run_doctor
from slotwise.gateway import ChargeRequest, ChargeResult, SandboxGateway, charge_key
from slotwise.services.context import Env
from tests.factories import Api, Org

GOOD, NEEDS_VERIFICATION = "4242424242424242", "4000002500003155"


class Crash(Exception):
    """The process dying right after the processor took the money."""


class CrashingGateway(SandboxGateway):
    """The sandbox, but the next ``crashes`` charges that succeed raise right after charging."""

    def __init__(self) -> None:
        super().__init__()
        self.crashes = 0
        self.crashed: list[ChargeResult] = []

    def charge_off_session(self, request: ChargeRequest) -> ChargeResult:
        result = super().charge_off_session(request)
        if result.succeeded and self.crashes > 0:
            self.crashes -= 1
            self.crashed.append(result)
            raise Crash(result.reference)
        return result


@pytest.fixture
def env() -> Env:
    return Env(catalog=load_catalog(), gateway=CrashingGateway())


@pytest.fixture
def gateway(env: Env) -> CrashingGateway:
    assert isinstance(env.gateway, CrashingGateway)
    return env.gateway


def carded(api: Api, card: str = GOOD) -> Org:
    org = api.create_org("pro")
    response = org.put("/payment-method", {"payment_method": card})
    assert response.status_code == 200, response.text
    return org


def charges_of(engine: Engine, org_id: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(
            "select invoice_id, status, amount, gateway_reference from charges where org_id = :o order by created_at"),
            {"o": org_id}))


def invoices_of(engine: Engine, org_id: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text("select id, number, kind, status, total from invoices where org_id = :o "
                                      "order by number"), {"o": org_id}))


def doctor(sessions: sessionmaker[Session], env: Env, org: Org) -> list[str]:
    found = run_doctor(sessions, env.catalog, org_ids=[org.id], gateway=env.gateway)
    return [str(v) for v in found.violations]


def test_a_purchase_whose_commit_never_came_is_refunded_once(
        api: Api, gateway: CrashingGateway, engine: Engine, sessions: sessionmaker[Session], env: Env) -> None:
    org = carded(api)
    before, invoices_before = org.capacity("agents"), invoices_of(engine, org.id)
    gateway.crashes = 1
    with pytest.raises(Crash):
        org.add_slots("agent_slots", 2)
    taken = gateway.crashed[0]
    assert org.capacity("agents") == before and invoices_of(engine, org.id) == invoices_before  # rolled back
    assert any("processor_charges" in v and "no record" in v for v in doctor(sessions, env, org))

    report = api.advance(0)  # the next billing run
    assert report["refunded"] == [taken.reference] and report["reconciled"] == []
    recorded = [c for c in charges_of(engine, org.id) if c.gateway_reference == taken.reference]
    assert [(c.status, c.invoice_id, c.amount) for c in recorded] == [("refunded", None, taken.amount)]
    assert org.capacity("agents") == before and invoices_of(engine, org.id) == invoices_before  # nothing granted
    assert doctor(sessions, env, org) == []

    again = api.advance(0)
    assert again["refunded"] == [] and again["reconciled"] == []
    assert len([c for c in charges_of(engine, org.id) if c.gateway_reference == taken.reference]) == 1


def test_a_renewal_redone_after_a_crash_is_paid_with_the_payment_already_made(
        api: Api, gateway: CrashingGateway, engine: Engine, sessions: sessionmaker[Session], env: Env) -> None:
    org = carded(api)
    gateway.crashes = 1
    with pytest.raises(Crash):
        api.advance(31)  # the renewal charged, then the billing run died before committing it
    taken = gateway.crashed[0]
    assert [i.kind for i in invoices_of(engine, org.id)] == ["subscription"]

    report = api.advance(0)  # the next run renews again: the same invoice id, the same key, the same payment
    assert report["refunded"] == []
    renewal = invoices_of(engine, org.id)[-1]
    assert (renewal.kind, renewal.status) == ("renewal", "paid")
    assert [(c.status, c.gateway_reference) for c in charges_of(engine, org.id) if c.invoice_id == renewal.id] == [
        ("succeeded", taken.reference)]
    assert doctor(sessions, env, org) == []


def test_an_open_invoice_the_processor_was_paid_for_is_completed(
        api: Api, gateway: CrashingGateway, engine: Engine, sessions: sessionmaker[Session], env: Env) -> None:
    org = carded(api, NEEDS_VERIFICATION)
    before = org.capacity("agents")
    waiting = org.add_slots("agent_slots", 3)
    assert waiting.status_code == 402, waiting.text
    invoice_id = waiting.json()["error"]["invoice"]
    with engine.connect() as conn:
        intent = conn.execute(text("select action_intent from invoices where id = :i"), {"i": invoice_id}).scalar_one()
    # The Owner passed the bank's check, but slotwise never heard (the page closed, no webhook came).
    paid = gateway.complete_verification(intent_id=intent, verdict="approve")
    assert paid.succeeded and org.capacity("agents") == before

    report = api.advance(0)
    assert report["reconciled"] == [invoice_id] and report["refunded"] == []
    assert org.capacity("agents")["active_slots"] == before["active_slots"] + 3
    assert [i.status for i in invoices_of(engine, org.id) if i.id == invoice_id] == ["paid"]
    assert doctor(sessions, env, org) == []
    assert api.advance(0)["reconciled"] == []  # once


def test_a_second_payment_for_an_invoice_already_paid_is_refunded(
        api: Api, gateway: CrashingGateway, engine: Engine, sessions: sessionmaker[Session], env: Env) -> None:
    org = carded(api)
    assert org.add_slots("agent_slots", 1).status_code == 200
    paid = invoices_of(engine, org.id)[-1]
    with engine.connect() as conn:
        token = conn.execute(text("select card_token from organizations where id = :o"), {"o": org.id}).scalar_one()
    customer_id, payment_method_id = token.split(" ")
    extra = gateway.charge_off_session(ChargeRequest(
        customer_id=customer_id, payment_method_id=payment_method_id, amount=paid.total, currency="usd",
        idempotency_key=charge_key(paid.id, 9), invoice_id=paid.id, org_id=org.id))
    assert extra.succeeded

    report = api.advance(0)
    assert report["refunded"] == [extra.reference] and report["reconciled"] == []
    mine = [(c.status, c.gateway_reference) for c in charges_of(engine, org.id) if c.invoice_id == paid.id]
    assert ("refunded", extra.reference) in mine and sum(1 for status, _ in mine if status == "succeeded") == 1
    assert [i.status for i in invoices_of(engine, org.id) if i.id == paid.id] == ["paid"]
    assert doctor(sessions, env, org) == []
