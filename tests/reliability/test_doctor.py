"""``slotwise doctor`` passes on a database that real traffic built, and catches each kind of damage.

A history is built through the API (add-ons bought and scheduled for removal, renewals, an upgrade,
a failed renewal charge left open, a cancellation), then one thing is broken by hand with SQL, as a
bug or a half-finished write would leave it. The doctor must name that check and that organization,
and the CLI must exit non-zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from slotwise.catalog import load_catalog
from slotwise.cli import main
from slotwise.doctor import run_doctor
from slotwise.models import (
    Agent,
    Charge,
    CreditAccount,
    CreditEntry,
    Invoice,
    InvoiceLine,
    OrgAddon,
    Organization,
    Pass,
    Subscription,
    new_id,
)
from slotwise.periods import period_at_index
from tests.conftest import OPERATOR_KEY
from tests.factories import DECLINED_CARD, Api, Org, change_plan, set_card


@dataclass
class History:
    busy: str  # pro → business, add-ons of both kinds, two renewals, a removal scheduled
    past_due: str  # starter whose renewal charge was declined: an open invoice
    canceled: str  # pro, downgraded to free at renewal
    free: str


def build_history(api: Api) -> History:
    busy = api.create_org("pro")
    assert busy.add_slots("agent_slots", 3).status_code == 200
    tutor = busy.create_agents(7)[0]
    sell_a_pass(api, busy, tutor)
    assert busy.add_slots("member_slots", 2).status_code == 200
    busy.add_member()
    api.advance(31)  # renewal 1 bills the slots at their renewal quantity
    assert busy.remove_slots("agent_slots", 1).status_code == 200
    assert busy.add_slots("agent_slots", 2).status_code == 200
    assert change_plan(busy, "business").status_code == 200
    past_due = api.create_org("starter")
    assert set_card(past_due, DECLINED_CARD).status_code == 200
    canceled = api.create_org("pro")
    assert change_plan(canceled, "free").status_code == 200
    free = api.create_org("free")
    api.advance(31)  # renewal 2 for busy; past_due's charge fails; canceled ends
    return History(busy.id, past_due.id, canceled.id, free.id)


def sell_a_pass(api: Api, org: Org, agent_id: str) -> None:
    """A paid agent with a pass sold and two of its messages sent (SPEC §13)."""
    paid = {"price": 500, "currency": "usd", "access_days": 30, "message_credits": 5}
    assert org.put(f"/agents/{agent_id}/access", {"mode": "paid", "paid": paid}).status_code == 200
    bought = api.client.post(f"/v1/agents/{agent_id}/checkout", json={
        "email": "visitor@example.test", "card_number": "4242424242424242", "checkout": "doctor"})
    token = bought.json()["visitor_token"]
    for n in range(2):
        sent = api.client.post(f"/v1/agents/{agent_id}/messages", json={"reference": f"m{n}", "visitor_token": token},
                               headers=api.bearer(api.operator_key))
        assert sent.status_code == 200, sent.text


def checks_of(sessions: sessionmaker[Session], org_id: str) -> set[str]:
    found = run_doctor(sessions, load_catalog())
    assert {v.org_id for v in found.violations} <= {org_id}, found.violations
    return {v.check for v in found.violations}


# --- corruptions: each as a bug or a torn write would leave the tables ---------------------------

def _last_invoice(db: Session, org_id: str, kind: str, status: str = "paid") -> Invoice:
    query = (select(Invoice).where(Invoice.org_id == org_id, Invoice.kind == kind, Invoice.status == status)
             .order_by(Invoice.number.desc()))
    invoice = db.scalars(query).first()
    assert invoice is not None, (org_id, kind, status)
    return invoice


def agent_beyond_capacity(db: Session, h: History) -> str:
    cap_now = db.scalar(select(func.count()).select_from(Agent).where(Agent.org_id == h.busy))
    for i in range(20 - int(cap_now or 0)):  # business (10) + 5 agent slots = 15 < 20
        db.add(Agent(id=new_id("agt"), org_id=h.busy, name=f"x{i}", archived_at=None,
                     created_at=_last_invoice(db, h.busy, "renewal").created_at))
    return h.busy


def renewal_below_usage(db: Session, h: History) -> str:
    db.execute(update(OrgAddon).where(OrgAddon.org_id == h.busy, OrgAddon.addon_code == "agent_slots")
               .values(renewal_slots=0))
    db.execute(update(Subscription).where(Subscription.org_id == h.busy).values(scheduled_plan_code="pro"))
    return h.busy


def renewal_above_capacity(db: Session, h: History) -> str:
    db.execute(update(Subscription).where(Subscription.org_id == h.past_due).values(scheduled_plan_code="business"))
    return h.past_due


def total_not_sum_of_lines(db: Session, h: History) -> str:
    invoice = _last_invoice(db, h.past_due, "renewal", "open")
    db.execute(update(Invoice).where(Invoice.id == invoice.id).values(total=Invoice.total + 1))
    return h.past_due


def lost_line(db: Session, h: History) -> str:
    invoice = _last_invoice(db, h.busy, "upgrade")
    db.execute(delete(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id, InvoiceLine.kind == "credit"))
    return h.busy


def period_billed_twice(db: Session, h: History) -> str:
    first = _last_invoice(db, h.canceled, "subscription")
    org = db.get(Organization, h.canceled)
    assert org is not None
    org.invoice_seq += 1
    db.execute(insert(Invoice).values(
        id=new_id("inv"), org_id=org.id, number=org.invoice_seq, subscription_id=first.subscription_id,
        kind="renewal", billing_key=None, period_start=first.period_start, period_end=first.period_end,
        currency="usd", total=0, status="paid", created_at=first.created_at, paid_at=first.created_at,
        attempt_count=1))
    return h.canceled


def gap_between_periods(db: Session, h: History) -> str:
    sub = db.scalars(select(Subscription).where(Subscription.org_id == h.busy)).one()
    middle = period_at_index(sub.anchor_at, 1)
    db.execute(update(Invoice).where(Invoice.subscription_id == sub.id, Invoice.period_start == middle.start,
                                     Invoice.kind == "renewal").values(period_end=middle.end.replace(day=1)))
    return h.busy


def current_period_unbilled(db: Session, h: History) -> str:
    sub = db.scalars(select(Subscription).where(Subscription.org_id == h.past_due)).one()
    nxt = period_at_index(sub.anchor_at, sub.period_index + 1)
    sub.period_index, sub.period_start, sub.period_end = nxt.index, nxt.start, nxt.end
    return h.past_due


def slots_without_invoice(db: Session, h: History) -> str:
    db.execute(update(OrgAddon).where(OrgAddon.org_id == h.busy, OrgAddon.addon_code == "member_slots")
               .values(active_slots=OrgAddon.active_slots + 1, renewal_slots=OrgAddon.renewal_slots + 1))
    return h.busy


def paid_without_charge(db: Session, h: History) -> str:
    invoice = _last_invoice(db, h.busy, "addon")
    db.execute(delete(Charge).where(Charge.invoice_id == invoice.id))
    return h.busy


def charged_a_different_amount(db: Session, h: History) -> str:
    invoice = _last_invoice(db, h.busy, "renewal")
    db.execute(update(Charge).where(Charge.invoice_id == invoice.id).values(amount=Charge.amount - 100))
    return h.busy


def charged_twice(db: Session, h: History) -> str:
    invoice = _last_invoice(db, h.busy, "upgrade")
    db.execute(insert(Charge).values(id=new_id("ch"), org_id=h.busy, invoice_id=invoice.id, amount=invoice.total,
                                     currency="usd", status="succeeded", failure_code=None,
                                     gateway_reference="ch_again", created_at=invoice.created_at))
    return h.busy


def open_invoice_with_succeeded_charge(db: Session, h: History) -> str:
    invoice = _last_invoice(db, h.past_due, "renewal", "open")
    db.execute(update(Charge).where(Charge.invoice_id == invoice.id).values(status="succeeded"))
    return h.past_due


def attempt_without_charge_record(db: Session, h: History) -> str:
    invoice = _last_invoice(db, h.past_due, "renewal", "open")
    db.execute(update(Invoice).where(Invoice.id == invoice.id).values(attempt_count=Invoice.attempt_count + 1))
    return h.past_due


def invoice_number_gap(db: Session, h: History) -> str:
    invoice = _last_invoice(db, h.busy, "renewal")
    db.execute(update(Invoice).where(Invoice.id == invoice.id).values(number=Invoice.number + 10))
    return h.busy


def counter_behind(db: Session, h: History) -> str:
    db.execute(update(Organization).where(Organization.id == h.canceled).values(invoice_seq=0))
    return h.canceled


def tampered_plan_balance(db: Session, h: History) -> str:
    db.execute(update(CreditAccount).where(CreditAccount.org_id == h.busy)
               .values(plan_balance=CreditAccount.plan_balance + 500))  # credits without a ledger entry
    return h.busy


def lost_refill_entry(db: Session, h: History) -> str:
    entry = db.scalars(select(CreditEntry).where(CreditEntry.org_id == h.free, CreditEntry.kind == "refill")).first()
    assert entry is not None
    db.delete(entry)
    return h.free


def stray_ledger_entry(db: Session, h: History) -> str:
    db.execute(insert(CreditEntry).values(id=new_id("cre"), org_id=h.canceled, kind="adjustment", plan_delta=0,
                                          topup_delta=-5, playground=False, created_at=func.now()))
    return h.canceled


def missing_account(db: Session, h: History) -> str:
    db.execute(delete(CreditEntry).where(CreditEntry.org_id == h.past_due))
    db.execute(delete(CreditAccount).where(CreditAccount.org_id == h.past_due))
    return h.past_due


def _sold_pass(db: Session, h: History) -> Pass:
    sold = db.scalars(select(Pass).where(Pass.org_id == h.busy)).one()
    return sold


def pass_credit_taken_without_its_message(db: Session, h: History) -> str:
    _sold_pass(db, h).credits_left -= 1
    return h.busy


def pass_credits_above_what_was_sold(db: Session, h: History) -> str:
    sold = _sold_pass(db, h)
    sold.credits_left = sold.message_credits + 1
    return h.busy


def pass_expiry_moved(db: Session, h: History) -> str:
    _sold_pass(db, h).expires_at += timedelta(days=1)
    return h.busy


def pass_refunded_without_the_refund(db: Session, h: History) -> str:
    _sold_pass(db, h).refunded_at = func.now()
    return h.busy


Corruption = Callable[[Session, History], str]
CORRUPTIONS: list[tuple[Corruption, set[str]]] = [
    (agent_beyond_capacity, {"capacity"}),
    (renewal_below_usage, {"capacity"}),
    (renewal_above_capacity, {"capacity"}),
    (total_not_sum_of_lines, {"invoice_total"}),
    (lost_line, {"invoice_total"}),
    (period_billed_twice, {"period_billing"}),
    (gap_between_periods, {"period_billing"}),
    (current_period_unbilled, {"period_billing"}),
    (slots_without_invoice, {"slots_billed"}),
    (paid_without_charge, {"charges"}),
    (charged_a_different_amount, {"charges"}),
    (charged_twice, {"charges"}),
    (open_invoice_with_succeeded_charge, {"charges"}),
    (attempt_without_charge_record, {"charges"}),
    (invoice_number_gap, {"numbering"}),
    (counter_behind, {"numbering"}),
    (tampered_plan_balance, {"credits"}),
    (lost_refill_entry, {"credits"}),
    (stray_ledger_entry, {"credits"}),
    (missing_account, {"credits"}),
    (pass_credit_taken_without_its_message, {"passes"}),
    (pass_credits_above_what_was_sold, {"passes"}),
    (pass_expiry_moved, {"passes"}),
    (pass_refunded_without_the_refund, {"passes"}),
]


class TestDoctor:
    def test_real_history_is_healthy(self, api: Api, sessions: sessionmaker[Session]) -> None:
        build_history(api)
        found = run_doctor(sessions, load_catalog())
        assert found.violations == []
        assert found.organizations == 4 and found.invoices >= 10

    @pytest.mark.parametrize(("corrupt", "expected"), CORRUPTIONS, ids=[c.__name__ for c, _ in CORRUPTIONS])
    def test_each_corruption_is_caught(
        self, api: Api, sessions: sessionmaker[Session], corrupt: Corruption, expected: set[str]
    ) -> None:
        history = build_history(api)
        with sessions.begin() as db:
            org_id = corrupt(db, history)
        assert checks_of(sessions, org_id) == expected

    def test_cli_exit_status(self, api: Api, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
        history = build_history(api)
        with sessions() as db:
            url = db.get_bind().engine.url.render_as_string(hide_password=False)
        monkeypatch.setenv("SLOTWISE_DATABASE_URL", url)
        monkeypatch.setenv("SLOTWISE_OPERATOR_KEY", OPERATOR_KEY)
        healthy = CliRunner().invoke(main, ["doctor"])
        assert healthy.exit_code == 0, healthy.output
        assert "no violations; 4 organizations" in healthy.output
        with sessions.begin() as db:
            charged_twice(db, history)
        broken = CliRunner().invoke(main, ["doctor"])
        assert broken.exit_code == 1
        assert f"[charges] {history.busy}: invoice #" in broken.output
        others = CliRunner().invoke(main, ["doctor", "--org", history.free, "--org", history.past_due])
        assert others.exit_code == 0, others.output
        assert "no violations; 2 organizations" in others.output
