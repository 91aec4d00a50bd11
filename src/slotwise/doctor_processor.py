"""``slotwise doctor``'s processor checks: what the processor says it was paid against our invoices.

``processor_charges`` asks the processor itself (``CardGateway.recent_charges``, the reconciliation
window): every payment it took for one of our organizations is recorded by exactly one charge of
ours — succeeded, on that organization's paid invoice of that amount, or refunded by reconciliation.
A payment with no record is a crash between the processor charging and slotwise committing that no
billing run has reconciled yet.

``processor_payments`` reads the processor's webhook events (``processor_events``):

* every payment reported succeeded (``payment_intent.succeeded``) for an invoice of ours is the only
  one for that invoice, and the invoice exists in that organization and is paid — a payment taken
  for an invoice left open or void, or for one never committed, is money without its invoice;
* no event was left unhandled: each has a job until it is handled, so an unhandled event without a
  job is one whose handler gave up (it waited minutes for the invoice it names).

Handled events are aggregated by the database, per invoice, and only the violations come back (the
events table grows with every payment, so nothing of it is held in memory); unhandled events — few,
the worker drains them — are read a batch at a time by id. Events still in their job's hands are
skipped: they are not settled yet, and the next run sees them.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, cast, distinct, func, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from slotwise.gateway.base import METADATA_INVOICE, METADATA_ORG, CardGateway
from slotwise.models import Charge, Invoice, Job, Organization, Pass, ProcessorEvent
from slotwise.repositories.processor_events import job_id_for
from slotwise.services.processor_events import PAYMENT_SUCCEEDED

EVENTS_PER_BATCH = 500
ORGS_PER_BATCH = 500


def _metadata(db: Session, key: str) -> ColumnElement[Any]:
    if db.get_bind().dialect.name == "postgresql":
        return func.jsonb_extract_path_text(cast(ProcessorEvent.data, JSONB), "metadata", key)
    return func.json_extract(ProcessorEvent.data, f"$.metadata.{key}")


def processor_payments(db: Session, org_ids: Collection[str] | None = None) -> Iterator[tuple[str, str]]:
    """``(org_id, detail)`` for each violation."""
    if org_ids is None:
        yield from _succeeded_payments(db, None)
    else:
        wanted = sorted(org_ids)
        for start in range(0, len(wanted), ORGS_PER_BATCH):
            yield from _succeeded_payments(db, wanted[start:start + ORGS_PER_BATCH])
    yield from _left_unhandled(db, None if org_ids is None else set(org_ids))


def processor_charges(db: Session, gateway: CardGateway, *, since: datetime,
                      org_ids: Collection[str] | None = None) -> Iterator[tuple[str, str]]:
    """``(org_id, detail)`` for each payment the processor took since ``since`` for an organization of
    ours without exactly the record it should have."""
    wanted = None if org_ids is None else set(org_ids)
    found = [c for c in gateway.recent_charges(since=since) if wanted is None or c.org_id in wanted]
    for start in range(0, len(found), EVENTS_PER_BATCH):
        batch = found[start:start + EVENTS_PER_BATCH]
        ours = set(db.scalars(select(Organization.id).where(Organization.id.in_({c.org_id for c in batch}))))
        records: dict[str, list[Any]] = {}
        for row in db.execute(
                select(Charge.gateway_reference, Charge.org_id, Charge.status, Charge.amount, Charge.invoice_id,
                       Invoice.status.label("invoice_status"), Invoice.total)
                .outerjoin(Invoice, Invoice.id == Charge.invoice_id)
                .where(Charge.gateway_reference.in_([c.reference for c in batch]),
                       Charge.status.in_(("succeeded", "refunded")))):
            records.setdefault(row.gateway_reference, []).append(row)
        sold = set(db.scalars(select(Pass.gateway_reference).where(
            Pass.gateway_reference.in_([c.reference for c in batch]))))
        for charge in batch:
            if charge.org_id not in ours or charge.reference in sold:
                continue  # another installation's payment on the same account; a visitor's pass
            rows = records.get(charge.reference, [])
            taken = f"the processor took {charge.amount} ({charge.reference}) for invoice {charge.invoice_id}"
            if not rows:
                yield charge.org_id, f"{taken}, and slotwise has no record of it (not reconciled yet)"
            elif len(rows) > 1:
                yield charge.org_id, f"{taken}, and slotwise recorded it {len(rows)} times"
            elif rows[0].org_id != charge.org_id:
                yield charge.org_id, f"{taken}, but slotwise recorded it for organization {rows[0].org_id}"
            elif rows[0].status == "succeeded" and (rows[0].invoice_id != charge.invoice_id
                                                    or rows[0].invoice_status != "paid"
                                                    or rows[0].amount != charge.amount):
                yield charge.org_id, (f"{taken}, but slotwise recorded it on invoice {rows[0].invoice_id} "
                                      f"({rows[0].invoice_status}) for {rows[0].amount}")


def _succeeded_payments(db: Session, org_ids: list[str] | None) -> Iterator[tuple[str, str]]:
    invoice_id, org_id = _metadata(db, METADATA_INVOICE), _metadata(db, METADATA_ORG)
    refunded = select(Charge.gateway_reference).where(Charge.status == "refunded")
    where = [ProcessorEvent.type == PAYMENT_SUCCEEDED, ProcessorEvent.handled_at.is_not(None),
             invoice_id.is_not(None), org_id.is_not(None),
             ProcessorEvent.object_id.not_in(refunded)]  # given back by reconciliation: accounted for
    if org_ids is not None:
        where.append(org_id.in_(org_ids))
    events = select(invoice_id.label("invoice_id"), org_id.label("org_id"),
                    ProcessorEvent.object_id.label("payment")).where(*where).subquery()
    payments = func.count(distinct(events.c.payment))
    statement = (
        select(events.c.org_id, events.c.invoice_id, payments.label("payments"), Invoice.status, Invoice.number)
        .outerjoin(Invoice, and_(Invoice.id == events.c.invoice_id, Invoice.org_id == events.c.org_id))
        .group_by(events.c.org_id, events.c.invoice_id, Invoice.status, Invoice.number)
        .having(or_(payments != 1, Invoice.status.is_(None), Invoice.status != "paid"))
        .order_by(events.c.org_id, events.c.invoice_id)
    )
    for row in db.execute(statement):
        if row.status is None:
            yield row.org_id, (f"the processor was paid for invoice {row.invoice_id}, which this organization "
                               "does not have (a charge whose commit never came)")
            continue
        if row.payments != 1:
            yield row.org_id, (f"the processor was paid {row.payments} times for invoice #{row.number} "
                               f"({row.invoice_id})")
        if row.status != "paid":
            yield row.org_id, (f"the processor was paid for invoice #{row.number} ({row.invoice_id}), "
                               f"which is {row.status}")


def _left_unhandled(db: Session, org_ids: set[str] | None) -> Iterator[tuple[str, str]]:
    after = ""
    while True:
        batch = db.execute(
            select(ProcessorEvent.id, ProcessorEvent.type, ProcessorEvent.data)
            .where(ProcessorEvent.handled_at.is_(None), ProcessorEvent.id > after)
            .order_by(ProcessorEvent.id).limit(EVENTS_PER_BATCH)).all()
        if not batch:
            return
        jobs = {job_id_for(row.id): row for row in batch}
        pending = set(db.scalars(select(Job.id).where(Job.id.in_(list(jobs)))))
        for job_id, row in jobs.items():
            if job_id in pending:
                continue
            org_id, invoice = _names(row.data)
            if org_ids is not None and org_id not in org_ids:
                continue
            yield org_id or "-", (f"processor event {row.id} ({row.type}) about invoice {invoice or '-'} was "
                                  "left unhandled: its invoice never appeared")
        if len(batch) < EVENTS_PER_BATCH:
            return
        after = batch[-1].id


def _names(data: str) -> tuple[str | None, str | None]:
    try:
        metadata = json.loads(data).get("metadata") or {}
        return metadata.get(METADATA_ORG), metadata.get(METADATA_INVOICE)
    except (ValueError, AttributeError):
        return None, None
