"""The audit trail's reading side (SPEC §14): the Owner's ``GET …/audit-log``, newest first."""

from __future__ import annotations

from fastapi import APIRouter

from slotwise.api import audit_schemas as aus
from slotwise.api import schemas as s
from slotwise.api.deps import OrgActor, SessionDep
from slotwise.services import audit_log

router = APIRouter(tags=["audit"])
ORG = "/v1/organizations/{org}"
ERRORS: dict[int | str, dict[str, object]] = {code: {"model": s.ErrorBody} for code in (401, 403, 404, 422)}


def entry_out(e: audit_log.Entry) -> aus.AuditEntryOut:
    return aus.AuditEntryOut(
        id=e.id, at=e.at, actor=aus.AuditActorOut(type=e.actor_type, id=e.actor_id, label=e.actor_label),
        kind=e.kind, subject_id=e.subject_id, before=e.before, after=e.after, amount=e.amount,
        currency=e.currency, invoice_id=e.invoice_id)


@router.get(ORG + "/audit-log", response_model=s.Page[aus.AuditEntryOut], responses=ERRORS)
def list_audit_log(actor: OrgActor, db: SessionDep, limit: s.PageLimit = s.DEFAULT_PAGE_SIZE,
                   starting_after: s.StartingAfter = None, kind: aus.KindFilter = None) -> s.Page[aus.AuditEntryOut]:
    """Every billing change of the organization, newest first: who (a user, the operator, or slotwise
    itself), what (``kind``), before → after, and the amount and invoice where money moved. One kind
    with ``kind=addon.added``, a family with ``kind=addon.``. Owner only; entries never change."""
    found = audit_log.entries_page(db, actor=actor, limit=limit, after=starting_after, kind=kind)
    return s.Page(data=[entry_out(e) for e in found.entries], has_more=found.has_more)
