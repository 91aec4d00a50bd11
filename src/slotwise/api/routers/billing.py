"""Organization, plans, subscription, payment method, invoices (and their PDFs), billing details and add-ons."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from slotwise import repositories as repo
from slotwise.api import portal_schemas as ps
from slotwise.api import present
from slotwise.api import schemas as s
from slotwise.api.deps import EnvDep, NowDep, OrgActor, SessionDep
from slotwise.api.idempotency import caller_scope, run_idempotent
from slotwise.api.responses import json_body
from slotwise.errors import Forbidden, NotFound
from slotwise.services import addons, billing_details, invoice_pdf, organizations, payments, subscriptions, verification
from slotwise.services.context import require_owner

router = APIRouter(tags=["billing"])
ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": s.ErrorBody} for code in (401, 402, 403, 404, 409, 422)
}
LIMITED: dict[int | str, dict[str, object]] = {**ERRORS, 429: {"model": s.ErrorBody}}  # hourly cap on changes
ORG = "/v1/organizations/{org}"


@router.get("/v1/plans", response_model=list[s.PlanOut])
def list_plans(env: EnvDep) -> list[s.PlanOut]:
    return [present.plan(p) for p in env.catalog.plans_by_rank()]


@router.get(ORG, response_model=s.OrganizationOut, responses=ERRORS)
def get_organization(actor: OrgActor, db: SessionDep, env: EnvDep, now: NowDep) -> Response:
    summary = organizations.organization_summary(db, env=env, org_id=actor.org_id)
    return json_body(present.organization(summary, env.catalog.plan(summary.plan_code), now))


@router.post(ORG + "/subscription", response_model=s.PlanChangeOut, responses=ERRORS)
def change_plan(
    body: s.ChangePlan, actor: OrgActor, request: Request, db: SessionDep, env: EnvDep, now: NowDep
) -> Response:
    def action() -> s.PlanChangeOut:
        change = subscriptions.change_plan(db, env=env, actor=actor, plan_code=body.plan, at=now)
        return s.PlanChangeOut(message=change.message, kind=change.kind, plan=change.plan_code,
                               effective_at=change.effective_at,
                               invoice=present.invoice(change.invoice) if change.invoice else None)

    return run_idempotent(request, db, scope=caller_scope(actor.user_id), now=now, body=body, action=action,
                          authorize=lambda: require_owner(actor, "Plan changes"))


@router.put(ORG + "/payment-method", response_model=s.PaymentMethodUpdated, responses=ERRORS)
def update_payment_method(
    body: s.PaymentMethodIn, actor: OrgActor, request: Request, db: SessionDep, env: EnvDep, now: NowDep
) -> Response:
    def action() -> s.PaymentMethodUpdated:
        update = payments.update_payment_method(db, env=env, actor=actor, card_number=body.card_number,
                                                payment_method=body.payment_method, at=now)
        org = update.organization
        return s.PaymentMethodUpdated(
            payment_method=s.PaymentMethodOut(brand=org.card_brand or "card", last4=org.card_last4 or ""),
            retried_invoices=[present.invoice(i) for i in update.retried],
            voided_invoices=list(update.voided),
            restart_invoice=present.invoice(update.restart_invoice) if update.restart_invoice else None,
        )

    return run_idempotent(request, db, scope=caller_scope(actor.user_id), now=now, body=body, action=action,
                          authorize=lambda: require_owner(actor, "Payment method changes"))


def _require_billing_reader(actor: OrgActor) -> None:
    if actor.role not in ("owner", "admin"):
        raise Forbidden("Only the owner or an admin can read invoices.")


@router.get(ORG + "/invoices", response_model=s.Page[s.InvoiceOut], responses=ERRORS)
def list_invoices(
    actor: OrgActor, db: SessionDep, limit: s.PageLimit = s.DEFAULT_PAGE_SIZE, starting_after: s.StartingAfter = None
) -> s.Page[s.InvoiceOut]:
    """Newest first (by number)."""
    _require_billing_reader(actor)
    after = None if starting_after is None else s.known_cursor(repo.invoice_in_org(db, actor.org_id, starting_after))
    return present.page(repo.invoices_page(db, actor.org_id, limit=limit, after=after), limit, present.invoice)


@router.get(ORG + "/invoices/{invoice_id}", response_model=s.InvoiceOut, responses=ERRORS)
def get_invoice(invoice_id: str, actor: OrgActor, db: SessionDep) -> s.InvoiceOut:
    _require_billing_reader(actor)
    found = repo.invoice_in_org(db, actor.org_id, invoice_id)
    if found is None:
        raise NotFound("No such invoice.")
    return present.invoice(found)


@router.post(ORG + "/invoices/{invoice_id}/verify", response_model=s.InvoiceOut, responses=ERRORS)
def verify_payment(
    invoice_id: str, actor: OrgActor, request: Request, db: SessionDep, env: EnvDep, now: NowDep,
    body: s.VerifyIn | None = None,
) -> Response:
    """Complete a payment the bank asked the Owner to verify (SCA): the invoice, paid and what it
    bought granted; ``payment_failed`` if the bank said no (a purchase is then void),
    ``verification_pending`` while it has not answered, ``verification_expired`` after its period."""
    def action() -> s.InvoiceOut:
        return present.invoice(verification.verify(db, env=env, actor=actor, invoice_id=invoice_id,
                                                   verdict=body.verdict if body else None, at=now))

    return run_idempotent(request, db, scope=caller_scope(actor.user_id), now=now, body=body, action=action,
                          authorize=lambda: require_owner(actor, "Payment verifications"))


@router.get(ORG + "/addons", response_model=list[s.AddonOut], responses=ERRORS)
def list_addons(actor: OrgActor, db: SessionDep, env: EnvDep) -> list[s.AddonOut]:
    return [present.addon(v) for v in addons.list_addons(db, env=env, actor=actor)]


@router.post(ORG + "/addons/{code}/preview", response_model=s.PreviewOut, responses=ERRORS)
def preview_addon(
    code: str, body: s.PreviewRequest, actor: OrgActor, db: SessionDep, env: EnvDep, now: NowDep
) -> Response:
    quote = addons.preview(db, env=env, actor=actor, addon_code=code, action=body.action,
                           quantity=None if body.all else body.quantity, at=now)
    return json_body(present.preview(quote))


@router.post(ORG + "/addons/{code}/add", response_model=s.SlotChangeOut, responses=LIMITED)
def add_slots(
    code: str, body: s.AddSlots, actor: OrgActor, request: Request, db: SessionDep, env: EnvDep, now: NowDep
) -> Response:
    def action() -> s.SlotChangeOut:
        return present.slot_change(
            addons.add_slots(db, env=env, actor=actor, addon_code=code, quantity=body.quantity, at=now))

    return run_idempotent(request, db, scope=caller_scope(actor.user_id), now=now, body=body, action=action,
                          authorize=lambda: require_owner(actor))


@router.post(ORG + "/addons/{code}/remove", response_model=s.SlotChangeOut, responses=LIMITED)
def remove_slots(
    code: str, body: s.RemoveSlots, actor: OrgActor, request: Request, db: SessionDep, env: EnvDep,
    now: NowDep,
) -> Response:
    def action() -> s.SlotChangeOut:
        quantity = None if body.all else body.quantity
        return present.slot_change(
            addons.remove_slots(db, env=env, actor=actor, addon_code=code, quantity=quantity, at=now))

    return run_idempotent(request, db, scope=caller_scope(actor.user_id), now=now, body=body, action=action,
                          authorize=lambda: require_owner(actor))


@router.post(ORG + "/addons/{code}/keep", response_model=s.AddonOut, responses=ERRORS)
def keep_slots(
    code: str, actor: OrgActor, request: Request, db: SessionDep, env: EnvDep, now: NowDep
) -> Response:
    def action() -> s.AddonOut:
        return present.addon(addons.keep_slots(db, env=env, actor=actor, addon_code=code, at=now))

    return run_idempotent(request, db, scope=caller_scope(actor.user_id), now=now, body=None, action=action,
                          authorize=lambda: require_owner(actor))


# --- the billing portal (SPEC §12): billing details, invoice PDFs, cancel at period end, resume ------

@router.get(ORG + "/billing-details", response_model=ps.BillingDetailsOut, responses=ERRORS)
def get_billing_details(actor: OrgActor, db: SessionDep) -> ps.BillingDetailsOut:
    """Read by the Owner and admins, who read the invoices they are printed on."""
    _require_billing_reader(actor)
    return ps.billing_details(billing_details.organization_with_details(db, actor.org_id)[1])


@router.put(ORG + "/billing-details", response_model=ps.BillingDetailsOut, responses=ERRORS)
def put_billing_details(body: ps.BillingDetailsIn, actor: OrgActor, db: SessionDep,
                        now: NowDep) -> ps.BillingDetailsOut:
    """Replace the details (Owner only); the same body twice stores the same details."""
    details = billing_details.update_billing_details(db, actor=actor, email=body.email, company=body.company,
                                                     address=body.address, at=now)
    return ps.billing_details(details)


@router.get(ORG + "/invoices/{invoice_id}/pdf", response_class=Response, responses={
    **ERRORS, 200: {"content": {"application/pdf": {}}, "description": "The invoice, or its receipt once paid."}})
def get_invoice_pdf(invoice_id: str, actor: OrgActor, db: SessionDep) -> Response:
    _require_billing_reader(actor)
    found = repo.invoice_in_org(db, actor.org_id, invoice_id)
    if found is None:
        raise NotFound("No such invoice.")
    org, details = billing_details.organization_with_details(db, actor.org_id)
    return Response(invoice_pdf.render_invoice_pdf(found, org, details), media_type="application/pdf",
                    headers=invoice_pdf.download_headers(found))


@router.post(ORG + "/subscription/cancel", response_model=ps.CancelOut, responses=ERRORS)
def cancel_subscription(actor: OrgActor, request: Request, db: SessionDep, env: EnvDep, now: NowDep) -> Response:
    def action() -> ps.CancelOut:
        return ps.cancel_change(subscriptions.cancel_at_period_end(db, env=env, actor=actor, at=now))

    return run_idempotent(request, db, scope=caller_scope(actor.user_id), now=now, body=None, action=action,
                          authorize=lambda: require_owner(actor, "Subscription changes"))


@router.post(ORG + "/subscription/resume", response_model=ps.CancelOut, responses=ERRORS)
def resume_subscription(actor: OrgActor, request: Request, db: SessionDep, env: EnvDep, now: NowDep) -> Response:
    def action() -> ps.CancelOut:
        return ps.cancel_change(subscriptions.resume(db, env=env, actor=actor, at=now))

    return run_idempotent(request, db, scope=caller_scope(actor.user_id), now=now, body=None, action=action,
                          authorize=lambda: require_owner(actor, "Subscription changes"))
