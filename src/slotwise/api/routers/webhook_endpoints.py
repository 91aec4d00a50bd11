"""The operator's webhook endpoints (SPEC §14): the platform's backend registers where it wants
slotwise's events, and reads and replays what was sent.

No route here takes an Idempotency-Key: its stored answer would keep a signing secret in clear.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from slotwise.api import schemas as s
from slotwise.api import webhook_schemas as ws
from slotwise.api.deps import OperatorDep, SessionDep, StateDep
from slotwise.clock import wall_now
from slotwise.models import WebhookAttempt, WebhookEndpoint
from slotwise.services import webhook_endpoints as we
from slotwise.services.webhook_delivery import Sender
from slotwise.services.webhook_secrets import sealer_for

router = APIRouter(prefix="/v1/operator/webhook-endpoints", tags=["webhooks"], dependencies=[OperatorDep])

ERRORS: dict[int | str, dict[str, object]] = {code: {"model": s.ErrorBody} for code in (401, 404, 409, 422)}
ONE = "/{endpoint_id}"


def endpoint_out(endpoint: WebhookEndpoint) -> ws.EndpointOut:
    return ws.EndpointOut(
        id=endpoint.id, url=endpoint.url, events=we.event_types_of(endpoint), description=endpoint.description,
        enabled=endpoint.enabled, disabled_reason=endpoint.disabled_reason, failing_since=endpoint.failing_since,
        previous_secret_until=endpoint.previous_secret_until, created_at=endpoint.created_at,
        updated_at=endpoint.updated_at)


def with_secret(made: we.WithSecret) -> ws.EndpointWithSecret:
    return ws.EndpointWithSecret(**endpoint_out(made.endpoint).model_dump(), secret=made.secret)


def attempt_out(attempt: WebhookAttempt) -> ws.AttemptOut:
    return ws.AttemptOut(id=attempt.id, attempted_at=attempt.attempted_at, status_code=attempt.status_code,
                         latency_ms=attempt.latency_ms, response_excerpt=attempt.response_excerpt,
                         error=attempt.error, replay=attempt.replay)


@router.post("", status_code=201, response_model=ws.EndpointWithSecret, responses=ERRORS)
def create_endpoint(body: ws.EndpointIn, db: SessionDep, state: StateDep) -> ws.EndpointWithSecret:
    """Register an endpoint; the answer holds its signing secret, shown this once. 409
    ``secret_key_missing`` when the server has no SLOTWISE_SECRET_KEY to keep it sealed with."""
    sealer = sealer_for(state.settings.secret_key)
    return with_secret(we.create(db, sealer=sealer, url=body.url, types=body.events, description=body.description,
                                 now=wall_now()))


@router.get("", response_model=s.Page[ws.EndpointOut], responses=ERRORS)
def list_endpoints(db: SessionDep, limit: s.PageLimit = s.DEFAULT_PAGE_SIZE,
                   starting_after: s.StartingAfter = None) -> s.Page[ws.EndpointOut]:
    """Oldest first; never their secrets."""
    rows = we.page(db, limit=limit, after=starting_after)
    return s.Page(data=[endpoint_out(e) for e in rows[:limit]], has_more=len(rows) > limit)


@router.get(ONE, response_model=ws.EndpointOut, responses=ERRORS)
def get_endpoint(endpoint_id: str, db: SessionDep) -> ws.EndpointOut:
    return endpoint_out(we.get(db, endpoint_id))


@router.patch(ONE, response_model=ws.EndpointOut, responses=ERRORS)
def update_endpoint(endpoint_id: str, body: ws.EndpointChanges, db: SessionDep) -> ws.EndpointOut:
    sent = body.model_fields_set
    changes = we.Changes(url=body.url, events_sent="events" in sent, types=body.events,
                         description_sent="description" in sent, description=body.description, enabled=body.enabled)
    return endpoint_out(we.update_endpoint(db, endpoint_id, changes, now=wall_now()))


@router.delete(ONE, status_code=204, responses=ERRORS)
def delete_endpoint(endpoint_id: str, db: SessionDep) -> Response:
    """The endpoint, what it is owed and its delivery log go; the events stay."""
    we.remove(db, endpoint_id)
    return Response(status_code=204)


@router.post(ONE + "/rotate-secret", response_model=ws.EndpointWithSecret, responses=ERRORS)
def rotate_secret(endpoint_id: str, db: SessionDep, state: StateDep) -> ws.EndpointWithSecret:
    """A new signing secret, shown this once; the previous one signs beside it for 24 hours."""
    sealer = sealer_for(state.settings.secret_key)
    return with_secret(we.rotate(db, endpoint_id, sealer=sealer, now=wall_now()))


@router.post(ONE + "/test", status_code=202, response_model=ws.TestSent, responses=ERRORS)
def send_test(endpoint_id: str, db: SessionDep) -> ws.TestSent:
    """Queue a ``webhook.test`` event for this endpoint only; the worker sends it like every other
    (its result is in the delivery log). 409 ``endpoint_disabled`` for a disabled endpoint."""
    event_id, delivery_id = we.send_test(db, endpoint_id, at=wall_now())
    return ws.TestSent(event_id=event_id, delivery_id=delivery_id, status="pending")


@router.get(ONE + "/deliveries", response_model=s.Page[ws.DeliveryOut], responses=ERRORS)
def list_deliveries(endpoint_id: str, db: SessionDep, limit: s.PageLimit = s.DEFAULT_PAGE_SIZE,
                    starting_after: s.StartingAfter = None,
                    status: Annotated[ws.DeliveryStatus | None, Query()] = None) -> s.Page[ws.DeliveryOut]:
    """The delivery log, newest event first: each delivery with every request made for it."""
    rows = we.deliveries_page(db, endpoint_id, limit=limit, after=starting_after, status=status)
    return s.Page(data=[ws.DeliveryOut(
        id=row.delivery.id, event_id=row.event_id, event_type=row.event_type,
        status=row.delivery.status,
        attempts=row.delivery.attempts, next_attempt_at=row.delivery.next_attempt_at,
        delivered_at=row.delivery.delivered_at, created_at=row.delivery.created_at,
        log=[attempt_out(a) for a in row.attempts]) for row in rows[:limit]], has_more=len(rows) > limit)


@router.post(ONE + "/deliveries/{delivery_id}/replay", response_model=ws.ReplayOut, responses=ERRORS)
async def replay_delivery(endpoint_id: str, delivery_id: str, state: StateDep) -> ws.ReplayOut:
    """Send a delivered or failed delivery's event again now (same ``webhook-id``), logged as a replay;
    a 2xx makes a failed delivery delivered. 409 ``delivery_pending``: the worker has it in hand."""
    sealer = sealer_for(state.settings.secret_key)

    def send_again() -> we.Replayed:  # on a worker thread: the client's set-up and the request block
        sender = Sender()
        try:
            return we.replay(state.sessions, endpoint_id, delivery_id, sealer=sealer, sender=sender, now=wall_now())
        finally:
            sender.close()

    done = await run_in_threadpool(send_again)
    outcome = done.outcome
    return ws.ReplayOut(
        delivery_id=done.delivery_id, event_id=done.event_id, status=done.status,
        attempt=ws.AttemptOut(id=done.attempt_id, attempted_at=done.attempted_at, status_code=outcome.status_code,
                              latency_ms=outcome.latency_ms, response_excerpt=outcome.excerpt, error=outcome.error,
                              replay=True))
