"""A refill under the organization lock beside a spend that holds only the account (PostgreSQL).

A spend debits its credit account without the organization lock, then inserts its ledger entry, whose
foreign-key check takes a key-share lock on the organization. Were the organization lock ``FOR
UPDATE``, that check would wait behind a refill holding it, while the refill waits for the spend's
account: a deadlock, one of them aborted. ``FOR NO KEY UPDATE`` lets the check through.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from slotwise import repositories as repo
from slotwise.catalog import load_catalog
from slotwise.doctor import run_doctor
from slotwise.models import new_id
from slotwise.services import organizations, refills
from slotwise.services.context import Env

AT = datetime(2026, 11, 15, 9, tzinfo=UTC)
SPEND = text("""
WITH debit AS (
    UPDATE credit_accounts SET plan_balance = plan_balance - 7, used_in_period = used_in_period + 7
    WHERE org_id = :org_id AND plan_balance >= 7 RETURNING org_id, plan_balance, topup_balance)
INSERT INTO credit_ledger (id, org_id, kind, plan_delta, topup_delta, playground, plan_after, topup_after, created_at)
SELECT :id, org_id, 'spend', -7, 0, false, plan_balance, topup_balance, now() FROM debit
""")


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite runs one writer at a time: nothing to interleave
def test_a_spend_is_not_held_up_by_the_organization_lock_and_nothing_deadlocks(
    backend: str, engine: Engine, sessions: sessionmaker[Session], env: Env
) -> None:
    with sessions.begin() as db:
        org_id = organizations.create_organization(
            db, env=env, name="Locks", owner_email="locks@example.test", owner_name=None, owner_password=None,
            plan_code="free", card_number=None, at=AT).organization.id

    spent = threading.Event()

    def spend() -> None:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(SPEND, {"org_id": org_id, "id": new_id("cre")})
            spent.set()

    with sessions.begin() as db:
        assert repo.locked_organization(db, org_id) is not None  # as catch_up and the sweep hold it
        spender = threading.Thread(target=spend)
        spender.start()
        assert spent.wait(5), "the spend waited for the organization lock"
        refills.start_period(db, refills.free_start(env.catalog, org_id, datetime(2026, 12, 15, 9, tzinfo=UTC)))
    spender.join()
    with sessions() as db:
        balance = db.execute(text("SELECT plan_balance FROM credit_accounts WHERE org_id = :o"), {"o": org_id}).one()
    assert balance.plan_balance == 100  # 93 left after the spend expired, the allowance granted
    assert run_doctor(sessions, load_catalog()).violations == []
