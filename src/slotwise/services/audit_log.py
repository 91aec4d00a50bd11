"""The audit trail (SPEC §14), the reading side: an organization's entries for its Owner, newest
first, one keyset page at a time, all of them or one kind (``addon.added``) or one family of kinds
(``addon.``). Entries are written by ``services.audit`` and never change, so a page is a plain read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from slotwise.errors import InvalidRequest, OwnerOnly
from slotwise.models import Agent, AuditEntry
from slotwise.services.context import Actor

# A kind is a dotted lower-case slug (``addon.added``, ``auto_recharge.disabled``); ending in a dot it
# names a family (``addon.``). Checked by pattern rather than against a list of kinds, so the reader
# never refuses a kind a newer writer records.
KIND = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*\.?")
KIND_PATTERN = "^" + KIND.pattern + "$"
KIND_MAX_LENGTH = 48  # the column's width
OWNER_ONLY = "The audit log is Owner Only. Ask your organization owner to read it."


@dataclass(frozen=True, slots=True)
class Entry:
    """One audit entry as the Owner reads it: before and after decoded from their JSON."""

    id: str
    at: datetime
    actor_type: str
    actor_id: str | None
    actor_label: str | None
    kind: str
    subject_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    amount: int | None
    currency: str | None
    invoice_id: str | None


@dataclass(frozen=True, slots=True)
class EntryPage:
    """Up to ``limit`` entries, newest first, and whether there are older (``has_more``) and newer
    (``has_newer``, known only for a page asked for with ``ending_before``) entries beyond them."""

    entries: list[Entry]
    has_more: bool
    has_newer: bool


def require_reader(actor: Actor) -> None:
    """Only the Owner reads the audit trail: it names every member's changes and every amount."""
    if not actor.is_owner:
        raise OwnerOnly(OWNER_ONLY)


def valid_kind(kind: str) -> bool:
    return len(kind) <= KIND_MAX_LENGTH and KIND.fullmatch(kind) is not None


def entries_page(db: Session, *, actor: Actor, limit: int, after: str | None = None, before: str | None = None,
                 kind: str | None = None) -> EntryPage:
    """The Owner's page of entries, newest first: the ``limit`` entries older than the entry ``after``
    (the list's cursor), or with ``before`` the ``limit`` entries just newer than that one, or else the
    newest. ``kind`` keeps one kind, or a family when it ends in a dot. A cursor that is not one of the
    organization's entries is ``invalid_request`` (``field`` names it); any entry of the organization
    is a cursor whatever the kind, since the position is its place in the write order."""
    require_reader(actor)
    if kind is not None and not valid_kind(kind):
        raise InvalidRequest("kind must be a kind such as addon.added, or a family such as addon.", field="kind")
    if after is not None and before is not None:
        raise InvalidRequest("Send starting_after or ending_before, not both.", field="ending_before")
    query = select(*_COLUMNS).where(AuditEntry.org_id == actor.org_id, *_of_kind(kind))
    if before is not None:
        seq = _seq_of(db, actor.org_id, before, "ending_before")
        rows = db.execute(query.where(AuditEntry.seq > seq).order_by(AuditEntry.seq).limit(limit + 1)).all()
        return EntryPage([_entry(r) for r in reversed(rows[:limit])], has_more=True, has_newer=len(rows) > limit)
    if after is not None:
        query = query.where(AuditEntry.seq < _seq_of(db, actor.org_id, after, "starting_after"))
    rows = db.execute(query.order_by(AuditEntry.seq.desc()).limit(limit + 1)).all()
    return EntryPage([_entry(r) for r in rows[:limit]], has_more=len(rows) > limit, has_newer=after is not None)


def agent_names(db: Session, *, org_id: str, entries: Sequence[Entry]) -> dict[str, str]:
    """The names of the organization's agents these entries are about (an access change, a pass sold),
    for words; one lookup, none when no entry names an agent. A deleted agent has none."""
    ids = {e.subject_id for e in entries if e.kind.startswith("agent.") and e.subject_id}
    ids |= {str(e.after["agent"]) for e in entries if e.kind.startswith("pass.") and e.after and e.after.get("agent")}
    if not ids:
        return {}
    rows = db.execute(select(Agent.id, Agent.name).where(Agent.org_id == org_id, Agent.id.in_(sorted(ids))))
    return {agent_id: name for agent_id, name in rows}


_COLUMNS = (AuditEntry.id, AuditEntry.created_at, AuditEntry.actor_type, AuditEntry.actor_id,
            AuditEntry.actor_label, AuditEntry.kind, AuditEntry.subject_id, AuditEntry.before, AuditEntry.after,
            AuditEntry.amount, AuditEntry.currency, AuditEntry.invoice_id)


def _of_kind(kind: str | None) -> tuple[ColumnElement[bool], ...]:
    """One kind walks ``ix_audit_entries_org_kind_seq``; a family walks ``ix_audit_entries_org_seq``
    newest first, keeping its kinds (``autoescape``: ``_`` in a kind is no LIKE wildcard)."""
    if kind is None:
        return ()
    if kind.endswith("."):
        return (AuditEntry.kind.startswith(kind, autoescape=True),)
    return (AuditEntry.kind == kind,)


def _seq_of(db: Session, org_id: str, entry_id: str, field: str) -> int:
    # No id is long or holds a control character (PostgreSQL would refuse a NUL in the lookup with a
    # 500): such a cursor is refused like any id that names no entry, before any lookup.
    impossible = len(entry_id) > 64 or any(ch < " " or ch == "\x7f" for ch in entry_id)
    seq = None if impossible else db.scalar(select(AuditEntry.seq).where(AuditEntry.org_id == org_id,
                                                                         AuditEntry.id == entry_id))
    if seq is None:
        raise InvalidRequest(f"{field} must be the id of an entry of this organization's audit log.", field=field)
    return int(seq)


def _entry(row: Sequence[Any]) -> Entry:
    (entry_id, at, actor_type, actor_id, actor_label, kind, subject_id, before, after, amount, currency,
     invoice_id) = row
    return Entry(entry_id, at, actor_type, actor_id, actor_label, kind, subject_id, _decoded(before),
                 _decoded(after), amount, currency, invoice_id)


def _decoded(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}
