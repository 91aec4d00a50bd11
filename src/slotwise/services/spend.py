"""The credit spend (SPEC §11): one atomic check-and-debit, called for every answer a chatbot gives.

Plan credits are taken first, then top-up credits; a spend that does not fit takes nothing and is
refused with ``insufficient_credits``. The balance never goes below zero whatever the concurrency:
the debit is an ``UPDATE … WHERE plan_balance + topup_balance >= cost``, which PostgreSQL re-checks
on the newest row version after waiting for the row lock (and SQLite runs inside BEGIN IMMEDIATE).

Each spend carries the platform's ``reference``, unique per organization for ever (a unique index on
the ledger): the same reference with the same body answers the first result and debits nothing;
with another body it is ``idempotency_conflict``; a refused spend claims nothing.

On PostgreSQL the whole spend — debit, ledger entry, daily usage roll-up and, when the balance fell
below the auto-recharge threshold, the recharge job — is **one statement**: on an autocommit
connection it is one round trip and commits on its own. On SQLite the same steps run as a few
statements inside the caller's transaction (local calls, no network).

A spend that takes the total balance across a line tells the platform (SPEC §14), in its own
statement: ``credits.low`` when it falls below the auto-recharge threshold (whether or not
auto-recharge is on; it defaults to 100), ``credits.depleted`` when it reaches 0. Each is written by
the one spend that crosses (``crossings``: the balance before was at or above the line; the row lock
orders concurrent spends, so exactly one sees it), once per crossing: the next spends start below the
line, until a refill, top-up or recharge lifts it again. On PostgreSQL an ordinary spend's statement
has no part of this; the rare crossing is sent a statement with them (``SPEND_CROSSING_POSTGRESQL``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg
from sqlalchemy import Connection, Date, TextClause, bindparam, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.types import TypeEngine

from slotwise.catalog import Activity, CreditTerms, Model
from slotwise.credits import spend_cost, split
from slotwise.errors import Conflict, IdempotencyConflict, InsufficientCredits, NotFound
from slotwise.models import UTCDateTime, new_id
from slotwise.services import events

RECHARGE_JOB = "credit_recharge"
UNIQUE_VIOLATION = psycopg.errors.UniqueViolation  # the lane's form of a reference race
RETRY_AFTER_FAILURE = timedelta(hours=1)  # a failed recharge is tried again no sooner than this


@dataclass(frozen=True, slots=True)
class SpendRequest:
    activity: Activity
    reference: str
    units: int = 1
    model: Model = "standard"
    agent_id: str | None = None
    playground: bool = False

    def digest(self) -> str:
        """The body a repeat of the reference must match (the reference itself is equal by definition)."""
        body = [self.activity, self.model, self.units, self.agent_id, self.playground]
        return hashlib.sha256(json.dumps(body).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Spent:
    id: str
    reference: str
    cost: int
    from_plan: int
    from_topup: int
    plan: int  # balances after the spend
    topup: int
    replayed: bool = False  # a repeat of the reference: the first answer, nothing debited
    recharge_requested: bool = False  # this spend queued an auto-recharge

    @property
    def total(self) -> int:
        return self.plan + self.topup


AgentState = Literal["none", "ok", "missing", "archived"]
LOW, DEPLETED = "credits.low", "credits.depleted"


def crossings(before: int, after: int, threshold: int) -> list[str]:
    """The events a spend taking the total balance from ``before`` to ``after`` writes, in order (see
    the module's note; ``CROSSINGS_POSTGRESQL`` is the same rule in SQL)."""
    return [event for event, crossed in ((LOW, after < threshold <= before), (DEPLETED, after == 0 < before))
            if crossed]


def crossing_data(*, plan: int, topup: int, threshold: int, reference: str, recharge: bool) -> dict[str, Any]:
    """A crossing event's payload (``CROSSINGS_POSTGRESQL`` builds the same)."""
    return {"balance": {"plan": plan, "topup": topup, "total": plan + topup}, "threshold": threshold,
            "reference": reference, "recharge_requested": recharge}


def spend(conn: Connection, *, terms: CreditTerms, org_id: str, request: SpendRequest, at: datetime,
          wall_now: datetime) -> Spent:
    """Debit ``request``'s cost from ``org_id``'s credits, or refuse it having changed nothing.

    ``at`` is the billing time (the day the usage is counted on, the recharge's failure back-off);
    ``wall_now`` the real time a queued recharge becomes runnable. On PostgreSQL run it on an
    autocommit connection (one round trip; a unique-reference race is then answered from the winner);
    on SQLite inside a BEGIN IMMEDIATE transaction. (``api.fastlane`` runs the same statements on the
    event loop.)
    """
    cost, values = prepare(terms, org_id, request, at, wall_now)
    if conn.dialect.name == "postgresql":
        return _spend_postgresql(conn, request, cost, values)
    return _spend_sqlite(conn, request, cost, values)


def prepare(terms: CreditTerms, org_id: str, request: SpendRequest, at: datetime,
            wall_now: datetime) -> tuple[int, dict[str, Any]]:
    """The spend's cost and its statements' parameters."""
    cost = spend_cost(terms, activity=request.activity, model=request.model, units=request.units,
                      playground=request.playground)
    return cost, {
        "org_id": org_id, "cost": cost, "entry_id": new_id("cre"), "job_id": new_id("job"),
        "reference": request.reference, "request_hash": request.digest(), "activity": request.activity,
        "model": request.model, "units": request.units, "agent_id": request.agent_id,
        "agent_key": request.agent_id or "", "playground": request.playground,
        "messages": request.units if request.activity == "message" else 0,
        "now": at, "day": at.date(), "failed_before": at - RETRY_AFTER_FAILURE, "wall_now": wall_now,
    }


def spent_of(row: Any, request: SpendRequest, cost: int, values: dict[str, Any]) -> Spent:
    """The answer to a debit, from the spend statement's row."""
    return Spent(values["entry_id"], request.reference, cost, row.last_from_plan, cost - row.last_from_plan,
                 row.plan_balance, row.topup_balance, recharge_requested=bool(row.recharge))


def replay_of(row: Any, values: dict[str, Any]) -> Spent:
    """The first answer to this reference (a row of ``PRIOR``), or ``idempotency_conflict`` if it was
    another body."""
    if row.request_hash != values["request_hash"]:
        raise IdempotencyConflict("This reference was already used for a different spend.")
    return Spent(row.id, row.reference, row.cost, -row.plan_delta, -row.topup_delta, row.plan_after,
                 row.topup_after, replayed=True)


def refuse(request: SpendRequest, cost: int, *, seen_total: int | None, agent_state: AgentState) -> None:
    """Why a spend debited nothing: no such organization or agent, or not enough credits."""
    if seen_total is None:
        raise NotFound("No such organization.")
    if agent_state == "missing":
        raise NotFound("No such agent.", field="agent_id")
    if agent_state == "archived":
        raise Conflict("This agent is archived. Unarchive it to let it spend credits.", field="agent_id")
    message = InsufficientCredits.VOICE_MESSAGE if request.activity == "voice" else None
    raise InsufficientCredits(message, cost=cost, balance=seen_total)


_TYPES: dict[str, TypeEngine[Any]] = {"now": UTCDateTime(), "failed_before": UTCDateTime(),
                                      "wall_now": UTCDateTime(), "day": Date()}


def _sql(statement: str) -> TextClause:
    """A statement whose time parameters go through the columns' types (UTC on every database)."""
    clause = text(statement)
    present: list[BindParameter[Any]] = [bindparam(name, type_=kind) for name, kind in _TYPES.items()
                                         if f":{name}" in statement]
    return clause.bindparams(*present)


# The debit's conditions and new values, shared by both databases' statements. In an UPDATE's SET
# list every column reference is the row's old value, so ``last_from_plan`` keeps the plan share.
_RECHARGE_DUE = """a.recharge_enabled AND a.recharge_job_id IS NULL
          AND a.plan_balance + a.topup_balance - :cost < a.recharge_threshold
          AND a.recharges_in_period < a.recharge_max_per_period
          AND (a.recharge_failed_at IS NULL OR a.recharge_failed_at <= :failed_before)"""

_AGENT_STATE = """CASE WHEN CAST(:agent_id AS VARCHAR) IS NULL THEN 'none'
            WHEN NOT EXISTS (SELECT 1 FROM agents g WHERE g.id = :agent_id AND g.org_id = :org_id) THEN 'missing'
            WHEN EXISTS (SELECT 1 FROM agents g WHERE g.id = :agent_id AND g.org_id = :org_id
                         AND g.archived_at IS NOT NULL) THEN 'archived'
            ELSE 'ok' END"""

# The crossing events of the ``debit`` CTE's row (its org_id, balances after, threshold and
# recharge_job_id) written by the statement itself (``events.emit``'s outbox rows: the event, a delivery
# for every enabled endpoint taking its type, the endpoint's stream marked due), so the common spend
# stays one round trip. Any statement with such a ``debit`` CTE can append it (the paid agents' message).
CROSSINGS_POSTGRESQL = f"""
, crossed AS (
    SELECT c.type, d.org_id, d.plan_balance, d.topup_balance, d.recharge_threshold, d.recharge_job_id
    FROM debit d CROSS JOIN LATERAL (  -- in this order (an Append keeps its branches' order)
        SELECT '{LOW}' AS type
        WHERE d.plan_balance + d.topup_balance < d.recharge_threshold
          AND d.plan_balance + d.topup_balance + :cost >= d.recharge_threshold
        UNION ALL
        SELECT '{DEPLETED}' WHERE d.plan_balance + d.topup_balance = 0 AND :cost > 0
    ) c
), event AS (
    INSERT INTO events (id, org_id, type, payload, created_at)
    SELECT 'evt_' || substr(md5(random()::text || clock_timestamp()::text), 1, 16), x.org_id, x.type,
           json_build_object(
               'balance', json_build_object('plan', x.plan_balance, 'topup', x.topup_balance,
                                            'total', x.plan_balance + x.topup_balance),
               'recharge_requested', x.recharge_job_id IS NOT DISTINCT FROM CAST(:job_id AS VARCHAR),
               'reference', CAST(:reference AS TEXT), 'threshold', x.recharge_threshold)::text,
           :now
    FROM crossed x
    RETURNING seq, type, org_id
), live AS (  -- kept from deletion until this commits, as events.emit keeps them (a delete waits)
    SELECT w.id, w.event_types FROM webhook_endpoints w WHERE w.enabled FOR KEY SHARE
), owed AS (
    INSERT INTO webhook_deliveries (id, endpoint_id, stream_key, event_seq, status, attempts, next_attempt_at,
                                    created_at)
    SELECT 'whd_' || substr(md5(random()::text || e.seq::text || w.id), 1, 16), w.id, e.org_id, e.seq, 'pending', 0,
           :wall_now, :wall_now
    FROM event e JOIN live w
      ON (w.event_types IS NULL OR CAST(w.event_types AS jsonb) @> to_jsonb(CAST(e.type AS TEXT)))
    RETURNING endpoint_id, stream_key
), stream AS (  -- each endpoint once, though both events be owed to it
    INSERT INTO webhook_streams (endpoint_id, stream_key, run_at)
    SELECT w.id, o.stream_key, CAST(:wall_now AS TIMESTAMPTZ)
    FROM live w CROSS JOIN LATERAL (SELECT stream_key FROM owed WHERE endpoint_id = w.id LIMIT 1) o
    ON CONFLICT (endpoint_id, stream_key) DO UPDATE SET run_at = COALESCE(webhook_streams.run_at, excluded.run_at)
)"""

# Nearly every spend crosses no line, and is sent without the crossing's parts: their tables, locked
# and opened even to write no row, cost an ordinary spend about a quarter of its throughput
# (docs/BENCHMARKS.md). It debits only if it crosses nothing (``_CROSSES_NOTHING``); one that would
# debits nothing and is sent again with them (``SPEND_CROSSING_POSTGRESQL``): the rare crossing, and
# only it, takes two more round trips (``crosses``).
_CROSSES_NOTHING = """NOT ((a.plan_balance + a.topup_balance >= a.recharge_threshold
                 AND a.plan_balance + a.topup_balance - :cost < a.recharge_threshold)
                OR (:cost > 0 AND a.plan_balance + a.topup_balance = :cost))"""


def _spend_sql(crossing: bool) -> str:
    guard = "" if crossing else f"\n      AND {_CROSSES_NOTHING}"
    return f"""
WITH debit AS (
    UPDATE credit_accounts a SET
        plan_balance = a.plan_balance - LEAST(a.plan_balance, :cost),
        topup_balance = a.topup_balance - (:cost - LEAST(a.plan_balance, :cost)),
        used_in_period = a.used_in_period + :cost,
        last_from_plan = LEAST(a.plan_balance, :cost),
        recharge_job_id = CASE WHEN {_RECHARGE_DUE} THEN :job_id ELSE a.recharge_job_id END,
        updated_at = :now
    WHERE a.org_id = :org_id AND a.plan_balance + a.topup_balance >= :cost
      AND NOT EXISTS (SELECT 1 FROM credit_ledger p WHERE p.org_id = :org_id AND p.reference = :reference)
      AND ({_AGENT_STATE}) IN ('none', 'ok'){guard}
    RETURNING a.org_id, a.plan_balance, a.topup_balance, a.last_from_plan, a.recharge_job_id, a.recharge_threshold
), entry AS (
    INSERT INTO credit_ledger (id, org_id, kind, plan_delta, topup_delta, reference, request_hash, activity,
                               model, units, cost, agent_id, playground, plan_after, topup_after, created_at)
    SELECT :entry_id, :org_id, 'spend', -d.last_from_plan, d.last_from_plan - :cost, :reference, :request_hash,
           :activity, :model, :units, :cost, :agent_id, :playground, d.plan_balance, d.topup_balance, :now
    FROM debit d
), usage AS (
    INSERT INTO credit_usage (org_id, day, agent_key, credits, messages)
    SELECT :org_id, :day, :agent_key, :cost, :messages FROM debit
    ON CONFLICT (org_id, day, agent_key) DO UPDATE
        SET credits = credit_usage.credits + excluded.credits, messages = credit_usage.messages + excluded.messages
), job AS (
    INSERT INTO jobs (id, kind, org_id, payload, run_at, attempts, created_at)
    SELECT :job_id, '{RECHARGE_JOB}', :org_id, '{{}}', :wall_now, 0, :wall_now
    FROM debit d WHERE d.recharge_job_id = :job_id
){CROSSINGS_POSTGRESQL if crossing else ""}
SELECT d.plan_balance, d.topup_balance, d.last_from_plan, d.recharge_job_id = :job_id AS recharge,
       a.plan_balance + a.topup_balance AS seen_total,
       ({_AGENT_STATE}) AS agent_state
FROM (SELECT 1) one
LEFT JOIN debit d ON true
LEFT JOIN credit_accounts a ON a.org_id = :org_id
"""


SPEND_POSTGRESQL = _sql(_spend_sql(crossing=False))
SPEND_CROSSING_POSTGRESQL = _sql(_spend_sql(crossing=True))


def crosses(row: Any, cost: int) -> bool:
    """Whether a spend the crossing-free statement answered with ``row`` debited nothing, with no prior
    spend of its reference, though the balance it saw covers the cost and the agent may spend: it
    crosses a line (or a concurrent spend changed the balance) and is sent again with the crossing's
    parts, which settle it either way."""
    return (row is not None and row.plan_balance is None and row.seen_total is not None and row.seen_total >= cost
            and row.agent_state in ("none", "ok"))


def _spend_postgresql(conn: Connection, request: SpendRequest, cost: int, values: dict[str, Any]) -> Spent:
    for statement in (SPEND_POSTGRESQL, SPEND_CROSSING_POSTGRESQL):  # the second only for a crossing
        row = _debit(conn, statement, values)
        if row is not None and row.plan_balance is not None:
            return spent_of(row, request, cost, values)
        prior = conn.execute(PRIOR, values).one_or_none()
        if prior is not None:
            return replay_of(prior, values)
        if not crosses(row, cost):
            break
    assert row is not None  # a unique-reference race always leaves a prior entry
    balance = row.seen_total
    if balance is not None and balance >= cost and row.agent_state in ("none", "ok"):
        balance = conn.execute(BALANCE, values).scalar_one()  # a spend committed meanwhile
    refuse(request, cost, seen_total=balance, agent_state=row.agent_state)
    raise AssertionError("unreachable")


def _debit(conn: Connection, statement: TextClause, values: dict[str, Any]) -> Any:
    """The spend statement's row, or None if another spend of the reference won the race."""
    try:
        return conn.execute(statement, values).one()
    except IntegrityError:
        # Another spend with this reference committed while this one waited for the row lock: the
        # statement (and its debit) was undone whole; in autocommit, answer from the winner (inside a
        # transaction, which is now aborted, the caller's retry will).
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            raise
        return None


PRIOR = _sql("""
SELECT id, reference, request_hash, cost, plan_delta, topup_delta, plan_after, topup_after
FROM credit_ledger WHERE org_id = :org_id AND reference = :reference
""")
BALANCE = _sql("SELECT plan_balance + topup_balance AS total FROM credit_accounts WHERE org_id = :org_id")


_ACCOUNT_SQLITE = _sql(f"""
SELECT a.plan_balance, a.topup_balance, a.recharge_threshold,
       CASE WHEN {_RECHARGE_DUE} THEN 1 ELSE 0 END AS recharge_due,
       ({_AGENT_STATE}) AS agent_state
FROM credit_accounts a WHERE a.org_id = :org_id
""")
_DEBIT_SQLITE = _sql("""
UPDATE credit_accounts SET plan_balance = plan_balance - :from_plan, topup_balance = topup_balance - :from_topup,
    used_in_period = used_in_period + :cost, last_from_plan = :from_plan,
    recharge_job_id = CASE WHEN :recharge THEN :job_id ELSE recharge_job_id END, updated_at = :now
WHERE org_id = :org_id
""")
_ENTRY_SQLITE = _sql("""
INSERT INTO credit_ledger (id, org_id, kind, plan_delta, topup_delta, reference, request_hash, activity, model,
                           units, cost, agent_id, playground, plan_after, topup_after, created_at)
SELECT :entry_id, :org_id, 'spend', -:from_plan, -:from_topup, :reference, :request_hash, :activity, :model,
       :units, :cost, :agent_id, :playground, plan_balance, topup_balance, :now
FROM credit_accounts WHERE org_id = :org_id
""")
_USAGE_SQLITE = _sql("""
INSERT INTO credit_usage (org_id, day, agent_key, credits, messages)
VALUES (:org_id, :day, :agent_key, :cost, :messages)
ON CONFLICT (org_id, day, agent_key) DO UPDATE
    SET credits = credit_usage.credits + excluded.credits, messages = credit_usage.messages + excluded.messages
""")
_JOB_SQLITE = _sql(f"""
INSERT INTO jobs (id, kind, org_id, payload, run_at, attempts, created_at)
VALUES (:job_id, '{RECHARGE_JOB}', :org_id, '{{}}', :wall_now, 0, :wall_now)
""")


def _spend_sqlite(conn: Connection, request: SpendRequest, cost: int, params: dict[str, Any]) -> Spent:
    """The same spend as a few statements: the caller's BEGIN IMMEDIATE already holds the write lock."""
    prior = conn.execute(PRIOR, params).one_or_none()
    if prior is not None:
        return replay_of(prior, params)
    account = conn.execute(_ACCOUNT_SQLITE, params).one_or_none()
    if account is None:
        raise NotFound("No such organization.")
    taken = split(cost, plan=account.plan_balance, topup=account.topup_balance)
    if taken is None or account.agent_state not in ("none", "ok"):
        refuse(request, cost, seen_total=account.plan_balance + account.topup_balance,
               agent_state=account.agent_state)
    assert taken is not None
    plan, topup = account.plan_balance - taken.from_plan, account.topup_balance - taken.from_topup
    recharge = bool(account.recharge_due)
    values = {**params, "from_plan": taken.from_plan, "from_topup": taken.from_topup, "recharge": recharge}
    conn.execute(_DEBIT_SQLITE, values)
    conn.execute(_ENTRY_SQLITE, values)
    conn.execute(_USAGE_SQLITE, values)
    if recharge:
        conn.execute(_JOB_SQLITE, values)
    for event in crossings(account.plan_balance + account.topup_balance, plan + topup, account.recharge_threshold):
        # A session over the caller's connection joins its transaction (and never ends it).
        events.emit(Session(bind=conn), org_id=params["org_id"], type=event, at=params["now"], data=crossing_data(
            plan=plan, topup=topup, threshold=account.recharge_threshold, reference=request.reference,
            recharge=recharge))
    return Spent(params["entry_id"], request.reference, cost, taken.from_plan, taken.from_topup, plan, topup,
                 recharge_requested=recharge)
