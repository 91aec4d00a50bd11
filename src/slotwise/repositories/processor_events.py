"""The queries of processor webhooks (``processor_events``) and of the invoices their events name."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from slotwise.models import Invoice, Job, ProcessorEvent


def job_id_for(event_id: str) -> str:
    """The one job that handles an event: derived from its id, so that whether an unhandled event
    still has its job is one primary-key lookup (``jobs.id`` holds 32 characters)."""
    return "job_pe_" + hashlib.sha256(event_id.encode()).hexdigest()[:25]


def _insert_once(db: Session) -> Insert:
    if db.get_bind().dialect.name == "postgresql":
        return postgresql.insert(ProcessorEvent).on_conflict_do_nothing(index_elements=[ProcessorEvent.id])
    return sqlite.insert(ProcessorEvent).on_conflict_do_nothing(index_elements=[ProcessorEvent.id])


def insert_event_once(db: Session, *, event_id: str, type: str, object_id: str | None,
                      data: Mapping[str, Any], received_at: datetime) -> bool:
    """Store an event unless its id is already stored; True if this call stored it. One statement
    (``ON CONFLICT DO NOTHING``): two deliveries racing store one row and exactly one gets True."""
    statement = _insert_once(db).values(
        id=event_id, type=type, object_id=object_id, data=json.dumps(dict(data), separators=(",", ":")),
        received_at=received_at, handled_at=None,
    ).returning(ProcessorEvent.id)
    return db.execute(statement).first() is not None


def event_left_unhandled(db: Session, event_id: str) -> bool:
    """True if the stored event was never handled and no job will handle it any more (its handler
    gave up waiting for the invoice it names)."""
    handled = db.execute(select(ProcessorEvent.handled_at).where(ProcessorEvent.id == event_id)).first()
    if handled is None or handled.handled_at is not None:
        return False
    return db.execute(select(Job.id).where(Job.id == job_id_for(event_id))).first() is None


def event_for_handling(db: Session, event_id: str) -> ProcessorEvent | None:
    """The event, locked against a second handler on PostgreSQL (SQLite's write lock covers it)."""
    return db.scalars(select(ProcessorEvent).where(ProcessorEvent.id == event_id).with_for_update()).first()


def mark_event_handled(db: Session, event_id: str, *, at: datetime) -> None:
    db.execute(update(ProcessorEvent).where(ProcessorEvent.id == event_id, ProcessorEvent.handled_at.is_(None))
               .values(handled_at=at).execution_options(synchronize_session=False))


def invoice_of_org(db: Session, *, org_id: str, invoice_id: str) -> Invoice | None:
    """The committed invoice ``invoice_id`` of ``org_id``; None if none is (yet) committed."""
    return db.scalars(select(Invoice).where(Invoice.id == invoice_id, Invoice.org_id == org_id)).first()
