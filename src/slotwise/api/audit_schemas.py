"""Response bodies and query parameters of the audit log (SPEC §14)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel, Field

from slotwise.services.audit_log import KIND_MAX_LENGTH, KIND_PATTERN

# A kind or a family of kinds: a dotted lower-case slug, so never long and never a control character.
KindFilter = Annotated[str | None, Query(
    max_length=KIND_MAX_LENGTH, pattern=KIND_PATTERN,
    description="Only entries of this kind (``addon.added``), or of this family when it ends in a dot "
                "(``addon.``).")]


class AuditActorOut(BaseModel):
    type: Literal["user", "operator", "system"]
    id: str | None = Field(description="The user's id; null for the operator and the system.")
    label: str | None = Field(description="Who, for display: the user's email at the time of the change.")


class AuditEntryOut(BaseModel):
    id: str
    at: datetime
    actor: AuditActorOut
    kind: str
    subject_id: str | None = Field(description="The agent, pass, member, invoice … the change is about.")
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    amount: int | None = Field(description="Minor units, where money moved.")
    currency: str | None
    invoice_id: str | None
