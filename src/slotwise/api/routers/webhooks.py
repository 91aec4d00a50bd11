"""``POST /webhooks/stripe``: the processor's events (SPEC §12).

No bearer token: the ``Stripe-Signature`` header over the raw body is the authentication, checked by
the gateway (``WebhookRejected``, 400 ``webhook_rejected``, when it is bad or missing, or when no
secret is configured: the sandbox without one refuses every webhook). The event is stored once by
its id with its job, and the answer is 200 at once: the worker handles it (services.processor_events).
Neither the body nor the secret is ever logged.
"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from slotwise.api import schemas as s
from slotwise.api.deps import EnvDep, SessionDep
from slotwise.clock import wall_now
from slotwise.services import processor_events

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class WebhookReceived(BaseModel):
    received: bool
    duplicate: bool  # the event's id was stored before: nothing more was done


# The body is read raw (the signature is over its exact bytes), so it is documented by hand.
_BODY = {"requestBody": {"required": True, "description": "The processor's event, signed in Stripe-Signature",
                         "content": {"application/json": {"schema": {"type": "object"}}}}}


@router.post("/stripe", response_model=WebhookReceived, responses={400: {"model": s.ErrorBody}},
             openapi_extra=_BODY)
async def stripe_webhook(request: Request, db: SessionDep, env: EnvDep) -> WebhookReceived:
    payload = await request.body()
    event = env.gateway.parse_webhook(payload=payload, signature=request.headers.get("stripe-signature"))
    # Wall-clock time: when the processor delivered it, whatever the billing clock says.
    received = await run_in_threadpool(partial(processor_events.receive_event, db, event=event,
                                               received_at=wall_now()))
    return WebhookReceived(received=True, duplicate=not received.stored)
