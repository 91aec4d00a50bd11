"""Plan credits across whole billing cycles (SPEC §11), moving the simulated clock through the API.

Refilled when a period starts and is paid, expired when it ends (no rollover), the upgrade's
difference at once, the downgrade's allowance at renewal, nothing while a renewal waits for payment,
free organizations monthly on their creation's anchor; top-up credits kept throughout. Each scenario
reads the account and its ledger back and checks every pool equals the sum of its entries.

Top-ups and spends are written here as ledger entries with their balance change (``_topup``,
``_use``), so these scenarios depend on nothing but the refills.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from slotwise.models import ClockState, CreditAccount, CreditEntry, Invoice, Organization, new_id
from tests.factories import DECLINED_CARD, GOOD_CARD, Api, Org, change_plan, set_card

FREE, STARTER, PRO, BUSINESS = 100, 4000, 15000, 50000


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass(frozen=True)
class Entry:
    kind: str
    plan: int
    topup: int
    at: str  # ISO, minutes
    invoice: int | None = None  # the invoice's number, for a refill granted by a payment


def account(engine: Engine, org: Org) -> CreditAccount:
    with Session(engine) as db:
        row = db.get(CreditAccount, org.id)
        assert row is not None
        db.expunge(row)
    assert row.plan_balance >= 0 and row.topup_balance >= 0
    return row


def ledger(engine: Engine, org: Org, *, kinds: tuple[str, ...] = ("refill", "expiry")) -> list[Entry]:
    """The organization's entries of ``kinds``, oldest first, after checking every pool is the sum of
    its entries."""
    with Session(engine) as db:
        rows = db.execute(select(CreditEntry, Invoice.number).outerjoin(Invoice, Invoice.id == CreditEntry.invoice_id)
                          .where(CreditEntry.org_id == org.id)).all()
        stored = db.get(CreditAccount, org.id)
        assert stored is not None
        assert stored.plan_balance == sum(e.plan_delta for e, _ in rows)
        assert stored.topup_balance == sum(e.topup_delta for e, _ in rows)
    order = {"expiry": 0, "refill": 1}
    rows.sort(key=lambda r: (r[0].created_at, order.get(r[0].kind, 2)))
    return [Entry(e.kind, e.plan_delta, e.topup_delta, e.created_at.strftime("%Y-%m-%dT%H:%M"), number)
            for e, number in rows if e.kind in kinds]


def _move(engine: Engine, org: Org, kind: str, *, plan: int = 0, topup: int = 0) -> None:
    with Session(engine) as db, db.begin():
        now = db.scalar(select(ClockState.now))
        db.execute(update(CreditAccount).where(CreditAccount.org_id == org.id).values(
            plan_balance=CreditAccount.plan_balance + plan, topup_balance=CreditAccount.topup_balance + topup,
            used_in_period=CreditAccount.used_in_period - plan - min(topup, 0)))
        db.add(CreditEntry(id=new_id("cre"), org_id=org.id, kind=kind, plan_delta=plan, topup_delta=topup,
                           playground=False, created_at=now))


def _topup(engine: Engine, org: Org, credits: int) -> None:
    """Credits bought (Top Up Now): into the top-up pool, with their ledger entry."""
    _move(engine, org, "topup", topup=credits)


def _use(engine: Engine, org: Org, plan: int, topup: int = 0) -> None:
    """Credits spent, as an adjustment entry (the spend service is tested on its own)."""
    _move(engine, org, "adjustment", plan=-plan, topup=-topup)


def _clock_without_sweep(engine: Engine, to: str) -> None:
    """The billing run (a cron job) has not run yet: only the shared clock moves."""
    with Session(engine) as db, db.begin():
        db.execute(update(ClockState).values(now=utc(to)))


class TestRenewals:
    def test_refill_at_renewal_with_no_rollover(self, api: Api, engine: Engine) -> None:
        org = api.create_org("pro")  # 2026-11-15 09:00
        first = account(engine, org)
        assert (first.plan_balance, first.plan_allowance, first.topup_balance) == (PRO, PRO, 0)
        assert (first.period_start, first.refills_at) == (utc("2026-11-15T09:00"), utc("2026-12-15T09:00"))
        _use(engine, org, 4000)
        api.clock_to("2026-12-15T10:00:00Z")
        renewed = account(engine, org)
        assert (renewed.plan_balance, renewed.plan_allowance, renewed.used_in_period) == (PRO, PRO, 0)
        assert (renewed.period_start, renewed.refills_at) == (utc("2026-12-15T09:00"), utc("2027-01-15T09:00"))
        api.clock_to("2027-01-16T00:00:00Z")  # nothing used this period: all of it expires
        assert ledger(engine, org) == [
            Entry("refill", PRO, 0, "2026-11-15T09:00", invoice=1),
            Entry("expiry", -11000, 0, "2026-12-15T09:00"),
            Entry("refill", PRO, 0, "2026-12-15T09:00", invoice=2),
            Entry("expiry", -PRO, 0, "2027-01-15T09:00"),
            Entry("refill", PRO, 0, "2027-01-15T09:00", invoice=3),
        ]

    def test_topup_credits_are_kept_across_renewals(self, api: Api, engine: Engine) -> None:
        org = api.create_org("starter")
        _topup(engine, org, 2000)
        _use(engine, org, STARTER, 500)  # the plan pool spent whole, then some top-up
        api.clock_to("2027-01-16T00:00:00Z")  # two renewals
        row = account(engine, org)
        assert (row.plan_balance, row.topup_balance) == (STARTER, 1500)
        assert all(e.topup == 0 for e in ledger(engine, org))  # refills and expiries touch the plan pool only

    def test_an_upgrade_adds_the_difference_at_once(self, api: Api, engine: Engine) -> None:
        org = api.create_org("pro")
        _use(engine, org, 5000)
        api.clock_to("2026-11-26T12:00:00Z")
        assert change_plan(org, "business").status_code == 200
        row = account(engine, org)
        assert (row.plan_balance, row.plan_allowance) == (10000 + BUSINESS - PRO, BUSINESS)
        assert row.refills_at == utc("2026-12-15T09:00")  # the period is unchanged
        assert ledger(engine, org)[-1] == Entry("refill", BUSINESS - PRO, 0, "2026-11-26T12:00", invoice=2)
        api.clock_to("2026-12-15T09:00:00Z")
        row = account(engine, org)
        assert (row.plan_balance, row.plan_allowance) == (BUSINESS, BUSINESS)
        assert ledger(engine, org)[-2:] == [Entry("expiry", -45000, 0, "2026-12-15T09:00"),
                                            Entry("refill", BUSINESS, 0, "2026-12-15T09:00", invoice=3)]

    def test_a_downgrade_refills_the_new_allowance_at_renewal(self, api: Api, engine: Engine) -> None:
        org = api.create_org("business")
        assert change_plan(org, "pro").status_code == 200
        assert account(engine, org).plan_balance == BUSINESS  # nothing taken before the renewal
        api.clock_to("2026-12-15T09:00:00Z")
        row = account(engine, org)
        assert (row.plan_balance, row.plan_allowance) == (PRO, PRO)
        assert ledger(engine, org)[-2:] == [Entry("expiry", -BUSINESS, 0, "2026-12-15T09:00"),
                                            Entry("refill", PRO, 0, "2026-12-15T09:00", invoice=2)]

    def test_a_downgrade_to_free_starts_the_free_months_on_the_creation_anchor(self, api: Api, engine: Engine) -> None:
        org = api.create_org("pro")  # created 2026-11-15 09:00
        api.clock_to("2026-11-20T00:00:00Z")
        assert change_plan(org, "free").status_code == 200
        api.clock_to("2027-01-16T00:00:00Z")
        row = account(engine, org)
        assert (row.plan_balance, row.plan_allowance, row.refills_at) == (FREE, FREE, utc("2027-02-15T09:00"))
        assert ledger(engine, org)[1:] == [
            Entry("expiry", -PRO, 0, "2026-12-15T09:00"), Entry("refill", FREE, 0, "2026-12-15T09:00"),
            Entry("expiry", -FREE, 0, "2027-01-15T09:00"), Entry("refill", FREE, 0, "2027-01-15T09:00"),
        ]


class TestUnpaidPeriods:
    def test_past_due_expires_the_plan_pool_and_a_new_card_refills_it(self, api: Api, engine: Engine) -> None:
        org = api.create_org("starter")
        _topup(engine, org, 1000)
        assert set_card(org, DECLINED_CARD).status_code == 200
        api.clock_to("2026-12-15T10:00:00Z")  # the renewal charge is declined
        waiting = account(engine, org)
        assert (waiting.plan_balance, waiting.plan_allowance, waiting.refills_at) == (0, 0, None)
        assert (waiting.topup_balance, waiting.period_start) == (1000, utc("2026-12-15T09:00"))  # top-up spendable
        assert ledger(engine, org)[-1] == Entry("expiry", -STARTER, 0, "2026-12-15T09:00")
        api.clock_to("2026-12-16T12:00:00Z")  # the first retry fails too: still nothing
        assert account(engine, org).plan_balance == 0
        api.clock_to("2026-12-17T08:00:00Z")
        assert set_card(org, GOOD_CARD).status_code == 200  # retried at once, and paid
        paid = account(engine, org)
        assert (paid.plan_balance, paid.plan_allowance, paid.topup_balance) == (STARTER, STARTER, 1000)
        assert (paid.period_start, paid.refills_at) == (utc("2026-12-15T09:00"), utc("2027-01-15T09:00"))
        assert ledger(engine, org)[-1] == Entry("refill", STARTER, 0, "2026-12-17T08:00", invoice=2)
        api.clock_to("2027-01-15T09:00:00Z")
        assert account(engine, org).plan_balance == STARTER  # and renews as usual

    def test_a_scheduled_retry_that_pays_refills(self, api: Api, engine: Engine) -> None:
        org = api.create_org("starter")
        assert set_card(org, DECLINED_CARD).status_code == 200
        api.clock_to("2026-12-15T10:00:00Z")
        assert account(engine, org).refills_at is None
        with Session(engine) as db, db.begin():  # the same card works again (funds arrived): no card update
            db.execute(update(Organization).where(Organization.id == org.id).values(card_token="sandbox:ok:again"))
        api.clock_to("2026-12-16T10:00:00Z")  # the retry a day later is paid
        row = account(engine, org)
        assert (row.plan_balance, row.refills_at) == (STARTER, utc("2027-01-15T09:00"))
        assert ledger(engine, org)[-1] == Entry("refill", STARTER, 0, "2026-12-16T09:00", invoice=2)

    def test_unpaid_gets_nothing_until_a_restart_refills(self, api: Api, engine: Engine) -> None:
        org = api.create_org("pro")
        _topup(engine, org, 3000)
        assert set_card(org, DECLINED_CARD).status_code == 200
        api.clock_to("2027-01-20T00:00:00Z")  # declined Dec 15, retries fail, unpaid Dec 20; Jan 15 passes
        row = account(engine, org)
        assert (row.plan_balance, row.refills_at, row.topup_balance) == (0, None, 3000)
        assert [e.kind for e in ledger(engine, org)] == ["refill", "expiry"]
        assert set_card(org, GOOD_CARD).status_code == 200  # restarts now, billed in full
        row = account(engine, org)
        assert (row.plan_balance, row.plan_allowance, row.topup_balance) == (PRO, PRO, 3000)
        assert (row.period_start, row.refills_at) == (utc("2027-01-20T00:00"), utc("2027-02-20T00:00"))
        assert ledger(engine, org)[-1].kind == "refill" and ledger(engine, org)[-1].at == "2027-01-20T00:00"


class TestFreeOrganizations:
    def test_monthly_on_the_creation_anchor(self, api: Api, engine: Engine) -> None:
        api.clock_to("2027-01-31T10:00:00Z")
        org = api.create_org("free")
        row = account(engine, org)
        assert (row.plan_balance, row.plan_allowance, row.refills_at) == (FREE, FREE, utc("2027-02-28T10:00"))
        _use(engine, org, 30)
        api.clock_to("2027-04-01T00:00:00Z")
        assert ledger(engine, org) == [
            Entry("refill", FREE, 0, "2027-01-31T10:00"),
            Entry("expiry", -70, 0, "2027-02-28T10:00"), Entry("refill", FREE, 0, "2027-02-28T10:00"),
            Entry("expiry", -FREE, 0, "2027-03-31T10:00"), Entry("refill", FREE, 0, "2027-03-31T10:00"),
        ]
        row = account(engine, org)
        assert (row.plan_balance, row.period_start, row.refills_at) == (
            FREE, utc("2027-03-31T10:00"), utc("2027-04-30T10:00"))

    def test_subscribing_replaces_the_free_credits(self, api: Api, engine: Engine) -> None:
        org = api.create_org("free")
        _use(engine, org, 40)
        api.clock_to("2026-11-20T00:00:00Z")
        assert change_plan(org, "starter").status_code == 200
        row = account(engine, org)
        assert (row.plan_balance, row.plan_allowance, row.refills_at) == (STARTER, STARTER, utc("2026-12-20T00:00"))
        assert ledger(engine, org)[-2:] == [Entry("expiry", -60, 0, "2026-11-20T00:00"),
                                            Entry("refill", STARTER, 0, "2026-11-20T00:00", invoice=1)]

    def test_first_touch_refills_before_the_billing_run(self, api: Api, engine: Engine) -> None:
        org = api.create_org("free")  # 2026-11-15 09:00
        _use(engine, org, 100)
        org.summary()
        _clock_without_sweep(engine, "2026-12-20T00:00")
        assert account(engine, org).plan_balance == 0  # due since Dec 15, the sweep has not run
        assert org.get().status_code == 200  # any request about it runs what came due first
        row = account(engine, org)
        assert (row.plan_balance, row.period_start, row.refills_at) == (
            FREE, utc("2026-12-15T09:00"), utc("2027-01-15T09:00"))
        report = api.operator("/billing/run", None).json()
        assert report["renewed"] == [] and account(engine, org).plan_balance == FREE  # nothing twice
        assert [e.kind for e in ledger(engine, org)] == ["refill", "refill"]  # nothing left to expire Dec 15
