"""The audit trail (SPEC §14), the writing side: every billing change leaves one immutable entry in
the transaction that makes it — who (a user, the operator, or the system), what, before → after,
and the amount and invoice where money moved. The Owner reads them (``GET …/audit-log``, Activity).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from slotwise.models import User, UTCDateTime, new_id
from slotwise.services.context import Actor

ActorType = Literal["user", "operator", "system"]


@dataclass(frozen=True, slots=True)
class By:
    """Who made a change: a user (id, and email for display), the operator's key, or slotwise itself
    (renewals, the worker, reconciliation)."""

    type: ActorType
    id: str | None = None
    label: str | None = None


OPERATOR = By("operator", label="operator")
SYSTEM = By("system", label="slotwise")


def by_user(db: Session, actor: Actor) -> By:
    """The acting user, with their email as it is now (kept in the entry: a later change of email
    or a removed member does not rewrite history)."""
    email = db.execute(select(User.email).where(User.id == actor.user_id)).scalar_one_or_none()
    return By("user", actor.user_id, email)

_INSERT = text(
    "INSERT INTO audit_entries (id, org_id, actor_type, actor_id, actor_label, kind, subject_id, before, "
    "after, amount, currency, invoice_id, created_at) VALUES (:id, :org_id, :actor_type, :actor_id, "
    ":actor_label, :kind, :subject_id, :before, :after, :amount, :currency, :invoice_id, :created_at)"
).bindparams(bindparam("created_at", type_=UTCDateTime()))


def record(db: Session, *, org_id: str, by: By, kind: str, at: datetime, subject_id: str | None = None,
           before: Mapping[str, Any] | None = None, after: Mapping[str, Any] | None = None,
           amount: int | None = None, currency: str | None = None, invoice_id: str | None = None) -> str:
    """Write one entry in the caller's transaction; its id. ``at`` is the billing clock's time."""
    entry_id = new_id("aud")
    db.execute(_INSERT, {"id": entry_id, "org_id": org_id, "actor_type": by.type, "actor_id": by.id,
                         "actor_label": by.label, "kind": kind, "subject_id": subject_id,
                         "before": _json(before), "after": _json(after), "amount": amount,
                         "currency": currency, "invoice_id": invoice_id, "created_at": at})
    return entry_id


def _json(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(dict(value), separators=(",", ":"), sort_keys=True, default=str)
