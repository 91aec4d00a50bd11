"""The paid agents' hot path on PostgreSQL's fast lane (SPEC §13): the access check the platform asks
before every visitor message, and the visitor message itself, each **one statement** on the lane's
autocommit connection — what ``services.paid_access.check_access`` and ``visitor_message`` do on the
general path, with the same answers (tests/api/test_fast_paid_routes.py holds them to it).

* The access check is ``check_access``'s one read: the agent, whether its organization is subscribed,
  its balance, the visitor's pass (the token's, or by email the one still usable that ends last) and
  whether the visitor is a contact.
* The visitor message is that read and the spend in one statement, so one round trip and no
  BEGIN/COMMIT. Its order is the general path's, and it is what keeps the pass and the organization's
  credits together: ``held`` locks the pass first (on a paid agent whose pass the read found usable) and
  sees its newest version, as ``SELECT … FOR UPDATE`` does under READ COMMITTED; ``debit`` takes the
  organization's credits only if the access is allowed on that locked version, the balance covers the
  cost (re-checked on the newest account row) and the reference is new; ``taken`` takes the pass's
  credit only if ``debit`` did. Either both happen or neither, and concurrent messages on one pass
  queue on its row lock: with N credits left, exactly N of them succeed. The ledger entry, the daily
  roll-up, the auto-recharge job and the ``credits.low`` / ``credits.depleted`` events of a debit that
  crosses their line are ``services.spend``'s, from the same debit.
* A message whose debit would take the organization's credits across the ``credits.low`` or
  ``credits.depleted`` line debits nothing and is sent again with the event's parts
  (``MESSAGE_CROSSING``), as ``services.spend`` does: the rare crossing alone pays for them.
* Anything else reads why in a second round trip: a repeated reference answers the first result
  (``PRIOR``, having taken nothing), a refusal says its reason, or ``insufficient_credits`` with the
  balance.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from slotwise.api.fastlane import Connection, Lane, compile_statement
from slotwise.catalog import Catalog, Model
from slotwise.errors import Conflict
from slotwise.models import ClockState, email_key
from slotwise.services import paid_access as pa
from slotwise.services import spend as spending

_SUBSCRIBED = ", ".join(f"'{status}'" for status in pa.SUBSCRIBED)

# The visitor's pass for the agent: the token's, or by email the one still usable that ends last
# (else the newest) — ``paid_access._pass_query``.
_BY_TOKEN = "SELECT * FROM passes WHERE agent_id = :agent_id AND token_hash = :token_hash"
_BY_EMAIL = """SELECT * FROM passes WHERE agent_id = :agent_id AND email_key = :email_key
    ORDER BY CASE WHEN refunded_at IS NULL AND credits_left > 0 AND expires_at > :now THEN 0 ELSE 1 END,
             expires_at DESC, created_at DESC
    LIMIT 1"""


def _access_sql(by_token: bool) -> str:
    """``check_access``'s read. A restricted agent knows its visitor by the email sent, or by the email of
    the token's pass — a pass on any agent of the organization."""
    contact_key = ("(SELECT q.email_key FROM passes q WHERE q.token_hash = :token_hash AND q.org_id = g.org_id "
                   "LIMIT 1)") if by_token else ":email_key"
    return f"""
SELECT g.org_id, g.access_mode, g.archived_at,
       EXISTS (SELECT 1 FROM subscriptions s WHERE s.org_id = g.org_id AND s.status IN ({_SUBSCRIBED})) AS subscribed,
       (SELECT c.plan_balance + c.topup_balance FROM credit_accounts c WHERE c.org_id = g.org_id) AS balance,
       p.id AS pass_id, p.credits_left, p.expires_at, p.refunded_at,
       EXISTS (SELECT 1 FROM contacts k WHERE k.org_id = g.org_id AND k.email_key = {contact_key}) AS is_contact
FROM agents g
LEFT JOIN ({_BY_TOKEN if by_token else _BY_EMAIL}) p ON p.org_id = g.org_id
WHERE g.id = :agent_id"""


def _message_sql(by_token: bool, crossing: bool) -> str:
    """The message's statement; without ``crossing`` its debit happens only if it crosses no credits line
    (``services.spend``'s rule: an ordinary message does not pay for the crossing's parts), and one
    that would is sent again with them."""
    guard = "" if crossing else f"\n      AND {spending._CROSSES_NOTHING}"
    return f"""
WITH x AS ({_access_sql(by_token)}
), held AS (
    SELECT p.id, p.credits_left, p.expires_at, p.refunded_at
    FROM passes p JOIN x ON p.id = x.pass_id
    WHERE x.access_mode = 'paid' AND x.archived_at IS NULL AND x.subscribed
      AND x.refunded_at IS NULL AND x.credits_left > 0 AND x.expires_at > :now
    FOR UPDATE OF p
), debit AS (
    UPDATE credit_accounts a SET
        plan_balance = a.plan_balance - LEAST(a.plan_balance, :cost),
        topup_balance = a.topup_balance - (:cost - LEAST(a.plan_balance, :cost)),
        used_in_period = a.used_in_period + :cost,
        last_from_plan = LEAST(a.plan_balance, :cost),
        recharge_job_id = CASE WHEN {spending._RECHARGE_DUE} THEN :job_id ELSE a.recharge_job_id END,
        updated_at = :now
    WHERE a.org_id = (SELECT x.org_id FROM x) AND a.plan_balance + a.topup_balance >= :cost
      AND NOT EXISTS (SELECT 1 FROM credit_ledger l WHERE l.org_id = a.org_id AND l.reference = :reference)
      AND EXISTS (SELECT 1 FROM x WHERE x.archived_at IS NULL AND CASE x.access_mode
            WHEN 'free' THEN true
            WHEN 'restricted' THEN x.is_contact
            WHEN 'paid' THEN EXISTS (SELECT 1 FROM held h WHERE h.refunded_at IS NULL AND h.credits_left > 0
                                                          AND h.expires_at > :now)
            ELSE false END){guard}
    RETURNING a.org_id, a.plan_balance, a.topup_balance, a.last_from_plan, a.recharge_job_id, a.recharge_threshold
), entry AS (
    INSERT INTO credit_ledger (id, org_id, kind, plan_delta, topup_delta, reference, request_hash, activity,
                               model, units, cost, agent_id, playground, plan_after, topup_after, created_at)
    SELECT :entry_id, d.org_id, 'spend', -d.last_from_plan, d.last_from_plan - :cost, :reference, :request_hash,
           :activity, :model, :units, :cost, :agent_id, false, d.plan_balance, d.topup_balance, :now
    FROM debit d
), usage AS (
    INSERT INTO credit_usage (org_id, day, agent_key, credits, messages)
    SELECT d.org_id, :day, :agent_key, :cost, :messages FROM debit d
    ON CONFLICT (org_id, day, agent_key) DO UPDATE
        SET credits = credit_usage.credits + excluded.credits, messages = credit_usage.messages + excluded.messages
), job AS (
    INSERT INTO jobs (id, kind, org_id, payload, run_at, attempts, created_at)
    SELECT :job_id, '{spending.RECHARGE_JOB}', d.org_id, '{{}}', :wall_now, 0, :wall_now
    FROM debit d WHERE d.recharge_job_id = :job_id
), taken AS (
    UPDATE passes p SET credits_left = p.credits_left - 1
    FROM held h, debit d WHERE p.id = h.id
    RETURNING p.credits_left
){spending.CROSSINGS_POSTGRESQL if crossing else ""}
SELECT x.*, h.id AS held_id, h.credits_left AS held_left, h.expires_at AS held_expires,
       h.refunded_at AS held_refunded, d.plan_balance, d.topup_balance, d.last_from_plan,
       d.recharge_job_id = :job_id AS recharge, t.credits_left AS left_after
FROM (SELECT 1) one
LEFT JOIN x ON true
LEFT JOIN held h ON true
LEFT JOIN debit d ON true
LEFT JOIN taken t ON true
"""


ACCESS = {by_token: compile_statement(spending._sql(_access_sql(by_token))) for by_token in (True, False)}
MESSAGE = {by_token: compile_statement(spending._sql(_message_sql(by_token, crossing=False)))
           for by_token in (True, False)}
MESSAGE_CROSSING = {by_token: compile_statement(spending._sql(_message_sql(by_token, crossing=True)))
                    for by_token in (True, False)}
_CLOCK = compile_statement(select(ClockState.now).where(ClockState.id == 1))
_PRIOR = compile_statement(spending.PRIOR)
_BALANCE = compile_statement(spending.BALANCE)


def _visitor(token: str | None, email: str | None, at: datetime) -> dict[str, Any]:
    pa.Visitor(token, email)  # exactly one
    if token is not None:
        return {"token_hash": pa.token_hash(token)}
    return {"email_key": email_key(email or ""), "now": at}


async def simulated_now(lane: Lane, conn: Connection) -> datetime | None:
    """The simulated clock's time; None until its first read has created its row."""
    rows = await lane.run(conn, _CLOCK, {})
    return rows[0].now if rows else None


def access_of(row: Any, at: datetime, message_cost: int) -> pa.Access:
    """``check_access``'s answer from its read (``row`` None, or no ``org_id``: no such agent)."""
    return pa.access_of(row, at=at, message_cost=message_cost)


async def check_access(lane: Lane, conn: Connection, *, catalog: Catalog, agent_id: str,
                       token: str | None, email: str | None, at: datetime) -> pa.Access:
    """``paid_access.check_access`` on the lane: one statement."""
    values = {"agent_id": agent_id, **_visitor(token, email, at)}
    rows = await lane.run(conn, ACCESS[token is not None], values)
    return access_of(rows[0] if rows else None, at, catalog.credits.costs["message"])


async def visitor_message(lane: Lane, conn: Connection, *, catalog: Catalog, agent_id: str,
                          token: str | None, email: str | None, reference: str, model: Model, at: datetime,
                          wall_now: datetime) -> pa.Message:
    """``paid_access.visitor_message`` on the lane: one statement that both checks and spends (see the
    module's note); a refusal or a replay reads why in one more."""
    request = spending.SpendRequest(activity="message", reference=reference, model=model, agent_id=agent_id)
    cost, values = spending.prepare(catalog.credits, "", request, at, wall_now)
    values.update(_visitor(token, email, at))
    row = await _send(lane, conn, MESSAGE[token is not None], values)
    if row.plan_balance is None and row.balance is not None and row.balance >= cost \
            and access_of(row, at, cost).allowed and not await lane.run(conn, _PRIOR, {**values, "org_id": row.org_id}):
        # Allowed, covered, new, yet not debited: it crosses a credits line (or a spend came between).
        row = await _send(lane, conn, MESSAGE_CROSSING[token is not None], values)
    access = access_of(row, at, catalog.credits.costs["message"])
    view = access.pass_
    if row.held_id is not None and view is not None:  # the pass as it was once locked
        view = pa.PassView(view.id, pa.status_of(_Held(row), at), row.held_left, row.held_expires)
    if row.plan_balance is not None:  # debited, and the pass's credit taken on a paid agent
        if row.left_after is not None and view is not None:
            view = pa.PassView(view.id, "used_up" if row.left_after <= 0 else "active", row.left_after,
                               view.expires_at)
        return pa.Message(spending.spent_of(row, request, cost, values), view)
    values["org_id"] = access.org_id
    if access.org_id:
        prior = await lane.run(conn, _PRIOR, values)
        if prior:  # a repeat: the first answer, nothing taken
            return pa.Message(spending.replay_of(prior[0], values), view)
    reason = access.reason
    if row.held_id is not None and view is not None and view.status != "active":
        reason = {"expired": "expired", "used_up": "credits_used"}.get(view.status, "no_pass")  # type: ignore[assignment]
    if reason not in ("none", "org_out_of_credits"):
        raise pa.AccessDenied(pa._DENIED[reason], reason=reason)
    balance = row.balance
    if balance is not None and balance >= cost:
        balance = (await lane.run(conn, _BALANCE, values))[0].total  # a spend committed meanwhile
    spending.refuse(request, cost, seen_total=balance, agent_state="ok")
    raise AssertionError("unreachable")


async def _send(lane: Lane, conn: Connection, statement: Any, values: dict[str, Any]) -> Any:
    try:
        return (await lane.run(conn, statement, values))[0]
    except spending.UNIQUE_VIOLATION as exc:  # the same reference committed by another message meanwhile
        raise Conflict("This reference is being used by another message; send it again.") from exc


class _Held:
    """The locked pass's columns under the names ``status_of`` reads."""

    __slots__ = ("credits_left", "expires_at", "refunded_at")

    def __init__(self, row: Any) -> None:
        self.credits_left, self.expires_at, self.refunded_at = row.held_left, row.held_expires, row.held_refunded
