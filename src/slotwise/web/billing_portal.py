"""The billing portal ("Update Billing", SPEC §12): billing details, the subscription with its renewal
date, cancel at the period end and resume, and the invoices as PDF. Changes are the Owner's; admins
see it read-only (with the invoices), members see the subscription only, as on the Billing overview.
The card is updated on the Billing overview."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form
from starlette.responses import Response

from slotwise import repositories as repo
from slotwise.errors import SlotwiseError
from slotwise.services import billing_details, invoice_pdf, subscriptions
from slotwise.services.billing_details import MAX_ADDRESS, MAX_COMPANY, MAX_EMAIL, BillingDetails
from slotwise.web.billing import org_overview
from slotwise.web.deps import FormDep, Page, PageDep, act
from slotwise.web.render import Flash, long_date, render

router = APIRouter(include_in_schema=False)
PORTAL = "/billing/portal"
Text = Annotated[str, Form()]


def _render_portal(page: Page, *, form: BillingDetails | None = None, error: SlotwiseError | None = None,
                   status_code: int = 200) -> Response:
    overview = org_overview(page)
    sub = repo.current_subscription(page.db, page.org.id)
    _, saved = billing_details.organization_with_details(page.db, page.org.id)
    context: dict[str, Any] = {
        "page": page, "nav": "billing", "overview": overview, "saved": saved, "form": form or saved,
        "canceling": subscriptions.is_canceling(sub),
        "invoices": repo.invoices_of_org(page.db, page.org.id, limit=24) if page.is_manager else [],
        "error": error, "error_field": error.details.get("field") if error is not None else None,
        "max_email": MAX_EMAIL, "max_company": MAX_COMPANY, "max_address": MAX_ADDRESS,
    }
    return render(page.request, "billing_portal.html", context, status_code=status_code)


@router.get(PORTAL)
def portal_page(page: PageDep) -> Response:
    return _render_portal(page)


@router.post(PORTAL + "/details")
def save_details(page: FormDep, email: Text = "", company: Text = "", address: Text = "") -> Response:
    """Saved, or the page again with what was typed and the refusal beside its field (never a 500)."""
    savepoint = page.db.begin_nested()
    try:
        billing_details.update_billing_details(page.db, actor=page.actor, email=email, company=company,
                                               address=address, at=page.now)
    except SlotwiseError as error:
        savepoint.rollback()
        return _render_portal(page, form=BillingDetails(email, company, address), error=error,
                              status_code=error.status)
    savepoint.commit()
    return act(page, PORTAL, lambda: Flash("success", "Billing details saved.",
                                           "They are printed on your invoices and receipts."))


@router.post(PORTAL + "/cancel")
def cancel(page: FormDep) -> Response:
    def action() -> Flash:
        change = subscriptions.cancel_at_period_end(page.db, env=page.env, actor=page.actor, at=page.now)
        return Flash("success", change.message,
                     f"Your plan stays active until {long_date(change.cancels_at)}; then you move to Free. "
                     "Nothing is deleted, and you can resume until then.")

    return act(page, PORTAL, action)


@router.post(PORTAL + "/resume")
def resume(page: FormDep) -> Response:
    def action() -> Flash:
        change = subscriptions.resume(page.db, env=page.env, actor=page.actor, at=page.now)
        return Flash("success", change.message,
                     f"Next billing date: {long_date(change.subscription.period_end)}.")

    return act(page, PORTAL, action)


@router.get("/billing/invoices/{invoice_id}/pdf")
def invoice_pdf_download(invoice_id: str, page: PageDep) -> Response:
    invoice = repo.invoice_in_org(page.db, page.org.id, invoice_id) if page.is_manager else None
    if invoice is None:
        return render(page.request, "error.html", {
            "page": page, "title": "Invoice not found",
            "message": "There is no such invoice, or only the owner and admins can see it."}, status_code=404)
    org, details = billing_details.organization_with_details(page.db, page.org.id)
    return Response(invoice_pdf.render_invoice_pdf(invoice, org, details), media_type="application/pdf",
                    headers=invoice_pdf.download_headers(invoice))
