"""Events for the platform (SPEC §14), the writing side: the outbox.

``emit`` is called inside the transaction of the change an event describes. It writes the event and,
for every enabled endpoint that takes its type, what that endpoint is owed (a delivery) and a due
mark on the endpoint's stream for the organization, so the event exists, and is owed, if and only if
the change commits. Delivering it is the worker's (``services.webhook_delivery``).

An event's payload is small: the ids and the new state, never the whole organization.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, text
from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.clock import wall_now
from slotwise.models import Base, UTCDateTime, new_id

# Where ``trail.written_together`` collects a block's events (``Session.info``).
COLLECTED = "slotwise.events.collected"

# Every type slotwise emits (an endpoint's ``events`` must name types from here).
EVENT_TYPES: tuple[str, ...] = (
    "organization.created",
    "subscription.updated",
    "addon.updated",
    "invoice.paid",
    "invoice.payment_failed",
    "payment.action_required",
    "credits.low",
    "credits.depleted",
    "credits.recharged",
    "auto_recharge.disabled",
    "pass.created",
    "pass.refunded",
)
# The operator's test-send (webhook_endpoints.send_test): to one endpoint only, never subscribed to.
TEST_EVENT_TYPE = "webhook.test"

_EVENTS = Base.metadata.tables["events"]
_INSERT_EVENT = text(
    "INSERT INTO events (id, org_id, type, payload, created_at) "
    "VALUES (:id, :org_id, :type, :payload, :created_at) RETURNING seq"
).bindparams(bindparam("created_at", type_=UTCDateTime()))
_ENDPOINTS = text("SELECT id, event_types FROM webhook_endpoints WHERE enabled")
# On PostgreSQL the endpoints read are key-share locked until the change commits: an endpoint being
# deleted meanwhile is then either skipped (its deletion committed first) or deleted after, with what
# it was owed; never a delivery pointing at a deleted endpoint, which would fail the change itself.
# Changing an endpoint (FOR NO KEY UPDATE) does not wait for emitters, nor they for it.
_ENDPOINTS_LOCKED = text("SELECT id, event_types FROM webhook_endpoints WHERE enabled FOR KEY SHARE")
_INSERT_DELIVERY = text(
    "INSERT INTO webhook_deliveries (id, endpoint_id, stream_key, event_seq, status, attempts, "
    "next_attempt_at, created_at) VALUES (:id, :endpoint_id, :stream_key, :event_seq, 'pending', 0, :due, :due)"
).bindparams(bindparam("due", type_=UTCDateTime()))
# A stream already waiting (due, or backing off after a failure) keeps its time: its head goes first.
_MARK_STREAM = text(
    "INSERT INTO webhook_streams (endpoint_id, stream_key, run_at) VALUES (:endpoint_id, :stream_key, :due) "
    "ON CONFLICT (endpoint_id, stream_key) DO UPDATE "
    "SET run_at = COALESCE(webhook_streams.run_at, excluded.run_at)"
).bindparams(bindparam("due", type_=UTCDateTime()))


def takes(event_types: str | None, event_type: str) -> bool:
    """Whether an endpoint subscribed to ``event_types`` (its JSON list; NULL: all) takes this type."""
    return event_types is None or event_type in json.loads(event_types)


def emit(db: Session, *, org_id: str | None, type: str, data: Mapping[str, Any], at: datetime) -> str:
    """Write one event in the caller's transaction, owed to every enabled endpoint taking ``type``;
    its id (the ``webhook-id`` every attempt carries). ``at`` is the billing clock's time of the change.
    Inside ``trail.written_together`` it is collected, and written with the block's others at its end."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    row = _row(org_id, type, data, at)
    collected: list[dict[str, Any]] | None = db.info.get(COLLECTED)
    if collected is not None:
        collected.append(row)
    else:
        write_many(db, [row])
    return str(row["id"])


def write_many(db: Session, rows: list[dict[str, Any]]) -> None:
    """Write events (``emit``'s rows, in the order given) with what each enabled endpoint taking its
    type is owed: the endpoints read once, then a statement per table."""
    endpoints = list(db.execute(_ENDPOINTS_LOCKED if _dialect(db) == "postgresql" else _ENDPOINTS))
    owed = [[e.id for e in endpoints if takes(e.event_types, row["type"])] for row in rows]
    if len(rows) == 1:  # a change's own event: the statement the fast lane and the spend also send
        seqs = [db.execute(_INSERT_EVENT, rows[0]).scalar_one()]
    elif any(owed):  # their seqs, in the order given
        seqs = list(db.execute(insert(_EVENTS).returning(_EVENTS.c.seq, sort_by_parameter_order=True), rows).scalars())
    else:
        repo.insert_events(db, rows)
        return
    _owe_many(db, [(ids, row["org_id"], int(seq)) for ids, row, seq in zip(owed, rows, seqs, strict=True)])


def emit_test(db: Session, *, endpoint_id: str, at: datetime) -> tuple[str, str]:
    """A ``webhook.test`` event owed to one endpoint only, sent by the worker like any other (in the
    endpoint's stream of events of no organization); its id and the delivery's."""
    row = _row(None, TEST_EVENT_TYPE, {"endpoint": endpoint_id}, at)
    seq = db.execute(_INSERT_EVENT, row).scalar_one()
    [delivery_id] = _owe_many(db, [([endpoint_id], None, int(seq))])
    return str(row["id"]), delivery_id


def compact_json(data: Mapping[str, Any]) -> str:
    """A payload (or an audit entry's before and after) as stored: compact, keys sorted, a time in
    ISO 8601 like the body's ``created_at``, anything else JSON has no type for as its text."""
    return json.dumps(dict(data), separators=(",", ":"), sort_keys=True, default=_plain)


def _plain(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _dialect(db: Session | Connection) -> str:
    return (db.dialect if isinstance(db, Connection) else db.get_bind().dialect).name


def _row(org_id: str | None, type: str, data: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    """An event as ``_INSERT_EVENT`` and ``write_many`` take it."""
    return {"id": new_id("evt"), "org_id": org_id, "type": type, "payload": compact_json(data), "created_at": at}


def _owe_many(db: Session | Connection, owed: list[tuple[list[str], str | None, int]]) -> list[str]:
    """For each (endpoints, organization, event seq): a pending delivery per endpoint, and its stream
    marked due; the deliveries' ids."""
    due = wall_now()
    deliveries = [{"id": new_id("whd"), "endpoint_id": endpoint_id, "stream_key": org_id or "", "event_seq": seq,
                   "due": due} for endpoint_ids, org_id, seq in owed for endpoint_id in endpoint_ids]
    if not deliveries:
        return []
    db.execute(_INSERT_DELIVERY, deliveries)
    streams = dict.fromkeys((d["endpoint_id"], d["stream_key"]) for d in deliveries)
    db.execute(_MARK_STREAM, [{"endpoint_id": endpoint_id, "stream_key": stream_key, "due": due}
                              for endpoint_id, stream_key in streams])
    return [str(d["id"]) for d in deliveries]
