"""Delivering events to a real receiver (SPEC §14): signed per Standard Webhooks and verified with the
spec's reference verifier, retried on its schedule with one ``webhook-id``, ``Retry-After`` honoured,
410 and a failing streak disabling the endpoint, the test-send and replays from the log. On SQLite and
PostgreSQL; the worker's wall clock is moved by the test, never slept through."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from slotwise.models import WebhookDelivery, WebhookEndpoint
from slotwise.services import events
from slotwise.services.webhook_delivery import MAX_ATTEMPTS, RETRY_DELAYS
from slotwise.worker import Worker
from tests.conftest import START
from tests.events.support import Receiver, WallClock, make_org
from tests.events.test_endpoints_api import call, register
from tests.factories import Api


def emit(sessions: sessionmaker[Session], org_id: str | None, n: int = 1, type: str = "credits.low") -> list[str]:
    with sessions.begin() as db:
        return [events.emit(db, org_id=org_id, type=type, data={"n": i, "org": org_id}, at=START) for i in range(n)]


def deliveries(sessions: sessionmaker[Session]) -> list[WebhookDelivery]:
    with sessions.begin() as db:
        return list(db.execute(select(WebhookDelivery).order_by(WebhookDelivery.event_seq)).scalars())


def endpoint(sessions: sessionmaker[Session], endpoint_id: str) -> WebhookEndpoint:
    with sessions.begin() as db:
        found = db.get(WebhookEndpoint, endpoint_id)
        assert found is not None
        return found


def log(api: Api, endpoint_id: str) -> list[dict[str, Any]]:
    response = call(api, "GET", f"/{endpoint_id}/deliveries")
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


class TestSigned:
    def test_the_reference_verifier_accepts_it(self, api: Api, receiver: Receiver, worker: Worker,
                                               sessions: sessionmaker[Session],
                                               caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        made = register(api, receiver.url, events=["credits.low"])
        org = make_org(sessions)
        [event_id] = emit(sessions, org)
        emit(sessions, org, type="pass.created")  # not taken by this endpoint
        assert worker.run_pending() == 1
        [got] = receiver.received
        assert got.webhook_id == event_id and got.headers["content-type"] == "application/json"
        body = Webhook(made["secret"]).verify(got.body, got.headers)
        assert body == {"id": event_id, "type": "credits.low", "created_at": START.isoformat(),
                        "organization": org, "data": {"n": 0, "org": org}}
        with pytest.raises(WebhookVerificationError):
            Webhook("whsec_" + "A" * 43 + "=").verify(got.body, got.headers)
        [logged] = log(api, made["id"])
        assert logged["status"] == "delivered" and logged["event_id"] == event_id
        assert logged["event_type"] == "credits.low" and logged["attempts"] == 1
        [attempt] = logged["log"]
        assert attempt["status_code"] == 200 and attempt["response_excerpt"] == "ok" and attempt["error"] is None
        assert attempt["latency_ms"] >= 0 and attempt["replay"] is False
        assert made["secret"] not in caplog.text and made["secret"][6:] not in caplog.text  # nor in the logs

    def test_after_rotation_old_and_new_secrets_verify_for_a_day(self, api: Api, receiver: Receiver, worker: Worker,
                                                                  sessions: sessionmaker[Session],
                                                                  wall: WallClock) -> None:
        made = register(api, receiver.url)
        rotated = call(api, "POST", f"/{made['id']}/rotate-secret").json()["secret"]
        emit(sessions, None)
        worker.run_pending()
        got = receiver.received[-1]
        assert len(got.headers["webhook-signature"].split(" ")) == 2
        for secret in (made["secret"], rotated):
            Webhook(secret).verify(got.body, got.headers)
        wall.advance(timedelta(hours=24, seconds=1))
        emit(sessions, None)
        worker.run_pending()
        later = receiver.received[-1]
        sent_at = datetime.fromtimestamp(int(later.headers["webhook-timestamp"]), UTC)
        signed_by = {name: Webhook(secret).sign(later.webhook_id, sent_at, later.body.decode())
                     for name, secret in (("old", made["secret"]), ("new", rotated))}
        assert later.headers["webhook-signature"] == signed_by["new"] != signed_by["old"]


class TestRetries:
    def test_fails_n_times_then_succeeds_on_schedule_with_one_webhook_id(
            self, api: Api, receiver: Receiver, worker: Worker, sessions: sessionmaker[Session],
            wall: WallClock) -> None:
        n = 4
        made = register(api, receiver.url)
        receiver.fail(*([500] * n))
        [event_id] = emit(sessions, None)
        for i in range(n):
            assert worker.run_pending() == 1
            [pending] = deliveries(sessions)
            assert pending.status == "pending" and pending.attempts == i + 1
            tried = log(api, made["id"])[0]["log"][-1]["attempted_at"]
            assert pending.next_attempt_at is not None
            assert pending.next_attempt_at.isoformat() > tried
            wait = pending.next_attempt_at - wall()
            assert RETRY_DELAYS[i] - timedelta(seconds=2) < wait <= RETRY_DELAYS[i]
            wall.advance(wait - timedelta(seconds=1))
            assert worker.run_pending() == 0 and len(receiver.received) == i + 1  # not before it is due
            wall.advance(timedelta(seconds=1))
        assert worker.run_pending() == 1
        assert receiver.ids() == [event_id] * (n + 1)
        [done] = deliveries(sessions)
        assert done.status == "delivered" and done.attempts == n + 1
        assert endpoint(sessions, made["id"]).failing_since is None
        assert [a["status_code"] for a in log(api, made["id"])[0]["log"]] == [500] * n + [200]

    def test_retry_after_is_honoured(self, api: Api, receiver: Receiver, worker: Worker,
                                     sessions: sessionmaker[Session], wall: WallClock) -> None:
        register(api, receiver.url)
        receiver.fail(429, headers={"Retry-After": "120"})
        emit(sessions, None)
        worker.run_pending()
        [pending] = deliveries(sessions)
        assert pending.next_attempt_at is not None
        assert timedelta(seconds=118) < pending.next_attempt_at - wall() <= timedelta(seconds=120)
        wall.advance(timedelta(seconds=60))
        assert worker.run_pending() == 0
        wall.advance(timedelta(seconds=61))
        assert worker.run_pending() == 1 and deliveries(sessions)[0].status == "delivered"

    def test_after_the_last_try_it_fails_and_the_stream_moves_on(
            self, api: Api, receiver: Receiver, worker: Worker, sessions: sessionmaker[Session],
            wall: WallClock) -> None:
        register(api, receiver.url)
        receiver.fail(*([503] * MAX_ATTEMPTS))
        first, second = emit(sessions, None, 2)
        for _ in range(MAX_ATTEMPTS):
            worker.run_pending()
            wall.advance(timedelta(hours=10))
        assert receiver.ids() == [first] * MAX_ATTEMPTS + [second]
        assert [(d.status, d.attempts) for d in deliveries(sessions)] == [("failed", MAX_ATTEMPTS), ("delivered", 1)]
        assert sum(RETRY_DELAYS, timedelta()) > timedelta(hours=26)  # about a day

    def test_a_gone_endpoint_is_disabled_and_resumes_when_enabled(
            self, api: Api, receiver: Receiver, worker: Worker, sessions: sessionmaker[Session]) -> None:
        made = register(api, receiver.url)
        receiver.fail(410)
        [event_id] = emit(sessions, None)
        worker.run_pending()
        got = call(api, "GET", f"/{made['id']}").json()
        assert got["enabled"] is False and "410 Gone" in got["disabled_reason"]
        assert worker.run_pending() == 0 and len(receiver.received) == 1
        assert call(api, "PATCH", f"/{made['id']}", {"enabled": True}).json()["disabled_reason"] is None
        assert worker.run_pending() == 1 and receiver.ids() == [event_id, event_id]
        assert deliveries(sessions)[0].status == "delivered"

    def test_failing_for_more_than_five_days_disables_it(
            self, api: Api, receiver: Receiver, worker: Worker, sessions: sessionmaker[Session],
            wall: WallClock) -> None:
        made = register(api, receiver.url)
        receiver.default.status = 500
        emit(sessions, None, 6)
        for _ in range(6 * MAX_ATTEMPTS):
            worker.run_pending()
            wall.advance(timedelta(hours=10))
            if not endpoint(sessions, made["id"]).enabled:
                break
        disabled = endpoint(sessions, made["id"])
        assert not disabled.enabled and disabled.disabled_reason is not None
        assert "more than 5 days" in disabled.disabled_reason
        assert disabled.failing_since is not None


class TestTestSendAndReplay:
    def test_the_test_send_goes_to_that_endpoint_only(self, api: Api, receiver: Receiver, worker: Worker,
                                                      sessions: sessionmaker[Session]) -> None:
        made = register(api, receiver.url)
        register(api, receiver.url.replace("/hooks", "/other"))
        sent = call(api, "POST", f"/{made['id']}/test")
        assert sent.status_code == 202, sent.text
        assert worker.run_pending() == 1
        [got] = receiver.received
        assert got.path == "/hooks" and got.webhook_id == sent.json()["event_id"]
        assert Webhook(made["secret"]).verify(got.body, got.headers)["type"] == "webhook.test"
        assert log(api, made["id"])[0]["status"] == "delivered"

    def test_replay_from_the_log(self, api: Api, receiver: Receiver, worker: Worker,
                                 sessions: sessionmaker[Session], wall: WallClock) -> None:
        made = register(api, receiver.url)
        receiver.fail(*([500] * MAX_ATTEMPTS))
        [event_id] = emit(sessions, None)
        pending = log(api, made["id"])[0]["id"]
        refused = call(api, "POST", f"/{made['id']}/deliveries/{pending}/replay")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "delivery_pending"
        for _ in range(MAX_ATTEMPTS):
            worker.run_pending()
            wall.advance(timedelta(hours=10))
        [failed] = log(api, made["id"])
        assert failed["status"] == "failed" and len(failed["log"]) == MAX_ATTEMPTS
        replayed = call(api, "POST", f"/{made['id']}/deliveries/{failed['id']}/replay")
        assert replayed.status_code == 200, replayed.text
        out = replayed.json()
        assert out["status"] == "delivered" and out["event_id"] == event_id
        assert out["attempt"]["status_code"] == 200 and out["attempt"]["replay"] is True
        assert receiver.ids() == [event_id] * (MAX_ATTEMPTS + 1)
        Webhook(made["secret"]).verify(receiver.received[-1].body, receiver.received[-1].headers)
        [after] = log(api, made["id"])
        assert after["status"] == "delivered" and [a["replay"] for a in after["log"]].count(True) == 1
        again = call(api, "POST", f"/{made['id']}/deliveries/{failed['id']}/replay")  # delivered: sent again
        assert again.status_code == 200 and again.json()["status"] == "delivered"
        assert receiver.ids()[-1] == event_id


class TestOutbox:
    def test_an_event_rolled_back_is_owed_to_nobody(self, api: Api, receiver: Receiver, worker: Worker,
                                                    sessions: sessionmaker[Session]) -> None:
        register(api, receiver.url)
        with sessions() as db:
            events.emit(db, org_id=None, type="credits.low", data={}, at=START)
            db.rollback()
        assert deliveries(sessions) == [] and worker.run_pending() == 0 and receiver.received == []

    def test_a_disabled_endpoint_is_owed_nothing(self, api: Api, receiver: Receiver, worker: Worker,
                                                 sessions: sessionmaker[Session]) -> None:
        made = register(api, receiver.url)
        call(api, "PATCH", f"/{made['id']}", {"enabled": False})
        emit(sessions, None)
        assert deliveries(sessions) == [] and worker.run_pending() == 0
