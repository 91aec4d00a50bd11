"""Helpers for the top-up and auto-recharge suites: balances set by a ledger adjustment, spends through
the API, the account and the queue as stored, and a worker over the test database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from slotwise.clock import Clock
from slotwise.models import CreditAccount, new_id
from slotwise.services.context import Env
from slotwise.worker import Worker
from tests.factories import Org

_references = itertools.count(1)
DISABLED_MESSAGE = ("Auto-recharge was disabled after multiple failed payment attempts. Please update your payment "
                    "method and re-enable.")


def set_balances(engine: Engine, org: Org, *, plan: int, topup: int) -> None:
    """Bring the pools to ``plan`` and ``topup`` with one ``adjustment`` ledger entry, after whatever
    came due (a refill) has run."""
    credits(org)
    with engine.begin() as conn:
        row = conn.execute(text("select plan_balance, topup_balance from credit_accounts where org_id = :o"),
                           {"o": org.id}).one()
        conn.execute(text("update credit_accounts set plan_balance = :p, topup_balance = :t where org_id = :o"),
                     {"p": plan, "t": topup, "o": org.id})
        conn.execute(text(
            "insert into credit_ledger (id, org_id, kind, plan_delta, topup_delta, playground, created_at)"
            " values (:id, :o, 'adjustment', :dp, :dt, false, :at)"),
            {"id": new_id("cre"), "o": org.id, "dp": plan - row.plan_balance, "dt": topup - row.topup_balance,
             "at": datetime.now(UTC)})


def spend(org: Org, units: int, activity: str = "message") -> dict[str, Any]:
    """A real spend through the API (1 credit a message unit)."""
    response = org.post("/credits/spend", {"activity": activity, "units": units,
                                           "reference": f"answer-{next(_references)}"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def credits(org: Org) -> dict[str, Any]:
    response = org.get("/credits")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def auto_recharge(org: Org, **body: Any) -> Any:
    return org.put("/credits/auto-recharge", body)


def account(engine: Engine, org: Org) -> Any:
    """The account row as stored, times as aware UTC datetimes."""
    with engine.connect() as conn:
        return conn.execute(select(CreditAccount.__table__).where(CreditAccount.org_id == org.id)).one()


def jobs_of(engine: Engine, org: Org) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text("select * from jobs where org_id = :o"), {"o": org.id}).all())


def ledger(engine: Engine, org: Org, kind: str | None = None) -> list[Any]:
    query = "select * from credit_ledger where org_id = :o" + (" and kind = :k" if kind else "")
    with engine.connect() as conn:
        return list(conn.execute(text(query + " order by created_at"), {"o": org.id, "k": kind}).all())


def ledger_matches_balances(engine: Engine, org: Org) -> bool:
    with engine.connect() as conn:
        sums = conn.execute(text("select coalesce(sum(plan_delta), 0), coalesce(sum(topup_delta), 0)"
                                 " from credit_ledger where org_id = :o"), {"o": org.id}).one()
    row = account(engine, org)
    return (int(sums[0]), int(sums[1])) == (row.plan_balance, row.topup_balance)


def set_account(engine: Engine, org: Org, **values: Any) -> None:
    """Set columns of the account directly (a state the worker or the refill would leave)."""
    with engine.begin() as conn:
        conn.execute(update(CreditAccount).where(CreditAccount.org_id == org.id).values(**values))


def remove_card(engine: Engine, org: Org) -> None:
    """No card on file (the operator API always stores one)."""
    with engine.begin() as conn:
        conn.execute(text("update organizations set card_token = null, card_brand = null, card_last4 = null"
                          " where id = :o"), {"o": org.id})


def set_subscription_status(engine: Engine, org: Org, status: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("update subscriptions set status = :s where org_id = :o and status != 'canceled'"),
                     {"s": status, "o": org.id})


def make_worker(sessions: sessionmaker[Session], env: Env, clock: Clock) -> Worker:
    return Worker(sessions, env=env, clock=clock)
