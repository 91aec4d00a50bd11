"""The billing overview (plan, status, next billing date, card, invoices), invoices and plans."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

from fastapi import APIRouter, Form
from starlette.responses import Response

from slotwise import repositories as repo
from slotwise.catalog import Plan
from slotwise.services import billing_details, checkout, payments, subscriptions
from slotwise.web.billing import org_overview
from slotwise.web.credits import credits_panel
from slotwise.web.deps import FormDep, PageDep, act
from slotwise.web.render import Flash, long_date, money, render

router = APIRouter(include_in_schema=False)
OVERVIEW = "/billing"
PLANS = "/billing/plans"
SALES = "mailto:sales@slotwise.example?subject=Enterprise%20plan"


@router.get(OVERVIEW)
def overview_page(page: PageDep) -> Response:
    overview = org_overview(page)
    invoices = repo.invoices_of_org(page.db, page.org.id, limit=24) if page.is_manager else []
    scheduled = overview.subscription.scheduled_plan if overview.subscription else None
    return render(page.request, "billing.html", {
        "page": page, "nav": "billing", "overview": overview, "invoices": invoices,
        "credits": credits_panel(page, overview),
        "scheduled_plan": page.env.catalog.plan(scheduled) if scheduled else None,
    })


def card_updated(update: payments.CardUpdate) -> Flash:
    """What a new card did: the card on file, and the open invoices it paid or the restart it billed."""
    org, retried, restarted = update.organization, update.retried, update.restart_invoice
    text = f"Your card was updated: {(org.card_brand or 'card').title()} ending in {org.card_last4}."
    detail = None
    if restarted is not None:
        detail = (f"Your subscription restarted today: {money(restarted.total, restarted.currency)} was charged "
                  f"(invoice #{restarted.number}). Unpaid invoices voided: {len(update.voided)}.")
    elif retried:
        paid = sum(1 for inv in retried if inv.status == "paid")
        detail = (f"We retried {len(retried)} open invoice{'s' if len(retried) != 1 else ''}: "
                  f"{paid} paid, {len(retried) - paid} still open.")
    return Flash("success", text, detail)


@router.post(OVERVIEW + "/payment-method")
def update_card(page: FormDep, card_number: Annotated[str, Form()] = "") -> Response:
    def action() -> Flash:
        return card_updated(payments.update_payment_method(page.db, env=page.env, actor=page.actor,
                                                           card_number=card_number, at=page.now))

    return act(page, OVERVIEW + "#payment-method", action)


@router.get(OVERVIEW + "/invoices/{invoice_id}")
def invoice_page(invoice_id: str, page: PageDep) -> Response:
    invoice = repo.invoice_in_org(page.db, page.org.id, invoice_id) if page.is_manager else None
    if invoice is None:
        return render(page.request, "error.html", {
            "page": page, "title": "Invoice not found",
            "message": "There is no such invoice, or only the owner and admins can see it."}, status_code=404)
    details = billing_details.organization_with_details(page.db, page.org.id)[1]
    return render(page.request, "invoice.html", {"page": page, "nav": "billing", "invoice": invoice,
                                                 "details": details})


@dataclass(frozen=True, slots=True)
class PlanOption:
    plan: Plan
    current: bool
    scheduled: bool  # the plan a scheduled downgrade moves to
    action: str | None  # start | upgrade | downgrade | keep | contact | None
    label: str = ""
    checkout: str | None = None  # the checkout page, when choosing this plan means entering a card there


def _through_checkout(option: PlanOption, has_card: bool) -> PlanOption:
    """Subscribing from Free, or paying for an upgrade without a card on file, goes through checkout
    (SPEC §12); with a card on file a plan change stays the one-click change it was."""
    if option.action == "start" or (option.action == "upgrade" and not has_card):
        return replace(option, checkout=checkout.checkout_path(option.plan.code))
    return option


def _option(plan: Plan, current: Plan, scheduled: str | None, subscribed: bool) -> PlanOption:
    is_current, is_scheduled = plan.code == current.code, plan.code == scheduled
    if not plan.self_serve:
        return PlanOption(plan, is_current, is_scheduled, "contact", "Contact sales")
    if is_current:
        keep = scheduled is not None
        return PlanOption(plan, True, False, "keep" if keep else None, f"Keep {plan.name}" if keep else "")
    if is_scheduled:
        return PlanOption(plan, False, True, None)
    if not subscribed:
        return PlanOption(plan, False, False, None if plan.is_free else "start", f"Choose {plan.name}")
    if plan.rank > current.rank:
        return PlanOption(plan, False, False, "upgrade", f"Upgrade to {plan.name}")
    return PlanOption(plan, False, False, "downgrade", f"Downgrade to {plan.name}")


@router.get(PLANS)
def plans_page(page: PageDep) -> Response:
    overview = org_overview(page)
    sub = overview.subscription
    scheduled = sub.scheduled_plan if sub else None
    current = page.env.catalog.plan(overview.plan.code)
    has_card = page.org.card_token is not None
    options = [_through_checkout(_option(p, current, scheduled, sub is not None), has_card)
               for p in page.env.catalog.plans_by_rank()]
    return render(page.request, "plans.html", {
        "page": page, "nav": "plans", "overview": overview, "options": options, "sales": SALES,
        "scheduled_plan": page.env.catalog.plan(scheduled) if scheduled else None,
    })


@router.post(PLANS)
def change_plan(page: FormDep, plan: Annotated[str, Form()] = "") -> Response:
    def action() -> Flash:
        change = subscriptions.change_plan(page.db, env=page.env, actor=page.actor, plan_code=plan, at=page.now)
        invoice = change.invoice
        if change.kind == "downgrade_scheduled":
            name = page.env.catalog.plan(change.plan_code).name
            return Flash("success", change.message,
                         f"You move to {name} on {long_date(change.effective_at)}. Until then nothing changes.")
        if invoice is not None:
            return Flash("success", change.message,
                         f"{money(invoice.total, invoice.currency)} was charged today (invoice #{invoice.number}).",
                         f"/billing/invoices/{invoice.id}", "View invoice")
        return Flash("success", change.message)

    return act(page, PLANS, action)
