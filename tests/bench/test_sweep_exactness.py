"""The batched sweep bills and refills exactly what the one-organization path does, on the
benchmark's data mix.

The same seeded database (bench/sweep.py: plain renewals, add-ons, declined cards, scheduled
downgrades, slot removals, cancellations, credit accounts with top-ups and spent allowances, free
organizations due for their monthly refill) is copied twice; one copy is swept by ``renewals.sweep``
(set-based batches, small ones here so that passes, batches and rounds all repeat), the other by
``renewals.catch_up`` one organization at a time. The clock moves four months, with new catalog
prices: renewals, retries at +1/+3/+5 days, dunning's end, credits expired and refilled (or left
waiting for payment), free organizations refilled on their creation's anchor. Every stored row but
the random ids must come out the same, the events and audit entries too (which the sweep writes
together at the end of each batch). About one organization in five has the empty account, due
since its creation, that migration 0008 gave every organization.
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from bench import sweep as bench
from slotwise.catalog import parse_catalog
from slotwise.db import make_engine, make_sessionmaker
from slotwise.gateway import SandboxGateway
from slotwise.models import Base
from slotwise.services import renewals
from slotwise.services.context import Env

AT = bench.AT + timedelta(days=120)
IGNORED = {"id", "invoice_id", "gateway_reference"}  # random, or derived from random ids


def _new_prices() -> Env:
    data = tomllib.loads(resources.files("slotwise").joinpath("catalog.toml").read_text(encoding="utf-8"))
    data["plans"]["pro"]["price"] += 1000
    data["addons"]["agent_slots"]["price_per_slot"] += 100
    return Env(catalog=parse_catalog(data), gateway=SandboxGateway())


def _stored(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the billing tables, without the random ids, in an order that does not depend on them."""
    tables = Base.metadata.tables
    with engine.connect() as conn:
        invoice_numbers = {row.id: (row.org_id, row.number) for row in conn.execute(select(tables["invoices"]))}
        stored = {}
        for name in ("organizations", "subscriptions", "org_addons", "invoices", "invoice_lines", "charges",
                     "credit_accounts", "credit_ledger"):
            rows = []
            for row in conn.execute(select(tables[name])):
                values = row._asdict()
                if "invoice_id" in values:  # lines, charges, ledger entries: by their invoice's place instead
                    values["invoice"] = invoice_numbers.get(values["invoice_id"])
                if name == "organizations":
                    values["org"] = values["id"]
                rows.append(tuple(sorted((k, repr(v)) for k, v in values.items() if k not in IGNORED)))
            stored[name] = sorted(rows)
        # What the platform and the Owner are told (written together per batch by the sweep, one by one by
        # catch_up): the same events and entries, invoices named by their place.
        for name in ("events", "audit_entries"):
            rows = []
            for row in conn.execute(select(tables[name])):
                values = {k: v for k, v in row._asdict().items() if k not in IGNORED | {"seq"}}
                for key in ("payload", "before", "after", "subject_id"):
                    for invoice_id, place in invoice_numbers.items():
                        if isinstance(values.get(key), str) and invoice_id in values[key]:
                            values[key] = values[key].replace(invoice_id, repr(place))
                values["invoice"] = invoice_numbers.get(row._asdict().get("invoice_id") or "")
                rows.append(tuple(sorted((k, repr(v)) for k, v in values.items())))
            stored[name] = sorted(rows)
    return stored


def _as_migrated(url: str) -> None:
    """About one organization in five as migration 0008 left it: an empty account due at its creation,
    whose first refill grants the period then in force."""
    engine = make_engine(url)
    with engine.begin() as conn:
        for statement in ("DELETE FROM credit_ledger WHERE org_id < 'org_4'",
                          "UPDATE credit_accounts SET plan_balance = 0, topup_balance = 0, plan_allowance = 0,"
                          " used_in_period = 0, period_start = NULL,"
                          " refills_at = (SELECT created_at FROM organizations o WHERE o.id = org_id)"
                          " WHERE org_id < 'org_4'"):
            conn.execute(text(statement))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def copies(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "postgresql":
        request.getfixturevalue("postgres_engine")
    dbs = bench.Databases(request.param, tmp_path)
    try:
        seeded = dbs.create("sweepbench_exact_seed")
        bench.seed(seeded, 120, free=40)
        _as_migrated(seeded)
        yield [make_engine(dbs.copy("sweepbench_exact_seed", f"sweepbench_exact_{k}")) for k in ("batched", "one")]
    finally:
        dbs.drop_all()


def test_batched_sweep_bills_what_catch_up_bills(copies: list[Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    batched, one_by_one = copies
    env = _new_prices()
    monkeypatch.setattr(renewals.run, "BATCH_SIZE", 16)
    monkeypatch.setattr(renewals.run, "RENEWALS_PER_TRANSACTION", 40)
    report = renewals.sweep(make_sessionmaker(batched), env=env, at=AT)

    sessions: sessionmaker[Session] = make_sessionmaker(one_by_one)
    with sessions() as db:
        org_ids = db.scalars(select(Base.metadata.tables["organizations"].c.id)).all()
    expected = renewals.SweepReport()
    for org_id in sorted(org_ids):
        with sessions.begin() as db:
            expected.merge(renewals.catch_up(db, env=env, org_id=org_id, at=AT))

    assert len(report.renewed) > 3 * 100 and report.unpaid and report.canceled and report.retried_failed
    assert len(report.refilled) > len(report.renewed) - len(report.payments_failed) + 3 * 40
    for name in renewals.SweepReport.__dataclass_fields__:
        assert len(getattr(report, name)) == len(getattr(expected, name)), name
    want, got = _stored(one_by_one), _stored(batched)
    for table in want:
        assert got[table] == want[table], table
    for engine in copies:
        engine.dispose()
