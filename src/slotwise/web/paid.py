"""Paid agents for the organization (SPEC §13): an agent's Visibility (saved from the Agents page),
and Billing → Subscriptions — the passes visitors bought, this month's revenue, and the Owner's refunds.
The public paywall the visitors buy on is ``web.paywall``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query
from starlette.responses import Response

from slotwise.errors import NotFound, OwnerOnly, SlotwiseError
from slotwise.models import Agent, Pass
from slotwise.services import agents, paid_access
from slotwise.web.deps import FormDep, Page, PageDep, act
from slotwise.web.render import Flash, leave_flash, long_date, money, plural, redirect, render
from slotwise.web.team import AGENTS, render_agents
from slotwise.web.visibility import MODE_LABELS, VisibilityForm

router = APIRouter(include_in_schema=False)
SUBSCRIPTIONS = "/billing/subscriptions"
PAGE_SIZE = 25
Text = Annotated[str, Form()]
STATUS_LABELS = {"active": "Active", "expired": "Expired", "used_up": "Used up", "refunded": "Refunded"}


# --- Visibility -----------------------------------------------------------------------------------

def _saved(agent: Agent) -> Flash:
    label = MODE_LABELS.get(agent.access_mode, agent.access_mode)
    config = paid_access.config_of(agent)
    if agent.access_mode == "paid" and config is not None:
        return Flash("success", f"{agent.name} is now {label}.",
                     f"Visitors pay {money(config.price, config.currency)} for "
                     f"{plural(config.access_days, 'day')} and {plural(config.message_credits, 'message')}. "
                     "Share its paywall link with them.", f"/pay/{agent.id}", "Open the paywall")
    return Flash("success", f"{agent.name} is now {label}.",
                 "Anyone can chat with it." if agent.access_mode == "free"
                 else "Only your contacts can chat with it.")


@router.post(AGENTS + "/{agent_id}/visibility")
def save_visibility(agent_id: str, page: FormDep, mode: Text = "", price: Text = "", currency: Text = "",
                    access_days: Text = "", message_credits: Text = "") -> Response:
    """Saved with its message, or the Agents page again with what was typed and the refusal (its
    code) on this agent's form — never a 500. The configuration is part of Pay for Access: another
    mode leaves the saved configuration as it is."""
    typed = VisibilityForm(agent_id, mode, price, currency, access_days, message_credits)
    savepoint = page.db.begin_nested()
    try:
        config = typed.config() if mode == "paid" else None
        agent = paid_access.configure_access(page.db, actor=page.actor, agent_id=agent_id, mode=mode,
                                             paid=config, at=page.now)
        flash = _saved(agent)
    except SlotwiseError as error:
        savepoint.rollback()
        if error.code == "not_found":
            leave_flash(page.session, Flash("error", error.message))
            return redirect(AGENTS)
        return render_agents(page, typed=typed, error=error, status_code=error.status)
    savepoint.commit()
    leave_flash(page.session, flash)
    return redirect(f"{AGENTS}#visibility-{agent.id}")


# --- Subscriptions --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PassRow:
    pass_: Pass
    agent_name: str
    status: str

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)


def _refused(page: Page, title: str, message: str, status_code: int) -> Response:
    return render(page.request, "error.html", {"page": page, "nav": "subscriptions", "title": title,
                                               "message": message}, status_code=status_code)


def _subscriptions_url(agent: str = "", starting_after: str = "") -> str:
    query = {k: v for k, v in (("agent", agent), ("starting_after", starting_after)) if v}
    return SUBSCRIPTIONS + (f"?{urlencode(query)}" if query else "")


def _currency(listed: Sequence[Agent], agent: str) -> str:
    """The currency a month without sales shows its zero in: the (chosen) paid agents' own."""
    for a in listed:
        if a.paid_currency and (not agent or a.id == agent):
            return str(a.paid_currency)
    return "usd"


@router.get(SUBSCRIPTIONS)
def subscriptions_page(page: PageDep, agent: str = "",
                       starting_after: Annotated[str, Query(max_length=64)] = "") -> Response:
    if not page.is_manager:
        return _refused(page, "Owner or Admin only",
                        "Subscriptions show your visitors' emails and the revenue of your paid agents, so only "
                        "the organization owner and admins can see them.", 403)
    listed = agents.list_agents(page.db, actor=page.actor)
    names = {a.id: a.name for a in listed}
    if agent and agent not in names:
        return _refused(page, "Agent not found", "There is no such agent in your organization.", 404)
    try:
        found = paid_access.passes_page(page.db, actor=page.actor, limit=PAGE_SIZE, after=starting_after or None,
                                        agent_id=agent or None)
    except SlotwiseError as error:
        return _refused(page, "This page of passes does not exist", error.message, error.status)
    revenue = paid_access.revenue(page.db, actor=page.actor, at=page.now, agent_id=agent or None)
    rows = [PassRow(p, names.get(p.agent_id, p.agent_id), paid_access.status_of(p, page.now))
            for p in found[:PAGE_SIZE]]
    more = len(found) > PAGE_SIZE
    return render(page.request, "subscriptions.html", {
        "page": page, "nav": "subscriptions", "agents": listed, "agent": agent, "agent_name": names.get(agent),
        "rows": rows, "revenue": revenue, "currency": _currency(listed, agent),
        "paid_agents": [a for a in listed if a.access_mode == "paid" and a.archived_at is None],
        "next_href": _subscriptions_url(agent, rows[-1].pass_.id) if more and rows else None,
        "first_href": _subscriptions_url(agent) if starting_after else None,
        "month": long_date(page.now.replace(day=1)),
    })


@router.post(SUBSCRIPTIONS + "/passes/{pass_id}/refund")
def refund(pass_id: str, page: FormDep, agent: Text = "") -> Response:
    """The Owner gives a pass's whole payment back; a second submit finds it refunded and gives nothing."""
    back = _subscriptions_url(agent if agent.isascii() and agent.replace("_", "").isalnum() else "")

    def action() -> Flash:
        if not page.is_owner:
            raise OwnerOnly.for_("Refunds")
        before: Any = page.db.get(Pass, pass_id)
        if before is None or before.org_id != page.org.id:
            raise NotFound("No such pass.")
        if before.refunded_at is not None:
            return Flash("info", "This pass was already refunded, so nothing more was given back.",
                         f"{money(before.price, before.currency)} went back to {before.visitor_email} on "
                         f"{long_date(before.refunded_at)}.")
        done = paid_access.refund_pass(page.db, env=page.env, actor=page.actor, pass_id=pass_id, at=page.now)
        return Flash("success", f"Pass refunded: {money(done.price, done.currency)} given back to "
                     f"{done.visitor_email}.", "The pass stopped working at once, and its payment left your revenue.")

    return act(page, back, action)
