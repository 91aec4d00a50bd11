"""Reading what billing changes left behind — their events (the outbox) and audit entries — as stored,
and an endpoint row to be owed events, for the emission and audit-entry suites."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, text

from slotwise.models import new_id


@dataclass(frozen=True)
class Stored:
    """An event (``kind``: its type) or an audit entry, as written."""

    kind: str
    data: dict[str, Any]  # an event's payload; an entry's before/after/money/actor
    seq: int


def events_of(engine: Engine, org_id: str, type: str | None = None) -> list[Stored]:
    query = "select seq, type, payload from events where org_id = :o" + (" and type = :t" if type else "")
    with engine.connect() as conn:
        rows = conn.execute(text(query + " order by seq"), {"o": org_id, "t": type}).all()
    return [Stored(row.type, json.loads(row.payload), row.seq) for row in rows]


def entries_of(engine: Engine, org_id: str, kind: str | None = None) -> list[Stored]:
    query = "select * from audit_entries where org_id = :o" + (" and kind = :k" if kind else "")
    with engine.connect() as conn:
        rows = conn.execute(text(query + " order by seq"), {"o": org_id, "k": kind}).all()
    return [Stored(row.kind, {
        "actor_type": row.actor_type, "actor_id": row.actor_id, "actor_label": row.actor_label,
        "subject_id": row.subject_id, "before": json.loads(row.before) if row.before else None,
        "after": json.loads(row.after) if row.after else None, "amount": row.amount, "currency": row.currency,
        "invoice_id": row.invoice_id}, row.seq) for row in rows]


def kinds(stored: list[Stored]) -> list[str]:
    return [item.kind for item in stored]


def counts(engine: Engine, org_id: str) -> tuple[int, int]:
    """How many events and audit entries the organization has."""
    return len(events_of(engine, org_id)), len(entries_of(engine, org_id))


def add_endpoint(engine: Engine, event_types: list[str] | None) -> str:
    """An enabled endpoint taking ``event_types`` (None: all), as the operator's registration stores it."""
    endpoint_id, now = new_id("we"), datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(text(
            "insert into webhook_endpoints (id, url, event_types, enabled, secret_sealed, created_at, updated_at)"
            " values (:id, 'http://127.0.0.1:9/hook', :types, true, 'sealed', :now, :now)"),
            {"id": endpoint_id, "types": None if event_types is None else json.dumps(event_types), "now": now})
    return endpoint_id


def owed_types(engine: Engine, endpoint_id: str) -> list[str]:
    """The types of the events owed to an endpoint (its pending deliveries), in order."""
    with engine.connect() as conn:
        return list(conn.execute(text(
            "select e.type from webhook_deliveries d join events e on e.seq = d.event_seq"
            " where d.endpoint_id = :w order by e.seq"), {"w": endpoint_id}).scalars())


def stream_due(engine: Engine, endpoint_id: str, org_id: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(text("select run_at from webhook_streams where endpoint_id = :w and stream_key = :o"),
                            {"w": endpoint_id, "o": org_id}).scalar_one_or_none() is not None
