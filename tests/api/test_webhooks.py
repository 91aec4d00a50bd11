"""``POST /webhooks/stripe`` and the worker's handling of the events (SPEC §12), on both databases,
through the sandbox signing Stripe's way: a bad or missing signature (or no secret) is a 400 that
stores nothing; an event is stored once by its id with one job; an event about an invoice not yet
committed is retried until it is, then settles it exactly once; one that never finds its invoice is
left unhandled where ``slotwise doctor`` sees it, and a redelivery queues it again."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from slotwise.api.app import create_app
from slotwise.catalog import load_catalog
from slotwise.clock import SimulatedClock, wall_now
from slotwise.config import Settings
from slotwise.doctor import run_doctor
from slotwise.gateway import ChargeResult, SandboxGateway
from slotwise.gateway.base import METADATA_INVOICE, METADATA_KEY, METADATA_ORG
from slotwise.models import Invoice, Job, ProcessorEvent
from slotwise.services import processor_events
from slotwise.services.context import Env
from slotwise.worker import Worker
from tests.conftest import START
from tests.factories import Api, Org

SECRET = "whsec_test_webhooks"
WALL = datetime(2026, 11, 15, 9, 0, tzinfo=UTC)
_serial = itertools.count()


@pytest.fixture
def env() -> Env:
    return Env(catalog=load_catalog(), gateway=SandboxGateway(webhook_secret=SECRET))


class WallClock:
    """The worker's wall clock, moved by hand (the route stamps events and jobs with the real one)."""

    def __init__(self) -> None:
        self.now = wall_now() + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


@pytest.fixture
def worker(sessions: sessionmaker[Session], env: Env, clock: SimulatedClock, wall: WallClock) -> Worker:
    return Worker(sessions, env=env, clock=clock, wall_clock=wall)


class Settled:
    """Stands in for ``verification.settle_verification``: records each call and pays the invoice,
    as the SCA flow does (its own tests check the grants)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.calls: list[tuple[str, str, ChargeResult]] = []

    def __call__(self, db: Session, *, env: Env, org_id: str, invoice_id: str, result: ChargeResult,
                 at: datetime) -> None:
        self.calls.append((org_id, invoice_id, result))
        status = "paid" if result.succeeded else "void"
        db.execute(update(Invoice).where(Invoice.id == invoice_id)
                   .values(status=status, action_intent=None, paid_at=at if result.succeeded else None))


@pytest.fixture
def settled(sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> Settled:
    fake = Settled(sessions)
    monkeypatch.setattr(processor_events, "settle_verification", fake)
    return fake


def event(kind: str, *, intent: str, invoice_id: str | None = None, org_id: str | None = None,
          amount: int = 1000, event_id: str | None = None) -> dict[str, Any]:
    metadata = {} if invoice_id is None else {METADATA_KEY: f"slotwise-invoice-{invoice_id}-attempt-1",
                                              METADATA_INVOICE: invoice_id, METADATA_ORG: org_id}
    return {"id": event_id or f"evt_{next(_serial)}_{kind}", "object": "event", "type": kind,
            "data": {"object": {"id": intent, "object": "payment_intent", "amount": amount,
                                "amount_received": amount if kind.endswith("succeeded") else 0,
                                "currency": "usd", "metadata": metadata}}}


def deliver(client: TestClient, env: Env, body: dict[str, Any], *, signature: str | None = "sign") -> Any:
    payload = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if signature == "sign":
        gateway = env.gateway
        assert isinstance(gateway, SandboxGateway)
        headers["stripe-signature"] = gateway.sign_event(payload)
    elif signature is not None:
        headers["stripe-signature"] = signature
    return client.post("/webhooks/stripe", content=payload, headers=headers)


def stored(sessions: sessionmaker[Session]) -> list[ProcessorEvent]:
    with sessions() as db:
        return list(db.scalars(select(ProcessorEvent).order_by(ProcessorEvent.id)))


def queued(sessions: sessionmaker[Session]) -> list[Job]:
    with sessions() as db:
        return list(db.scalars(select(Job).where(Job.kind == processor_events.PROCESSOR_EVENT_JOB)))


def open_invoice(sessions: sessionmaker[Session], org: Org, invoice_id: str, *, intent: str | None,
                 total: int = 1000) -> None:
    """Commit an open invoice waiting for the bank on ``intent``, as the SCA flow leaves it."""
    with sessions.begin() as db:
        db.add(Invoice(id=invoice_id, org_id=org.id, number=900 + next(_serial), subscription_id=None, kind="addon",
                       billing_key=None, period_start=START, period_end=START + timedelta(days=30), currency="usd",
                       total=total, status="open", created_at=START, attempt_count=1, action_intent=intent))


def invoice_status(sessions: sessionmaker[Session], invoice_id: str) -> str:
    with sessions() as db:
        status = db.scalar(select(Invoice.status).where(Invoice.id == invoice_id))
        assert status is not None
        return status


class TestTheSignature:
    @pytest.mark.parametrize("signature", [None, "", "t=1,v1=00", "not a signature"])
    def test_a_bad_or_missing_signature_is_400_and_stores_nothing(
        self, client: TestClient, env: Env, sessions: sessionmaker[Session], signature: str | None
    ) -> None:
        response = deliver(client, env, event("payment_intent.succeeded", intent="pi_1"), signature=signature)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "webhook_rejected"
        assert stored(sessions) == [] and queued(sessions) == []

    def test_a_signature_over_another_body_is_refused(self, client: TestClient, env: Env,
                                                      sessions: sessionmaker[Session]) -> None:
        gateway = env.gateway
        assert isinstance(gateway, SandboxGateway)
        signature = gateway.sign_event(b'{"id": "evt_other"}')
        response = deliver(client, env, event("payment_intent.succeeded", intent="pi_1"), signature=signature)
        assert response.status_code == 400 and stored(sessions) == []

    def test_a_signed_body_that_is_not_an_event_is_400(self, client: TestClient, env: Env,
                                                       sessions: sessionmaker[Session]) -> None:
        response = deliver(client, env, {"hello": "world"})
        assert response.status_code == 400 and response.json()["error"]["code"] == "webhook_rejected"
        assert stored(sessions) == []

    def test_without_a_secret_every_webhook_is_refused(self, settings: Settings, engine: Engine,
                                                       clock: SimulatedClock, sessions: sessionmaker[Session]) -> None:
        signer = SandboxGateway(webhook_secret=SECRET)
        app = create_app(settings, engine=engine, clock=clock, gateway=SandboxGateway(), catalog=load_catalog())
        payload = json.dumps(event("payment_intent.succeeded", intent="pi_1")).encode()
        with TestClient(app) as client:
            response = client.post("/webhooks/stripe", content=payload,
                                   headers={"stripe-signature": signer.sign_event(payload)})
        assert response.status_code == 400 and response.json()["error"]["code"] == "webhook_rejected"
        assert stored(sessions) == []

    def test_the_route_needs_no_bearer_token_and_ignores_one(self, client: TestClient, env: Env, api: Api) -> None:
        org = api.create_org("pro")
        body = event("customer.created", intent="cus_1")
        payload = json.dumps(body).encode()
        response = client.post("/webhooks/stripe", content=payload,
                               headers={**api.bearer(org.token), "stripe-signature": "t=1,v1=00"})
        assert response.status_code == 400  # a tenant's token is no signature
        assert deliver(client, env, body).status_code == 200


class TestStoredOnce:
    def test_an_event_delivered_twice_is_one_row_and_one_job(self, client: TestClient, env: Env,
                                                             sessions: sessionmaker[Session]) -> None:
        body = event("payment_intent.succeeded", intent="pi_twice")
        first, second = deliver(client, env, body), deliver(client, env, body)
        assert first.status_code == second.status_code == 200
        assert first.json() == {"received": True, "duplicate": False}
        assert second.json() == {"received": True, "duplicate": True}
        [row] = stored(sessions)
        assert row.id == body["id"] and row.type == "payment_intent.succeeded" and row.object_id == "pi_twice"
        assert json.loads(row.data) == body["data"]["object"] and row.handled_at is None
        [job] = queued(sessions)
        assert json.loads(job.payload) == {"event_id": body["id"]}

    def test_unknown_kinds_and_foreign_payments_are_handled_and_ignored(
        self, client: TestClient, env: Env, sessions: sessionmaker[Session], worker: Worker, settled: Settled
    ) -> None:
        for body in (event("customer.created", intent="cus_1"), event("charge.refunded", intent="ch_1"),
                     event("payment_intent.succeeded", intent="pi_dashboard")):  # no metadata of ours
            assert deliver(client, env, body).status_code == 200
        assert worker.run_pending() == 3
        assert all(row.handled_at is not None for row in stored(sessions))
        assert queued(sessions) == [] and settled.calls == []


class TestHandling:
    def test_a_success_for_an_invoice_waiting_for_verification_settles_it_once(
        self, client: TestClient, env: Env, api: Api, sessions: sessionmaker[Session], worker: Worker,
        settled: Settled
    ) -> None:
        org = api.create_org("pro")
        open_invoice(sessions, org, "inv_sca_1", intent="pi_sca_1")
        body = event("payment_intent.succeeded", intent="pi_sca_1", invoice_id="inv_sca_1", org_id=org.id)
        assert deliver(client, env, body).status_code == 200
        assert worker.run_pending() == 1
        assert deliver(client, env, body).json()["duplicate"] is True
        assert worker.run_pending() == 0
        [(org_id, invoice_id, result)] = settled.calls
        assert (org_id, invoice_id, result.succeeded, result.reference, result.amount) == (
            org.id, "inv_sca_1", True, "pi_sca_1", 1000)
        assert invoice_status(sessions, "inv_sca_1") == "paid"
        assert all(row.handled_at is not None for row in stored(sessions))

    def test_a_second_event_for_a_settled_invoice_changes_nothing(
        self, client: TestClient, env: Env, api: Api, sessions: sessionmaker[Session], worker: Worker,
        settled: Settled
    ) -> None:
        org = api.create_org("pro")
        open_invoice(sessions, org, "inv_sca_2", intent="pi_sca_2")
        for kind in ("payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.succeeded"):
            deliver(client, env, event(kind, intent="pi_sca_2", invoice_id="inv_sca_2", org_id=org.id))
        assert worker.run_pending() == 3
        assert len(settled.calls) == 1 and invoice_status(sessions, "inv_sca_2") == "paid"

    def test_a_failure_is_confirmed_with_the_processor_before_anything_changes(
        self, client: TestClient, env: Env, api: Api, sessions: sessionmaker[Session], worker: Worker,
        settled: Settled
    ) -> None:
        # The sandbox's SCA payment is still waiting for the customer: a failure event (Stripe sends
        # one when an off-session charge needs authentication) must not void the invoice.
        org = api.create_org("pro")
        intent = "sbxpi_1000_usd_sca_0123456789abcdef"
        open_invoice(sessions, org, "inv_sca_3", intent=intent)
        deliver(client, env, event("payment_intent.payment_failed", intent=intent, invoice_id="inv_sca_3",
                                   org_id=org.id))
        assert worker.run_pending() == 1
        assert settled.calls == [] and invoice_status(sessions, "inv_sca_3") == "open"
        assert all(row.handled_at is not None for row in stored(sessions))

    def test_a_failure_for_an_invoice_never_issued_is_handled(
        self, client: TestClient, env: Env, api: Api, sessions: sessionmaker[Session], worker: Worker,
        settled: Settled
    ) -> None:
        org = api.create_org("pro")  # a declined purchase issues no invoice: nothing to wait for
        deliver(client, env, event("payment_intent.payment_failed", intent="pi_no", invoice_id="inv_never",
                                   org_id=org.id))
        assert worker.run_pending() == 1 and queued(sessions) == []
        assert all(row.handled_at is not None for row in stored(sessions)) and settled.calls == []

    def test_a_payment_for_an_already_paid_invoice_is_handled_without_change(
        self, client: TestClient, env: Env, api: Api, sessions: sessionmaker[Session], worker: Worker,
        settled: Settled
    ) -> None:
        org = api.create_org("pro")
        assert org.add_slots("agent_slots", 1).status_code == 200
        [paid] = [i for i in org.invoices() if i["kind"] == "addon"]
        deliver(client, env, event("payment_intent.succeeded", intent="pi_paid", invoice_id=paid["id"],
                                   org_id=org.id, amount=paid["total"]))
        assert worker.run_pending() == 1
        assert settled.calls == [] and all(row.handled_at is not None for row in stored(sessions))


class TestOutOfOrder:
    def test_an_event_before_its_invoice_commits_is_retried_until_it_does(
        self, client: TestClient, env: Env, api: Api, sessions: sessionmaker[Session], worker: Worker,
        wall: WallClock, settled: Settled
    ) -> None:
        org = api.create_org("pro")
        body = event("payment_intent.succeeded", intent="pi_early", invoice_id="inv_early", org_id=org.id)
        assert deliver(client, env, body).status_code == 200
        assert worker.run_pending() == 1  # tried, failed: the invoice is not committed
        [job] = queued(sessions)
        assert job.attempts == 1 and "not committed" in (job.last_error or "")
        assert worker.run_pending() == 0  # backed off
        open_invoice(sessions, org, "inv_early", intent="pi_early")  # the charge's transaction commits
        wall.now += timedelta(minutes=1)
        assert worker.run_pending() == 1
        assert queued(sessions) == [] and len(settled.calls) == 1
        assert invoice_status(sessions, "inv_early") == "paid"
        assert stored(sessions)[0].handled_at is not None

    def test_an_invoice_that_never_commits_leaves_the_event_unhandled_and_visible(
        self, client: TestClient, env: Env, api: Api, sessions: sessionmaker[Session], worker: Worker,
        wall: WallClock, settled: Settled
    ) -> None:
        org = api.create_org("pro")
        body = event("payment_intent.succeeded", intent="pi_lost", invoice_id="inv_lost", org_id=org.id)
        deliver(client, env, body)
        for _ in range(processor_events.MAX_ATTEMPTS):
            assert worker.run_pending() == 1
            wall.now += timedelta(hours=1)
        assert queued(sessions) == [] and stored(sessions)[0].handled_at is None  # given up
        [violation] = run_doctor(sessions, load_catalog()).violations
        assert violation.check == "processor_payments" and violation.org_id == org.id
        assert "left unhandled" in violation.detail and "inv_lost" in violation.detail
        # A redelivery (the processor's "Resend") queues it again, and it settles once the invoice is there.
        assert deliver(client, env, body).json()["duplicate"] is True
        assert len(queued(sessions)) == 1
        open_invoice(sessions, org, "inv_lost", intent="pi_lost")
        assert worker.run_pending() == 1 and len(settled.calls) == 1
        assert stored(sessions)[0].handled_at is not None


class TestDoctor:
    @pytest.fixture
    def paid(self, client: TestClient, env: Env, api: Api, worker: Worker) -> Iterator[tuple[Org, dict[str, Any]]]:
        org = api.create_org("pro")
        assert org.add_slots("agent_slots", 1).status_code == 200
        [invoice] = [i for i in org.invoices() if i["kind"] == "addon"]
        deliver(client, env, event("payment_intent.succeeded", intent="pi_doc", invoice_id=invoice["id"],
                                   org_id=org.id, amount=invoice["total"]))
        assert worker.run_pending() == 1
        yield org, invoice

    def test_clean_data_passes(self, paid: tuple[Org, dict[str, Any]], sessions: sessionmaker[Session]) -> None:
        assert run_doctor(sessions, load_catalog()).violations == []

    def test_a_processor_payment_for_a_void_invoice_is_flagged(
        self, paid: tuple[Org, dict[str, Any]], sessions: sessionmaker[Session]
    ) -> None:
        org, invoice = paid
        with sessions.begin() as db:
            db.execute(update(Invoice).where(Invoice.id == invoice["id"]).values(status="void"))
        checks = {(v.check, v.org_id) for v in run_doctor(sessions, load_catalog()).violations}
        # ours: a succeeded charge on a void invoice (and its slots now unbilled); the processor's: paid
        # for an invoice that is void
        assert checks == {("charges", org.id), ("slots_billed", org.id), ("processor_payments", org.id)}

    def test_two_processor_payments_for_one_invoice_are_flagged(
        self, paid: tuple[Org, dict[str, Any]], client: TestClient, env: Env, worker: Worker,
        sessions: sessionmaker[Session]
    ) -> None:
        org, invoice = paid
        deliver(client, env, event("payment_intent.succeeded", intent="pi_doc_again", invoice_id=invoice["id"],
                                   org_id=org.id, amount=invoice["total"]))
        assert worker.run_pending() == 1
        [violation] = run_doctor(sessions, load_catalog(), org_ids=[org.id]).violations
        assert violation.check == "processor_payments" and "paid 2 times" in violation.detail

    def test_a_processor_payment_for_an_invoice_we_do_not_have_is_flagged(
        self, paid: tuple[Org, dict[str, Any]], sessions: sessionmaker[Session]
    ) -> None:
        org, _ = paid
        data = event("payment_intent.succeeded", intent="pi_ghost", invoice_id="inv_ghost", org_id=org.id)
        with sessions.begin() as db:  # as if handled before the invoice was lost
            db.add(ProcessorEvent(id=data["id"], type=data["type"], object_id="pi_ghost",
                                  data=json.dumps(data["data"]["object"]), received_at=WALL, handled_at=WALL))
        [violation] = run_doctor(sessions, load_catalog()).violations
        assert violation.check == "processor_payments" and "does not have" in violation.detail
        assert run_doctor(sessions, load_catalog(), org_ids=["org_other"]).violations == []
