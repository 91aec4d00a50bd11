"""The processor's webhook events (SPEC §12): stored once by their id when they arrive, handled by
the worker later, idempotently and in any order.

``receive_event`` runs on the request path (``POST /webhooks/stripe``): one insert that does nothing
for an id already stored, and the event's job in the same transaction, so an event is stored if and
only if its job is. No gateway call there: the processor gets its 200 at once.

``handle_processor_event`` (job kind ``processor_event``) keeps one invariant: money the processor
took for an invoice of ours ends up as that invoice paid, exactly once. It reads the invoice the
event's metadata names (``METADATA_INVOICE`` of ``METADATA_ORG``):

* not committed (yet): a ``payment_intent.succeeded`` may be about a charge whose transaction has
  not committed; the job fails and is retried with the queue's back-off (10 s, 20 s … about five
  minutes over ``MAX_ATTEMPTS``), then gives up: the event stays unhandled (``handled_at`` NULL) with
  no job, which ``slotwise doctor`` reports, and which a redelivery (the processor's "Resend")
  queues again. A ``payment_failed`` about an unknown invoice is simply handled: a declined purchase
  issues no invoice, and no money moved;
* open and waiting for the customer's bank on this very payment (``action_intent``): settled with
  ``verification.settle_verification``, which pays it and grants what was bought (or voids it),
  idempotently. A success is taken from the signed event; a failure is confirmed with the processor
  first (``complete_verification``), so that a late or stale failure never voids an invoice whose
  payment went through after all;
* anything else (paid, void, open without a payment waiting): handled, nothing changed. A charge
  made off-session whose answer was lost is the billing run's to reconcile, by its idempotency key.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from slotwise import jobs
from slotwise.clock import wall_now
from slotwise.gateway import ChargeOutcome, ChargeResult, WebhookEvent
from slotwise.gateway.base import METADATA_INVOICE, METADATA_ORG
from slotwise.jobs import ClaimedJob, JobContext
from slotwise.repositories import processor_events as repo
from slotwise.services.context import Env
from slotwise.services.paid_access import complete_paid_checkout, is_pass_id, pass_recorded
from slotwise.services.verification import settle_verification

log = logging.getLogger("slotwise.processor_events")

PROCESSOR_EVENT_JOB = "processor_event"
# The tries a handler makes while the invoice an event names is not committed: with the queue's
# back-off (10 s, 20 s, 40 s, 80 s, 160 s between them), about five minutes.
MAX_ATTEMPTS = 6

PAYMENT_SUCCEEDED = "payment_intent.succeeded"
PAYMENT_FAILED = "payment_intent.payment_failed"
CHARGE_REFUNDED = "charge.refunded"


class InvoiceNotCommitted(Exception):
    """An event is about an invoice not (yet) committed: its job is tried again later."""


class ProcessorNotAnswering(Exception):
    """The processor could not confirm a payment's state: the job is tried again later."""


@dataclass(frozen=True, slots=True)
class Received:
    event_id: str
    stored: bool  # False: a duplicate delivery
    queued: bool  # a job was written for it in this transaction


def receive_event(db: Session, *, event: WebhookEvent, received_at: datetime) -> Received:
    """Store a verified event once by its id and, when it is new, its job in the same transaction.

    A duplicate delivery changes nothing, except for an event whose handler gave up (left unhandled
    with no job): delivering it again queues it again, so an operator's "Resend" re-drives it."""
    stored = repo.insert_event_once(db, event_id=event.id, type=event.type, object_id=event.object_id,
                                    data=event.data, received_at=received_at)
    queued = stored or repo.event_left_unhandled(db, event.id)
    if queued:
        jobs.enqueue(db, PROCESSOR_EVENT_JOB, None, {"event_id": event.id}, received_at,
                     job_id=repo.job_id_for(event.id))
    return Received(event.id, stored, queued)


@jobs.handler(PROCESSOR_EVENT_JOB)
def handle_processor_event(db: Session, job: ClaimedJob, ctx: JobContext) -> None:
    """Handle the event of ``job`` once; see the module's docstring for what each kind does."""
    event_id = str(job.payload.get("event_id", ""))
    event = repo.event_for_handling(db, event_id)
    if event is None or event.handled_at is not None:
        return  # handled already (a redelivery's job, a lease that lapsed mid-run)
    try:
        apply_event(db, env=ctx.env, type=event.type, object_id=event.object_id, data=json.loads(event.data),
                    at=ctx.clock.now(db))
    except (InvoiceNotCommitted, ProcessorNotAnswering) as waiting:
        if job.attempts < MAX_ATTEMPTS:
            raise
        # Given up: the job is deleted with this transaction and the event stays unhandled, for
        # ``slotwise doctor`` to report and a redelivery to queue again. Never the body: ids only.
        log.warning("slotwise: processor event %s (%s) left unhandled after %d tries: %s",
                    event_id, event.type, job.attempts, waiting)
        return
    repo.mark_event_handled(db, event_id, at=wall_now())


def apply_event(db: Session, *, env: Env, type: str, object_id: str | None, data: Any, at: datetime) -> None:
    """What one event changes; raises ``InvoiceNotCommitted`` / ``ProcessorNotAnswering`` to be
    tried again. Idempotent: applying it twice changes what applying it once did."""
    if type not in (PAYMENT_SUCCEEDED, PAYMENT_FAILED):
        return  # charge.refunded and the rest: stored for the record, nothing to change yet
    metadata = data.get("metadata") if isinstance(data, dict) else None
    invoice_id = metadata.get(METADATA_INVOICE) if isinstance(metadata, dict) else None
    org_id = metadata.get(METADATA_ORG) if isinstance(metadata, dict) else None
    if not isinstance(invoice_id, str) or not isinstance(org_id, str) or object_id is None:
        return  # not a payment slotwise asked for (one made in the processor's dashboard)
    if is_pass_id(invoice_id):  # a visitor's pass (paid agents): made once its waiting payment succeeded
        if type == PAYMENT_SUCCEEDED:
            amount = data.get("amount_received") or data.get("amount")
            if not complete_paid_checkout(db, env=env, pass_id=invoice_id, reference=object_id,
                                          amount=amount if isinstance(amount, int) else -1, at=at) \
                    and not pass_recorded(db, invoice_id):
                raise InvoiceNotCommitted(f"pass {invoice_id} of {org_id} is not committed")
        return
    invoice = repo.invoice_of_org(db, org_id=org_id, invoice_id=invoice_id)
    if invoice is None:
        if type == PAYMENT_SUCCEEDED:
            raise InvoiceNotCommitted(f"invoice {invoice_id} of {org_id} is not committed")
        return
    if invoice.status != "open" or invoice.action_intent != object_id:
        if type == PAYMENT_SUCCEEDED and invoice.status == "void":
            log.error("slotwise: payment %s succeeded at the processor for void invoice %s of %s",
                      object_id, invoice_id, org_id)
        return
    result = _result_of(env, type=type, intent_id=object_id, data=data)
    if result.outcome is ChargeOutcome.ACTION_REQUIRED:
        return  # still waiting for the customer: the verification page (or a later event) settles it
    if result.outcome is ChargeOutcome.RETRYABLE:
        raise ProcessorNotAnswering(f"payment {object_id}: {result.failure_code}")
    if result.succeeded and result.amount is not None and result.amount != invoice.total:
        log.error("slotwise: payment %s took %d for invoice %s of %s, which is for %d; left open",
                  object_id, result.amount, invoice_id, org_id, invoice.total)
        return
    settle_verification(db, env=env, org_id=org_id, invoice_id=invoice_id, result=result, at=at)


def _result_of(env: Env, *, type: str, intent_id: str, data: dict[str, Any]) -> ChargeResult:
    if type == PAYMENT_SUCCEEDED:  # signed by the processor, and a success is final
        amount = data.get("amount_received") or data.get("amount")
        return ChargeResult.paid(intent_id, amount=amount if isinstance(amount, int) else None)
    return env.gateway.complete_verification(intent_id=intent_id)
