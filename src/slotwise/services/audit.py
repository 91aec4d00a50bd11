"""The audit trail (SPEC §14), the writing side: every billing change leaves one immutable entry in
the transaction that makes it — who (a user, the operator, or the system), what, before → after,
and the amount and invoice where money moved. The Owner reads them (``GET …/audit-log``, Activity).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from slotwise.models import UTCDateTime, new_id
from slotwise.services.context import Actor
from slotwise.services.events import compact_json

ActorType = Literal["user", "operator", "system"]


@dataclass(frozen=True, slots=True)
class By:
    """Who made a change: a user (id, and email for display), the operator's key, or slotwise itself
    (renewals, the worker, reconciliation)."""

    type: ActorType
    id: str | None = None
    label: str | None = None


# Every kind of entry slotwise writes, by capability (the Activity page's ``?kind=`` filter offers these).
KINDS: tuple[str, ...] = (
    "organization.created",
    # the plan and the subscription
    "plan.started", "plan.upgraded", "plan.downgrade_scheduled", "plan.downgrade_canceled",
    "subscription.cancel_scheduled", "subscription.resumed", "subscription.renewed", "subscription.renewal_failed",
    "subscription.ended", "subscription.unpaid", "subscription.reactivated", "subscription.restarted",
    # invoices paid or declined after their first attempt (a retry, a new card, the bank's verification)
    "invoice.paid", "invoice.payment_failed",
    # a purchase whose verification ran out of time; a payment reconciliation gave back
    "invoice.voided", "payment.refunded",
    # add-on slots
    "addon.added", "addon.removal_scheduled", "addon.removal_cancelled", "addon.removal_reduced", "addon.removed",
    # the card and the billing details
    "payment_method.updated", "billing_details.updated",
    # credits
    "credits.topped_up", "credits.recharged", "credits.recharge_failed", "auto_recharge.updated",
    "auto_recharge.disabled",
    # people and agents, which capacity is counted against
    "member.added", "member.removed", "invitation.created", "invitation.revoked", "invitation.accepted",
    "invitation.withdrawn", "agent.created", "agent.archived", "agent.restored", "agent.deleted",
    # paid agents (services.paid_access): who may talk to an agent, and the passes sold
    "agent.access_changed", "pass.created", "pass.refunded",
)

OPERATOR = By("operator", label="operator")
SYSTEM = By("system", label="slotwise")


def by_user(db: Session, actor: Actor) -> By:
    """The acting user. Their email as it is at the change is read by the entry's own INSERT (no
    round trip of its own) and kept in it: a later change of email or a removed member does not
    rewrite history."""
    return By("user", actor.user_id)

# Where ``trail.written_together`` collects a block's entries (``Session.info``).
COLLECTED = "slotwise.audit.collected"

# A user's label, when none is given, is their email as the change reads it.
INSERT = text(
    "INSERT INTO audit_entries (id, org_id, actor_type, actor_id, actor_label, kind, subject_id, before, "
    "after, amount, currency, invoice_id, created_at) VALUES (:id, :org_id, :actor_type, :actor_id, "
    "COALESCE(CAST(:actor_label AS VARCHAR), (SELECT u.email FROM users u WHERE u.id = CAST(:actor_id AS VARCHAR))), "
    ":kind, :subject_id, :before, :after, :amount, :currency, :invoice_id, :created_at)"
).bindparams(bindparam("created_at", type_=UTCDateTime()))


def record(db: Session, *, org_id: str, by: By, kind: str, at: datetime, subject_id: str | None = None,
           before: Mapping[str, Any] | None = None, after: Mapping[str, Any] | None = None,
           amount: int | None = None, currency: str | None = None, invoice_id: str | None = None) -> str:
    """Write one entry in the caller's transaction; its id. ``at`` is the billing clock's time. Inside
    ``trail.written_together`` it is collected, and written with the block's others at its end."""
    values = entry(org_id=org_id, by=by, kind=kind, at=at, subject_id=subject_id, before=before, after=after,
                   amount=amount, currency=currency, invoice_id=invoice_id)
    collected: list[dict[str, Any]] | None = db.info.get(COLLECTED)
    if collected is not None:
        collected.append(values)
    else:
        db.execute(INSERT, values)
    return str(values["id"])


def entry(*, org_id: str, by: By, kind: str, at: datetime, subject_id: str | None = None,
          before: Mapping[str, Any] | None = None, after: Mapping[str, Any] | None = None,
          amount: int | None = None, currency: str | None = None, invoice_id: str | None = None) -> dict[str, Any]:
    """``INSERT``'s parameters for one entry (the fast lane sends the statement itself)."""
    return {"id": new_id("aud"), "org_id": org_id, "actor_type": by.type, "actor_id": by.id,
            "actor_label": by.label, "kind": kind, "subject_id": subject_id, "before": _json(before),
            "after": _json(after), "amount": amount, "currency": currency, "invoice_id": invoice_id,
            "created_at": at}


def _json(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else compact_json(value)
