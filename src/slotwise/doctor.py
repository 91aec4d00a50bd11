"""``slotwise doctor``: re-check, from what is stored, the promises of SPEC §4, §5 and §9.

Each check reads the tables directly rather than through the repository functions the services
use, so a wrong query there cannot hide the damage it did. Checks, per organization:

* ``capacity``: usage ≤ next plan's included + renewal slots ≤ plan's included + active slots.
* ``invoice_total``: an invoice's total is the sum of its lines.
* ``period_billing``: each period of a subscription is billed by exactly one invoice, the periods
  follow each other without gaps from the anchor, and the last one is the current period.
* ``slots_billed``: the active slots of an add-on are exactly those billed for this period (the
  renewal line plus the paid add-on invoices of the period): no slots without an invoice.
* ``charges``: a paid invoice with a total above zero has exactly one succeeded charge, of that
  amount; an open or void invoice has none; every collection attempt left exactly one charge record.
* ``processor_charges`` (when given the gateway, as ``slotwise doctor`` is): the processor's own list of
  recent payments, each recorded once by slotwise (paid invoice, or refunded by reconciliation).
* ``processor_payments``: the processor's side of the same promise, from its webhook events: every
  payment it reports succeeded for an invoice of ours (``payment_intent.succeeded`` with our metadata)
  is for exactly one payment per invoice, and that invoice exists and is paid; and no such event was
  left unhandled (its handler gave up waiting for the invoice: a charge whose commit never came).
* ``numbering``: invoice numbers run 1, 2, 3… per organization, without gaps or repeats, and the
  organization's counter stands at the last one.
* ``credits``: the organization has a credit account; each pool's balance equals the sum of its
  ledger entries (SPEC §11) and neither is negative.
* ``passes`` (SPEC §13): a pass has between 0 and the message credits it was sold with, expires its
  access days after its sale, is refunded with the processor's refund on record (or not at all), and
  is one payment's alone; and the pass credits taken on an agent are no more than the messages spent
  on it in the ledger (a credit taken always goes with its spend, in one transaction).

On PostgreSQL the whole run reads one REPEATABLE READ snapshot, so it can run beside live traffic
without seeing half of someone else's transaction; on SQLite the transaction holds the write lock.
Organizations are read a batch at a time, each table with one statement per batch (plain rows, no
ORM objects), so a run at 100,000 organizations takes minutes and memory stays flat.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from slotwise.capacity import OrgSnapshot, Slots, renewal_capacity, resource_capacity
from slotwise.catalog import RESOURCES, Catalog
from slotwise.clock import wall_now
from slotwise.doctor_processor import processor_charges, processor_payments
from slotwise.gateway import CardGateway
from slotwise.models import (
    Agent,
    Charge,
    CreditAccount,
    CreditEntry,
    Invitation,
    Invoice,
    InvoiceLine,
    OrgAddon,
    Organization,
    Pass,
    Subscription,
    User,
)
from slotwise.periods import Period, period_at_index
from slotwise.services.reconcile import WINDOW

PERIOD_KINDS = ("subscription", "renewal")  # invoices that bill a whole period
ORGS_PER_BATCH = 500
Rows = Sequence[Any]  # plain result rows, read by column name


@dataclass(frozen=True, slots=True)
class Violation:
    check: str
    org_id: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.org_id}: {self.detail}"


@dataclass
class Diagnosis:
    organizations: int = 0
    invoices: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.violations


def run_doctor(
    factory: sessionmaker[Session], catalog: Catalog, *, org_ids: Collection[str] | None = None,
    gateway: CardGateway | None = None,
) -> Diagnosis:
    """Check every organization (or only ``org_ids``) in one consistent read; with ``gateway``, also
    the processor's recent payments (``processor_charges``)."""
    with factory() as db:
        if db.get_bind().dialect.name == "postgresql":
            db.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        try:
            found = diagnose(db, catalog, org_ids=org_ids)
            if gateway is not None:
                found.violations.extend(
                    Violation("processor_charges", org_id, detail)
                    for org_id, detail in processor_charges(db, gateway, since=wall_now() - WINDOW, org_ids=org_ids))
            return found
        finally:
            db.rollback()  # read-only: nothing to keep


def diagnose(db: Session, catalog: Catalog, *, org_ids: Collection[str] | None = None) -> Diagnosis:
    result = Diagnosis()
    for batch in _organization_batches(db, org_ids):
        for org in _read(db, batch):
            result.organizations += 1
            result.invoices += len(org.invoices)
            for check in (
                _capacity(catalog, org),
                _invoice_totals(org),
                _period_billing(org),
                _slots_billed(org),
                _charges(org),
                _numbering(org),
                _credits(org),
                _passes(org),
            ):
                result.violations.extend(check)
    result.violations.extend(Violation("processor_payments", org_id, detail)
                             for org_id, detail in processor_payments(db, org_ids))
    return result


@dataclass
class _Org:
    """One organization's stored rows, as the checks read them."""

    row: Any  # id, plan_code, invoice_seq
    subs: list[Any] = field(default_factory=list)
    invoices: list[Any] = field(default_factory=list)  # by number
    lines: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))  # by invoice id
    charges: list[Any] = field(default_factory=list)
    addons: list[Any] = field(default_factory=list)
    agents: int = 0  # not archived
    members: int = 0  # members and pending invitations
    account: Any = None  # plan_balance, topup_balance; None: no credit account
    ledger: tuple[int, int] = (0, 0)  # the sums of the plan and top-up deltas
    passes: list[Any] = field(default_factory=list)
    messages: dict[str, int] = field(default_factory=dict)  # message spends in the ledger, by agent

    @property
    def id(self) -> str:
        org_id: str = self.row.id
        return org_id


_ORG = select(Organization.id, Organization.plan_code, Organization.invoice_seq)


def _organization_batches(db: Session, org_ids: Collection[str] | None) -> Iterator[Rows]:
    if org_ids is not None:
        wanted = sorted(org_ids)
        for start in range(0, len(wanted), ORGS_PER_BATCH):
            chunk = wanted[start:start + ORGS_PER_BATCH]
            yield db.execute(_ORG.where(Organization.id.in_(chunk)).order_by(Organization.id)).all()
        return
    after = ""
    while True:
        batch = db.execute(_ORG.where(Organization.id > after).order_by(Organization.id).limit(ORGS_PER_BATCH)).all()
        if batch:
            yield batch
        if len(batch) < ORGS_PER_BATCH:
            return
        after = batch[-1].id


def _read(db: Session, batch: Rows) -> list[_Org]:
    """The batch's rows, a statement per table."""
    orgs = {row.id: _Org(row) for row in batch}
    ids = list(orgs)
    subs = select(Subscription.id, Subscription.org_id, Subscription.status, Subscription.scheduled_plan_code,
                  Subscription.anchor_at, Subscription.period_index, Subscription.period_start, Subscription.period_end)
    for sub in db.execute(subs.where(Subscription.org_id.in_(ids))):
        orgs[sub.org_id].subs.append(sub)
    invoices = select(Invoice.id, Invoice.org_id, Invoice.number, Invoice.subscription_id, Invoice.kind,
                      Invoice.period_start, Invoice.period_end, Invoice.total, Invoice.status, Invoice.attempt_count)
    for inv in db.execute(invoices.where(Invoice.org_id.in_(ids)).order_by(Invoice.org_id, Invoice.number)):
        orgs[inv.org_id].invoices.append(inv)
    lines = (select(Invoice.org_id, InvoiceLine.invoice_id, InvoiceLine.kind, InvoiceLine.code, InvoiceLine.quantity,
                    InvoiceLine.amount)
             .join(Invoice, Invoice.id == InvoiceLine.invoice_id).where(Invoice.org_id.in_(ids)))
    for line in db.execute(lines):
        orgs[line.org_id].lines[line.invoice_id].append(line)
    charges = select(Charge.org_id, Charge.invoice_id, Charge.status, Charge.amount).where(Charge.org_id.in_(ids))
    for charge in db.execute(charges):
        orgs[charge.org_id].charges.append(charge)
    addons = select(OrgAddon.org_id, OrgAddon.addon_code, OrgAddon.active_slots, OrgAddon.renewal_slots,
                    OrgAddon.unit_price)
    for addon in db.execute(addons.where(OrgAddon.org_id.in_(ids))):
        orgs[addon.org_id].addons.append(addon)
    for org_id, count in _counts(db, Agent.org_id, Agent.org_id.in_(ids), Agent.archived_at.is_(None)):
        orgs[org_id].agents = count
    for column in (User.org_id, Invitation.org_id):
        for org_id, count in _counts(db, column, column.in_(ids)):
            orgs[org_id].members += count
    accounts = select(CreditAccount.org_id, CreditAccount.plan_balance, CreditAccount.topup_balance)
    for account in db.execute(accounts.where(CreditAccount.org_id.in_(ids))):
        orgs[account.org_id].account = account
    sums = (select(CreditEntry.org_id, func.sum(CreditEntry.plan_delta), func.sum(CreditEntry.topup_delta))
            .where(CreditEntry.org_id.in_(ids)).group_by(CreditEntry.org_id))
    for org_id, plan, topup in db.execute(sums):
        orgs[org_id].ledger = (int(plan), int(topup))
    passes = select(Pass.org_id, Pass.id, Pass.agent_id, Pass.message_credits, Pass.credits_left, Pass.access_days,
                    Pass.created_at, Pass.expires_at, Pass.refunded_at, Pass.refund_reference, Pass.gateway_reference)
    for sold in db.execute(passes.where(Pass.org_id.in_(ids))):
        orgs[sold.org_id].passes.append(sold)
    paid_agents = {sold.agent_id for org in orgs.values() for sold in org.passes}
    if paid_agents:
        messages = (select(CreditEntry.org_id, CreditEntry.agent_id, func.count())
                    .where(CreditEntry.org_id.in_(ids), CreditEntry.agent_id.in_(paid_agents),
                           CreditEntry.kind == "spend", CreditEntry.activity == "message")
                    .group_by(CreditEntry.org_id, CreditEntry.agent_id))
        for row in db.execute(messages):
            orgs[row[0]].messages[str(row[1])] = row[2]
    return list(orgs.values())


def _counts(db: Session, org_id: Any, *where: Any) -> Iterator[tuple[str, int]]:
    for row in db.execute(select(org_id, func.count()).where(*where).group_by(org_id)):
        yield row[0], row[1]


def _capacity(catalog: Catalog, org: _Org) -> Iterator[Violation]:
    sub = next((s for s in org.subs if s.status != "canceled"), None)
    plan = catalog.plan(org.row.plan_code)
    snap = OrgSnapshot(
        catalog=catalog,
        plan=plan,
        next_plan=catalog.plan(sub.scheduled_plan_code) if sub and sub.scheduled_plan_code else plan,
        usage={"agents": org.agents, "members": org.members},
        slots={row.addon_code: Slots(row.active_slots, row.renewal_slots, row.unit_price) for row in org.addons},
        period=Period(sub.period_index, sub.period_start, sub.period_end) if sub else None,
        unpaid=sub is not None and sub.status == "unpaid",
    )
    for resource in RESOURCES:
        cap = resource_capacity(snap, resource)
        renewal = renewal_capacity(snap, resource)
        if not cap.used <= renewal <= cap.total:
            yield Violation("capacity", org.id, f"{resource}: used {cap.used}, renewal capacity {renewal}, "
                                                f"capacity {cap.total}; needs used ≤ renewal ≤ capacity")


def _invoice_totals(org: _Org) -> Iterator[Violation]:
    for inv in org.invoices:
        lines = org.lines.get(inv.id, [])
        total = sum(line.amount for line in lines)
        if inv.total != total:
            yield Violation("invoice_total", org.id, f"invoice #{inv.number} ({inv.id}) total {inv.total} "
                                                     f"≠ {total}, the sum of its {len(lines)} lines")


def _period_billing(org: _Org) -> Iterator[Violation]:
    for sub in org.subs:
        billed = sorted((i for i in org.invoices if i.subscription_id == sub.id and i.kind in PERIOD_KINDS),
                        key=lambda i: (i.period_start, i.number))
        starts = Counter(i.period_start for i in billed)
        for start, count in sorted(starts.items()):
            if count > 1:
                yield Violation("period_billing", org.id,
                                f"subscription {sub.id}: the period from {start:%Y-%m-%d %H:%M} is billed "
                                f"{count} times")
        periods = sorted({(i.period_start, i.period_end) for i in billed})
        expected = [period_at_index(sub.anchor_at, k) for k in range(len(periods))]
        for k, ((start, end), want) in enumerate(zip(periods, expected, strict=True)):
            if (start, end) != (want.start, want.end):
                yield Violation("period_billing", org.id,
                                f"subscription {sub.id}: billed period {k} is {_span(start, end)}, "
                                f"expected {_span(want.start, want.end)} (a gap or a stray period)")
                break
        else:
            if not periods or periods[-1] != (sub.period_start, sub.period_end):
                last = _span(*periods[-1]) if periods else "none"
                yield Violation("period_billing", org.id,
                                f"subscription {sub.id}: current period {_span(sub.period_start, sub.period_end)} "
                                f"is not billed (last billed: {last})")


def _slots_billed(org: _Org) -> Iterator[Violation]:
    current = next((s for s in org.subs if s.status != "canceled"), None)
    billed: Counter[str] = Counter()
    if current is not None:
        for inv in org.invoices:
            if inv.subscription_id != current.id or inv.period_start != current.period_start:
                continue
            if inv.kind == "renewal" or (inv.kind == "addon" and inv.status == "paid"):
                for line in org.lines.get(inv.id, []):
                    if line.kind == "addon":
                        billed[line.code] += line.quantity
    for row in org.addons:
        if row.active_slots != billed[row.addon_code]:
            yield Violation("slots_billed", org.id, f"{row.addon_code}: {row.active_slots} active slots but "
                                                    f"{billed[row.addon_code]} billed for the current period")
    for code in set(billed) - {row.addon_code for row in org.addons}:
        yield Violation("slots_billed", org.id, f"{code}: {billed[code]} slots billed for the current period "
                                                "but none active")


def _charges(org: _Org) -> Iterator[Violation]:
    succeeded: dict[str, list[int]] = defaultdict(list)
    attempts: Counter[str] = Counter()
    for charge in org.charges:
        if charge.status == "refunded":
            continue  # a payment reconciliation gave back: no collection attempt of ours
        attempts[charge.invoice_id or ""] += 1
        if charge.status == "succeeded":
            succeeded[charge.invoice_id or ""].append(charge.amount)
    known = {inv.id for inv in org.invoices}
    for inv in org.invoices:
        amounts = succeeded.get(inv.id, [])
        if inv.total > 0 and attempts[inv.id] != inv.attempt_count:
            yield Violation("charges", org.id, f"invoice #{inv.number} ({inv.id}) counts {inv.attempt_count} "
                                               f"collection attempts but {attempts[inv.id]} charges were recorded")
        if inv.status == "open" and amounts:
            yield Violation("charges", org.id, f"invoice #{inv.number} ({inv.id}) is open but has a succeeded "
                                               f"charge of {amounts}")
        elif inv.status == "void" and amounts:
            yield Violation("charges", org.id, f"invoice #{inv.number} ({inv.id}) is void but has a succeeded "
                                               f"charge of {amounts}")
        elif inv.status == "paid" and inv.total > 0 and amounts != [inv.total]:
            yield Violation("charges", org.id, f"invoice #{inv.number} ({inv.id}) is paid ({inv.total}) but its "
                                               f"succeeded charges are {amounts or 'none'}")
    for invoice_id in set(succeeded) - known:
        yield Violation("charges", org.id, f"succeeded charge(s) {succeeded[invoice_id]} for no invoice of "
                                           f"this organization ({invoice_id or 'none'})")


def _numbering(org: _Org) -> Iterator[Violation]:
    numbers = [inv.number for inv in org.invoices]
    if numbers != list(range(1, len(numbers) + 1)):
        yield Violation("numbering", org.id, f"invoice numbers are {_numbers(numbers)}, "
                                             f"expected 1…{len(numbers)} without gaps or repeats")
    if org.row.invoice_seq != len(numbers):
        yield Violation("numbering", org.id, f"the invoice counter stands at {org.row.invoice_seq} but "
                                             f"{len(numbers)} invoices exist")


def _credits(org: _Org) -> Iterator[Violation]:
    if org.account is None:
        yield Violation("credits", org.id, "the organization has no credit account")
        return
    balances = {"plan": org.account.plan_balance, "top-up": org.account.topup_balance}
    for (pool, balance), entries in zip(balances.items(), org.ledger, strict=True):
        if balance != entries:
            yield Violation("credits", org.id, f"{pool} balance {balance} ≠ {entries}, the sum of its ledger entries")
        if balance < 0:
            yield Violation("credits", org.id, f"{pool} balance {balance} is below zero")


def _passes(org: _Org) -> Iterator[Violation]:
    taken: Counter[str] = Counter()
    payments = Counter(sold.gateway_reference for sold in org.passes)
    for sold in org.passes:
        taken[sold.agent_id] += sold.message_credits - sold.credits_left
        if not 0 <= sold.credits_left <= sold.message_credits:
            yield Violation("passes", org.id, f"pass {sold.id} has {sold.credits_left} of its "
                                              f"{sold.message_credits} message credits left")
        if sold.expires_at != sold.created_at + timedelta(days=sold.access_days):
            yield Violation("passes", org.id, f"pass {sold.id} expires {sold.expires_at:%Y-%m-%d %H:%M}, not "
                                              f"{sold.access_days} days after its sale")
        if (sold.refunded_at is None) != (sold.refund_reference is None):
            yield Violation("passes", org.id, f"pass {sold.id} is refunded without the processor's refund "
                                              "on record" if sold.refund_reference is None else
                                              f"pass {sold.id} has a refund on record but is not refunded")
        if payments[sold.gateway_reference] > 1:
            yield Violation("passes", org.id, f"pass {sold.id} shares its payment {sold.gateway_reference} "
                                              "with another pass")
    for agent_id, credits in sorted(taken.items()):
        if credits > org.messages.get(agent_id, 0):
            yield Violation("passes", org.id, f"agent {agent_id}: {credits} pass credits taken, but "
                                              f"{org.messages.get(agent_id, 0)} messages spent in the ledger")


def _span(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M}"


def _numbers(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers)) if len(numbers) <= 12 else f"{numbers[:6]} … {numbers[-6:]}"
