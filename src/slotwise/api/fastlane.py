"""The request path's fast lane on PostgreSQL: the hottest routes run their statements on the event
loop with psycopg's async driver, as prepared statements, with no worker thread and no ORM.

The general path (a SQLAlchemy session on a worker thread) costs three thread hand-offs per request,
and each wakes the event loop through its self-pipe: measured, that is more than the statements
themselves. Here a request takes a connection from an async pool (``psycopg_pool``, autocommit,
sized by ``SLOTWISE_CONCURRENCY`` like the engine's), sends the same statements the general path
sends — compiled once from the same SQLAlchemy Core objects (``hotpath``, ``repositories``,
``services.spend``), so there is one text of each — and answers. A creation sends its transaction in
pipeline mode: BEGIN, the organization lock and the snapshot go out together (PostgreSQL still runs
them in order, so the snapshot is read after the lock is held), then the insert and COMMIT: two
round trips.

Only PostgreSQL has the lane; on SQLite every route takes the general path.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg.pq import ExecStatus
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import ClauseElement, bindparam, exists, insert, make_url, select
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.sql.compiler import SQLCompiler

from slotwise import hotpath
from slotwise.capacity import reserve_growth
from slotwise.catalog import Catalog
from slotwise.db import POOL_TIMEOUT_SECONDS
from slotwise.errors import NotFound
from slotwise.hotpath import Caller, SnapshotRows
from slotwise.models import Agent, ApiToken, Organization, User, new_id
from slotwise.services import audit
from slotwise.services import spend as spending
from slotwise.services.agents import AgentChange, NewAgent
from slotwise.services.snapshot import snapshot_of

_DIALECT = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]
_EXPANDING = re.compile(r"__\[POSTCOMPILE_(\w+)\]")


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement as psycopg takes it: the SQL text with ``%(name)s`` placeholders, and the values
    of the parameters fixed when it was built (constants such as ``status != 'canceled'``)."""

    sql: str
    fixed: dict[str, Any]

    def bind(self, values: dict[str, Any]) -> dict[str, Any]:
        return {**self.fixed, **values}


def compile_statement(statement: ClauseElement) -> Compiled:
    """Compile a Core statement once for psycopg; an ``IN`` over a fixed tuple becomes one
    placeholder per value."""
    compiled = statement.compile(dialect=_DIALECT)
    assert isinstance(compiled, SQLCompiler)
    fixed = {name: value for name, value in compiled.params.items() if not compiled.binds[name].required}
    sql = str(compiled)

    def expand(match: re.Match[str]) -> str:
        name = match.group(1)
        values = fixed.pop(name)
        for i, value in enumerate(values, 1):
            fixed[f"{name}_{i}"] = value
        return ", ".join(f"%({name}_{i})s" for i in range(1, len(values) + 1))

    return Compiled(_EXPANDING.sub(expand, sql), fixed)


_LOCK = compile_statement(select(Organization.id).where(Organization.id == bindparam("org_id"))
                          .with_for_update(key_share=True))
# The lock, taken only when the token's user belongs to the organization (a creation reads its caller
# in the same round trip, so no one else's organization is ever locked on an unchecked token).
_LOCK_MEMBER = compile_statement(
    select(Organization.id).where(
        Organization.id == bindparam("org_id"),
        exists().where(ApiToken.token_hash == bindparam("token_hash"), ApiToken.user_id == User.id,
                       User.org_id == Organization.id))
    .with_for_update(key_share=True))
_INSERT_AGENT = compile_statement(insert(Agent).values(
    id=bindparam("id"), org_id=bindparam("org_id"), name=bindparam("name"), archived_at=None,
    created_at=bindparam("created_at"), access_mode="free"))
_CALLER = {simulated: compile_statement(hotpath.caller_statement(simulated)) for simulated in (False, True)}
_SNAPSHOT = compile_statement(hotpath.snapshot_statement())
_CALLER_SNAPSHOT = {simulated: compile_statement(hotpath.caller_snapshot_statement(simulated))
                    for simulated in (False, True)}
_TIME = {simulated: compile_statement(hotpath.time_statement(simulated)) for simulated in (False, True)}
_AUDIT = compile_statement(audit.INSERT)
_SPEND = compile_statement(spending.SPEND_POSTGRESQL)
_SPEND_CROSSING = compile_statement(spending.SPEND_CROSSING_POSTGRESQL)
_PRIOR = compile_statement(spending.PRIOR)
_BALANCE = compile_statement(spending.BALANCE)


class Connection(AsyncConnection[Any]):
    """The lane's connection, with the one cursor ``Lane.run`` sends its statements on: a cursor set up
    for each statement was ~15 % of an access check's CPU (measured with ``bench/run.py``'s paid rows).
    The pool gives a connection to one request at a time, and ``run`` reads its rows before
    returning, so the next statement never finds the cursor in use; a connection given back with a
    statement unfinished is discarded by the pool, cursor and all."""

    _statements: AsyncCursor[Any] | None = None

    def statements(self) -> AsyncCursor[Any]:
        if self._statements is None:
            self._statements = self.cursor()
        return self._statements


class _NotServed(Exception):
    """Control flow: roll the creation's transaction back and answer the caller another way."""

    def __init__(self, caller: Caller | None) -> None:
        self.caller = caller


class Lane:
    """The async pool and the hot operations on it. ``trace`` (tests) collects each statement sent."""

    def __init__(self, database_url: str, *, size: int) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self.conninfo, self.size = url.render_as_string(hide_password=False), size
        self.pool: AsyncConnectionPool[Connection] | None = None
        self.trace: list[str] | None = None

    async def open(self, *, wait: bool = False) -> None:
        """A pool of its own for each start of the app (an event loop's), closed by ``close``."""
        self.pool = AsyncConnectionPool(
            self.conninfo, connection_class=Connection, min_size=self.size, max_size=self.size,
            timeout=POOL_TIMEOUT_SECONDS, open=False,
            # Autocommit: reads need no transaction, a creation opens its own. Prepared from the first
            # use. UTC, so dates are the billing dates everywhere (as UTCDateTime makes them).
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": namedtuple_row,
                    "options": "-c TimeZone=UTC"})
        await self.pool.open(wait=wait)

    async def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        if self.pool is None:
            raise RuntimeError("the fast lane is used outside the app's lifespan")
        async with self.pool.connection() as conn:
            yield conn

    async def run(self, conn: Connection, statement: Compiled, values: dict[str, Any]) -> list[Any]:
        if self.trace is not None:
            self.trace.append(statement.sql)
        cursor = await conn.statements().execute(statement.sql, statement.bind(values))
        # The result's status, not ``cursor.description``, which builds a Column for every field.
        result = cursor.pgresult
        return await cursor.fetchall() if result is not None and result.status == ExecStatus.TUPLES_OK else []

    async def caller(self, conn: Connection, token_hash: str, *, wall_now: datetime | None) -> Caller | None:
        """``hotpath.caller`` on the lane: one round trip."""
        values: dict[str, Any] = {"token_hash": token_hash}
        if wall_now is not None:
            values["now"] = wall_now
        rows = await self.run(conn, _CALLER[wall_now is None], values)
        return hotpath.caller_of(rows[0] if rows else None, wall_now)

    async def caller_and_snapshot(self, conn: Connection, token_hash: str, org_id: str, *,
                                  wall_now: datetime | None) -> tuple[Caller | None, SnapshotRows | None]:
        """The caller and, if they belong to it, organization ``org_id``'s snapshot: one round trip."""
        values: dict[str, Any] = {"token_hash": token_hash, "org_id": org_id}
        if wall_now is not None:
            values["now"] = wall_now
        rows = await self.run(conn, _CALLER_SNAPSHOT[wall_now is None], values)
        return hotpath.caller_of(rows[0] if rows else None, wall_now), hotpath.snapshot_of_rows(rows)

    async def time_for(self, conn: Connection, org_id: str, *, simulated: bool,
                       wall: datetime | None) -> tuple[datetime | None, bool]:
        """The billing time and whether ``org_id`` has work due by then (for the operator key, which
        has no caller row to read them with); the time is None until the simulated clock has a row."""
        values: dict[str, Any] = {"org_id": org_id} if simulated else {"org_id": org_id, "now": wall}
        row = (await self.run(conn, _TIME[simulated], values))[0]
        now = row.now if simulated else wall
        return now, bool(row.due) if now is not None else False

    async def snapshot(self, conn: Connection, org_id: str) -> SnapshotRows | None:
        return hotpath.snapshot_of_rows(await self.run(conn, _SNAPSHOT, {"org_id": org_id}))

    async def create_agent(self, conn: Connection, *, catalog: Catalog, org_id: str, user_id: str,
                           name: str, at: datetime) -> AgentChange | None:
        """``services.agents.create_agent`` on the lane, in two round trips (see the module's note); None
        (nothing written) when it would shrink a scheduled removal: that rare case's event is the general
        path's (``services.organizations.apply_restore``)."""
        try:
            async with conn.pipeline(), conn.transaction():
                locked, read = await self._lock_and_read(conn, _LOCK, {"org_id": org_id})
                return await self._insert_agent(conn, catalog, org_id, user_id, name, at, locked, read)
        except _NotServed:
            return None

    async def create_agent_as(self, conn: Connection, *, catalog: Catalog, token_hash: str, org_id: str,
                              name: str, wall_now: datetime | None) -> tuple[Caller | None, AgentChange | None]:
        """The creation with the caller read in its first round trip: BEGIN, the caller, the lock (taken
        only if the token's user belongs to ``org_id``) and the snapshot go out together, then the insert
        and COMMIT. A caller it cannot serve at once (unknown, of another organization, the simulated
        clock not started, work due first) is answered with no change, the transaction rolled back."""
        caller_sql = _CALLER[wall_now is None]
        values: dict[str, Any] = {"token_hash": token_hash, "org_id": org_id}
        if wall_now is not None:
            values["now"] = wall_now
        try:
            async with conn.pipeline(), conn.transaction():
                self._note(caller_sql)
                asked = await conn.execute(caller_sql.sql, caller_sql.bind(values))
                locked, read = await self._lock_and_read(conn, _LOCK_MEMBER, values)
                caller = hotpath.caller_of(await asked.fetchone(), wall_now)
                if caller is None or caller.org_id != org_id or caller.now is None or caller.due:
                    raise _NotServed(caller)
                return caller, await self._insert_agent(conn, catalog, org_id, caller.user_id, name, caller.now,
                                                        locked, read, caller)
        except _NotServed as refused:
            return refused.caller, None

    def _note(self, *statements: Compiled) -> None:
        if self.trace is not None:
            self.trace.extend(statement.sql for statement in statements)

    async def _lock_and_read(self, conn: Connection, lock: Compiled,
                             values: dict[str, Any]) -> tuple[AsyncCursor[Any], AsyncCursor[Any]]:
        """Queue the organization lock and, ordered after it, the snapshot (pipeline mode)."""
        self._note(lock, _SNAPSHOT)
        locked = await conn.execute(lock.sql, lock.bind(values))
        read = await conn.execute(_SNAPSHOT.sql, _SNAPSHOT.bind({"org_id": values["org_id"]}))
        return locked, read

    async def _insert_agent(self, conn: Connection, catalog: Catalog, org_id: str, user_id: str,
                            name: str, at: datetime, locked: AsyncCursor[Any], read: AsyncCursor[Any],
                            caller: Caller | None = None) -> AgentChange:
        """The insert and its audit entry, sent together (``agents.create_agent``'s entry)."""
        if await locked.fetchone() is None:
            raise NotFound("No such organization.")
        rows = hotpath.snapshot_of_rows(await read.fetchall())
        assert rows is not None  # locked above
        decision = reserve_growth(snapshot_of(rows, catalog), "agents")
        if decision.restore_slots > 0:
            raise _NotServed(caller)  # rare: the general path writes the removal's change and event
        agent = NewAgent(new_id("agt"), name.strip(), None, at)
        await self.run(conn, _INSERT_AGENT, {"id": agent.id, "org_id": org_id, "name": agent.name,
                                              "created_at": at})
        await self.run(conn, _AUDIT, audit.entry(
            org_id=org_id, by=audit.By("user", user_id), kind="agent.created", at=at, subject_id=agent.id,
            after={"name": agent.name, "archived": False}))
        return AgentChange(agent)

    async def spend(self, conn: Connection, *, catalog: Catalog, org_id: str,
                    request: spending.SpendRequest, at: datetime, wall_now: datetime) -> spending.Spent:
        """``services.spend.spend`` on the lane: one statement, one round trip (a refusal reads why, a spend
        that crosses a line is sent again with the crossing's parts)."""
        cost, values = spending.prepare(catalog.credits, org_id, request, at, wall_now)
        for statement in (_SPEND, _SPEND_CROSSING):  # the second only for a crossing, as services.spend
            row = await self._debit(conn, statement, values)
            if row is not None and row.plan_balance is not None:
                return spending.spent_of(row, request, cost, values)
            prior = await self.run(conn, _PRIOR, values)
            if prior:
                return spending.replay_of(prior[0], values)
            if not spending.crosses(row, cost):
                break
        assert row is not None
        balance = row.seen_total
        if balance is not None and balance >= cost and row.agent_state in ("none", "ok"):
            balance = (await self.run(conn, _BALANCE, values))[0].total  # a spend committed meanwhile
        spending.refuse(request, cost, seen_total=balance, agent_state=row.agent_state)
        raise AssertionError("unreachable")

    async def _debit(self, conn: Connection, statement: Compiled, values: dict[str, Any]) -> Any:
        """The spend statement's row, or None if a same-reference spend won the race (answered from its entry)."""
        try:
            rows = await self.run(conn, statement, values)
        except spending.UNIQUE_VIOLATION:
            return None
        return rows[0] if rows else None
