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
  amount; an open invoice has none; every collection attempt left exactly one charge record.
* ``numbering``: invoice numbers run 1, 2, 3… per organization, without gaps or repeats, and the
  organization's counter stands at the last one.

On PostgreSQL the whole run reads one REPEATABLE READ snapshot, so it can run beside live traffic
without seeing half of someone else's transaction; on SQLite the transaction holds the write lock.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from slotwise.capacity import renewal_capacity, resource_capacity
from slotwise.catalog import RESOURCES, Catalog
from slotwise.models import Charge, Invoice, OrgAddon, Organization, Subscription
from slotwise.periods import period_at_index
from slotwise.services.snapshot import load_snapshot

PERIOD_KINDS = ("subscription", "renewal")  # invoices that bill a whole period
ORGS_PER_BATCH = 200


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
    factory: sessionmaker[Session], catalog: Catalog, *, org_ids: Collection[str] | None = None
) -> Diagnosis:
    """Check every organization (or only ``org_ids``) in one consistent read."""
    with factory() as db:
        if db.get_bind().dialect.name == "postgresql":
            db.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        try:
            return diagnose(db, catalog, org_ids=org_ids)
        finally:
            db.rollback()  # read-only: nothing to keep


def diagnose(db: Session, catalog: Catalog, *, org_ids: Collection[str] | None = None) -> Diagnosis:
    result = Diagnosis()
    orgs = _organizations(db) if org_ids is None else (o for i in sorted(org_ids) if (o := db.get(Organization, i)))
    for org in orgs:
        result.organizations += 1
        invoices = db.scalars(select(Invoice).where(Invoice.org_id == org.id).order_by(Invoice.number)).all()
        result.invoices += len(invoices)
        subs = db.scalars(select(Subscription).where(Subscription.org_id == org.id)).all()
        for check in (
            _capacity(db, catalog, org),
            _invoice_totals(org, invoices),
            _period_billing(org, subs, invoices),
            _slots_billed(db, org, subs, invoices),
            _charges(db, org, invoices),
            _numbering(org, invoices),
        ):
            result.violations.extend(check)
    return result


def _organizations(db: Session) -> Iterator[Organization]:
    after = ""
    while True:
        batch = db.scalars(
            select(Organization).where(Organization.id > after).order_by(Organization.id).limit(ORGS_PER_BATCH)
        ).all()
        yield from batch
        if len(batch) < ORGS_PER_BATCH:
            return
        after = batch[-1].id


def _capacity(db: Session, catalog: Catalog, org: Organization) -> Iterator[Violation]:
    snap = load_snapshot(db, catalog, org)
    for resource in RESOURCES:
        cap = resource_capacity(snap, resource)
        renewal = renewal_capacity(snap, resource)
        if not cap.used <= renewal <= cap.total:
            yield Violation("capacity", org.id, f"{resource}: used {cap.used}, renewal capacity {renewal}, "
                                                f"capacity {cap.total}; needs used ≤ renewal ≤ capacity")


def _invoice_totals(org: Organization, invoices: Sequence[Invoice]) -> Iterator[Violation]:
    for inv in invoices:
        lines = sum(line.amount for line in inv.lines)
        if inv.total != lines:
            yield Violation("invoice_total", org.id, f"invoice #{inv.number} ({inv.id}) total {inv.total} "
                                                     f"≠ {lines}, the sum of its {len(inv.lines)} lines")


def _period_billing(
    org: Organization, subs: Sequence[Subscription], invoices: Sequence[Invoice]
) -> Iterator[Violation]:
    for sub in subs:
        billed = sorted((i for i in invoices if i.subscription_id == sub.id and i.kind in PERIOD_KINDS),
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


def _slots_billed(
    db: Session, org: Organization, subs: Sequence[Subscription], invoices: Sequence[Invoice]
) -> Iterator[Violation]:
    rows = db.scalars(select(OrgAddon).where(OrgAddon.org_id == org.id)).all()
    current = next((s for s in subs if s.status != "canceled"), None)
    billed: Counter[str] = Counter()
    if current is not None:
        for inv in invoices:
            if inv.subscription_id != current.id or inv.period_start != current.period_start:
                continue
            if inv.kind == "renewal" or (inv.kind == "addon" and inv.status == "paid"):
                for line in inv.lines:
                    if line.kind == "addon":
                        billed[line.code] += line.quantity
    for row in rows:
        if row.active_slots != billed[row.addon_code]:
            yield Violation("slots_billed", org.id, f"{row.addon_code}: {row.active_slots} active slots but "
                                                    f"{billed[row.addon_code]} billed for the current period")
    for code in set(billed) - {row.addon_code for row in rows}:
        yield Violation("slots_billed", org.id, f"{code}: {billed[code]} slots billed for the current period "
                                                "but none active")


def _charges(db: Session, org: Organization, invoices: Sequence[Invoice]) -> Iterator[Violation]:
    succeeded: dict[str, list[int]] = defaultdict(list)
    attempts: Counter[str] = Counter()
    for charge in db.scalars(select(Charge).where(Charge.org_id == org.id)):
        attempts[charge.invoice_id or ""] += 1
        if charge.status == "succeeded":
            succeeded[charge.invoice_id or ""].append(charge.amount)
    known = {inv.id for inv in invoices}
    for inv in invoices:
        amounts = succeeded.get(inv.id, [])
        if inv.total > 0 and attempts[inv.id] != inv.attempt_count:
            yield Violation("charges", org.id, f"invoice #{inv.number} ({inv.id}) counts {inv.attempt_count} "
                                               f"collection attempts but {attempts[inv.id]} charges were recorded")
        if inv.status == "open" and amounts:
            yield Violation("charges", org.id, f"invoice #{inv.number} ({inv.id}) is open but has a succeeded "
                                               f"charge of {amounts}")
        elif inv.status == "paid" and inv.total > 0 and amounts != [inv.total]:
            yield Violation("charges", org.id, f"invoice #{inv.number} ({inv.id}) is paid ({inv.total}) but its "
                                               f"succeeded charges are {amounts or 'none'}")
    for invoice_id in set(succeeded) - known:
        yield Violation("charges", org.id, f"succeeded charge(s) {succeeded[invoice_id]} for no invoice of "
                                           f"this organization ({invoice_id or 'none'})")


def _numbering(org: Organization, invoices: Sequence[Invoice]) -> Iterator[Violation]:
    numbers = [inv.number for inv in invoices]
    if numbers != list(range(1, len(numbers) + 1)):
        yield Violation("numbering", org.id, f"invoice numbers are {_numbers(numbers)}, "
                                             f"expected 1…{len(numbers)} without gaps or repeats")
    if org.invoice_seq != len(numbers):
        yield Violation("numbering", org.id, f"the invoice counter stands at {org.invoice_seq} but "
                                             f"{len(numbers)} invoices exist")


def _span(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M}"


def _numbers(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers)) if len(numbers) <= 12 else f"{numbers[:6]} … {numbers[-6:]}"
