"""SPEC §10 benchmarks: slotwise's service-level hot paths, each against its floor — the database
running exactly the SQL statements slotwise sends for that operation, with the same clients, on
the same machine, in the same run.

For each operation (create an agent, add one slot, remove one slot):

* **slotwise**: the service function (``agents.create_agent``, ``addons.add_slots``,
  ``addons.remove_slots``) in its own transaction through SQLAlchemy, as a request runs it, minus
  HTTP; clients are threads.
* **floor**: the statements slotwise sent for two such operations, captured from the engine (BEGIN
  and COMMIT left out), replayed with nothing around them. On PostgreSQL ``pgbench -M prepared``
  runs them with every parameter a pgbench variable, so each is prepared once and then bound, as
  psycopg does; the invoice number comes from the UPDATE … RETURNING by ``\\gset``. On SQLite a raw
  ``sqlite3`` loop runs them with slotwise's pragmas, inside ``BEGIN IMMEDIATE`` … ``COMMIT``.

Both sides work on the same kind of organizations — copies of one business organization that
slotwise made and bought 100 agent slots for — each client on its own, each organization taking 30
operations in a row (the hourly cap on slot changes) at one moment. So every operation on either
side reads the same rows however fast its side runs, and stays valid for the whole run.

Prints a Markdown table for docs/BENCHMARKS.md. ``make bench`` runs it; ``--seconds`` sets each
figure's length (pgbench: whole seconds); ``--quick`` is a tiny pass (1 client, both databases).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import platform
import random
import re
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, Table, UniqueConstraint, create_engine, event, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from slotwise import server
from slotwise.api import paid_lane
from slotwise.api.fastlane import Compiled, Connection, Lane
from slotwise.catalog import load_catalog
from slotwise.config import normalize_database_url
from slotwise.db import make_engine, make_sessionmaker, transaction
from slotwise.gateway import SandboxGateway
from slotwise.models import Base, Contact, Pass, email_key, new_id
from slotwise.services import addons, agents, organizations, paid_access, spend
from slotwise.services.context import Actor, Env

MADE_AT = datetime(2026, 11, 15, 9, tzinfo=UTC)  # the template organization subscribes then
AT = MADE_AT + timedelta(days=1)  # every measured operation happens at this moment
ENV = Env(catalog=load_catalog(), gateway=SandboxGateway())  # with the production hourly cap
T = TypeVar("T")
PER_ORG = ENV.quantity_changes_per_hour  # operations in a row on one organization
SLOTS = 100  # agent slots each organization holds when its operations start
CREDITS = 10**9  # top-up credits each organization holds when its operations start
ORG_BASE, SUB_BASE = 10**18, 2 * 10**18  # organization n is ORG_BASE + n, its subscription SUB_BASE + n
AGENT_BASE, PASS_BASE = 15 * 10**17, 25 * 10**17  # its paid agent AGENT_BASE + n, the visitor's pass PASS_BASE + n
VISITOR = "visitor@example.test"  # holds a pass on every organization's paid agent
PASS_CREDITS = 1_000_000  # the pass's message credits (SPEC §13's most)
FRESH = (3 * 10**18, 9 * 10**18)  # the range of ids the floors give the rows they insert
GUESS = {"slotwise": 1_500, "floor": 12_000}  # ops/s, to size the organizations (doubled when short)
NOT_COUNTED = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK")
NEW_ID = re.compile(r"[a-z]+_[0-9a-f]{16,}")  # models.new_id, and the sandbox's charge references
# What a change writes of its history (issue 12): the floor replays the first run's payloads as constants
# (the same size of text), and an organization's state is compared without them (``HISTORY``).
HISTORY_INSERT = re.compile(r"INSERT INTO (events|audit_entries)\b", re.I)
ID_LIKE = re.compile(rf"{NEW_ID.pattern}|\d{{18,}}")  # ids as slotwise or a floor writes them


@dataclass(frozen=True)
class Operation:
    label: str
    call: Callable[[Session, Actor], object]
    # One statement atomic on its own (the credit spend): sent in autocommit on PostgreSQL, as the
    # server sends it, and replayed by pgbench without BEGIN and COMMIT.
    autocommit: bool = False
    # The same operation on PostgreSQL's fast lane (api/fastlane.py: psycopg async, what the server runs
    # for it on PostgreSQL), same statements; ``call`` is then only used to capture them.
    lane: LaneCall | None = None


LaneCall = Callable[[Lane, Connection, Actor], Awaitable[object]]


def _spend(db: Session, actor: Actor) -> object:
    request = spend.SpendRequest(activity="tool", reference=new_id("ref"))
    return spend.spend(db.connection(), terms=ENV.catalog.credits, org_id=actor.org_id, request=request, at=AT,
                       wall_now=AT)


def _agent_of(actor: Actor) -> str:
    """Organization ``n``'s paid agent (see ``Organizations``)."""
    return str(AGENT_BASE + int(actor.org_id) - ORG_BASE)


def _access(db: Session, actor: Actor) -> object:
    return paid_access.check_access(db, env=ENV, agent_id=_agent_of(actor), visitor=paid_access.Visitor(email=VISITOR),
                                    at=AT)


def _message(db: Session, actor: Actor) -> object:
    return paid_access.visitor_message(db, env=ENV, agent_id=_agent_of(actor),
                                       visitor=paid_access.Visitor(email=VISITOR), reference=new_id("ref"),
                                       model="standard", at=AT, wall_now=AT)


def _lane_statement(statement: Compiled,
                    values: Callable[[Actor], dict[str, Any]]) -> Callable[[Session, Actor], object]:
    """The fast lane's one statement sent through SQLAlchemy, so the floor captures exactly its text."""
    def call(db: Session, actor: Actor) -> object:
        return db.connection().exec_driver_sql(statement.sql, statement.bind(values(actor))).all()
    return call


def _access_values(actor: Actor) -> dict[str, Any]:
    return {"agent_id": _agent_of(actor), "email_key": email_key(VISITOR), "now": AT}


def _message_values(actor: Actor) -> dict[str, Any]:
    request = spend.SpendRequest(activity="message", reference=new_id("ref"), agent_id=_agent_of(actor))
    _, values = spend.prepare(ENV.catalog.credits, "", request, AT, AT)
    return {**values, "email_key": email_key(VISITOR)}


OPERATIONS = (
    Operation("create agent", lambda db, actor: agents.create_agent(db, env=ENV, actor=actor, name="bench", at=AT)),
    Operation("add 1 slot", lambda db, actor: addons.add_slots(
        db, env=ENV, actor=actor, addon_code="agent_slots", quantity=1, at=AT)),
    Operation("remove 1 slot", lambda db, actor: addons.remove_slots(
        db, env=ENV, actor=actor, addon_code="agent_slots", quantity=1, at=AT)),
    Operation("spend 1 credit", _spend, autocommit=True),
    Operation("create agent, fast lane", lambda db, actor: agents.create_agent(
        db, env=ENV, actor=actor, name="bench", at=AT),
              lane=lambda lane, conn, actor: lane.create_agent(conn, catalog=ENV.catalog, org_id=actor.org_id,
                                                               user_id=actor.user_id, name="bench", at=AT)),
    Operation("spend 1 credit, fast lane", _spend, autocommit=True, lane=lambda lane, conn, actor: lane.spend(
        conn, catalog=ENV.catalog, org_id=actor.org_id, at=AT, wall_now=AT,
        request=spend.SpendRequest(activity="tool", reference=new_id("ref")))),
    # SPEC §13's hot path: a visitor (by email) on the organization's paid agent, holding a pass.
    Operation("access check", _access, autocommit=True),  # one read
    Operation("visitor message", _message),
    # What the server runs for them on PostgreSQL (api/paid_lane.py): one statement each.
    Operation("access check, fast lane", _lane_statement(paid_lane.ACCESS[False], _access_values), autocommit=True,
              lane=lambda lane, conn, actor: paid_lane.check_access(
                  lane, conn, catalog=ENV.catalog, agent_id=_agent_of(actor), token=None, email=VISITOR, at=AT)),
    Operation("visitor message, fast lane", _lane_statement(paid_lane.MESSAGE[False], _message_values),
              autocommit=True, lane=lambda lane, conn, actor: paid_lane.visitor_message(
                  lane, conn, catalog=ENV.catalog, agent_id=_agent_of(actor), token=None, email=VISITOR,
                  reference=new_id("ref"), model="standard", at=AT, wall_now=AT)),
)


class OutOfOrganizations(Exception):
    """A side used up its organizations before its time was up; it runs again with twice as many."""


# What an organization holds is compared without its history of events and audit entries: their
# payloads name the organization's own ids, which differ from copy to copy by design.
HISTORY = ("events", "audit_entries")


def _org_tables() -> list[Table]:
    return [t for t in Base.metadata.sorted_tables if "org_id" in t.c or t.name == "organizations"]


def _of_org(table: Table, org_id: str) -> Any:
    return (table.c.id if table.name == "organizations" else table.c.org_id) == org_id


def _unique(table: Table) -> set[str]:
    """Columns whose every value must differ from row to row."""
    unique = {c.name for c in table.c if c.unique} | ({c.name for c in table.primary_key.columns}
                                                      if len(table.primary_key.columns) == 1 else set())
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint) and len(constraint.columns) == 1:
            unique |= {c.name for c in constraint.columns}
    for index in table.indexes:
        if index.unique and len(index.columns) == 1:
            unique |= {c.name for c in index.columns}
    return unique


def _identity(table: Table) -> set[str]:
    """Columns that name a row rather than describe it: keys, references, unique values."""
    return _unique(table) | {c.name for c in table.c if c.primary_key or c.foreign_keys}


class Organizations:
    """Organizations numbered 0, 1, …: copies of one business organization that slotwise made and bought
    ``SLOTS`` agent slots for. Their ids are ones pgbench can compute (it has no string functions):
    ``ORG_BASE + n`` for the organization, ``SUB_BASE + n`` for its subscription; every other key and
    unique value of the copy is the original's with its end replaced by ``-n``."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.taken = engine, 0
        with transaction(make_sessionmaker(engine)) as db:
            made = organizations.create_organization(
                db, env=ENV, name="Bench", owner_email="bench@example.test", owner_name=None, owner_password=None,
                plan_code="business", card_number=None, at=MADE_AT)
            owner = Actor(made.owner.user.id, made.organization.id, "owner")
            addons.add_slots(db, env=ENV, actor=owner, addon_code="agent_slots", quantity=SLOTS, at=MADE_AT)
            # Credits for every spend the run makes (as one ledger adjustment, so the books balance).
            db.execute(text("update credit_accounts set topup_balance = topup_balance + :n where org_id = :o"),
                       {"n": CREDITS, "o": owner.org_id})
            db.execute(text("insert into credit_ledger (id, org_id, kind, plan_delta, topup_delta, playground,"
                            " created_at) values (:id, :o, 'adjustment', 0, :n, false, :at)"),
                       {"id": new_id("cre"), "o": owner.org_id, "n": CREDITS, "at": MADE_AT})
            self._paid_agent(db, owner)
        self.owner = owner
        with engine.connect() as conn:
            self.rows = {t: [dict(r) for r in conn.execute(select(t).where(_of_org(t, owner.org_id))).mappings()]
                         for t in _org_tables()}
        self.keys: dict[Any, str] = {}  # a key's value → the table it names (the first: credit_accounts' is
        for t, rows in self.rows.items():  # its organization's)
            for row in rows:
                for key in t.primary_key.columns if len(t.primary_key.columns) == 1 else ():
                    if key.autoincrement is not True:  # a counter (events, audit entries) is the copy's own
                        self.keys.setdefault(row[key.name], key.table.name)

    @staticmethod
    def _paid_agent(db: Session, owner: Actor) -> None:
        """A paid agent (SPEC §13) and ``VISITOR``'s pass on it, bought at ``MADE_AT``, with
        ``PASS_CREDITS`` messages: what the access check and the visitor message work on."""
        agent = agents.create_agent(db, env=ENV, actor=owner, name="Paid", at=MADE_AT).agent
        paid_access.configure_access(db, actor=owner, agent_id=agent.id, mode="paid", at=MADE_AT,
                                     paid=paid_access.PaidConfig(999, "usd", 30, PASS_CREDITS))
        contact = Contact(id=new_id("con"), org_id=owner.org_id, email=VISITOR, email_key=email_key(VISITOR),
                          source="purchase", created_at=MADE_AT)
        fee = paid_access.platform_fee(999, ENV.catalog.platform_fee_bps)
        db.add(contact)
        db.flush()
        db.add(Pass(id=new_id("pas"), org_id=owner.org_id, agent_id=agent.id, contact_id=contact.id,
                    visitor_email=VISITOR, email_key=email_key(VISITOR), price=999, currency="usd", platform_fee=fee,
                    net=999 - fee, access_days=30, message_credits=PASS_CREDITS, credits_left=PASS_CREDITS,
                    expires_at=MADE_AT + timedelta(days=30), created_at=MADE_AT, refunded_at=None,
                    refund_reference=None, gateway_reference=new_id("ch"), checkout_key="bench",
                    token_hash=paid_access.token_hash(new_id("swv"))))
        db.flush()

    def actor(self, n: int) -> Actor:
        return Actor(f"{self.owner.user_id}-{n}", str(ORG_BASE + n), "owner")

    def take(self, count: int) -> int:
        """The first of ``count`` new copies."""
        first, self.taken = self.taken, self.taken + count
        with self.engine.begin() as conn:
            for table, rows in self.rows.items():
                if not rows:
                    continue
                unique = _unique(table)
                counted = {c.name for c in table.primary_key.columns if c.autoincrement is True}
                conn.execute(insert(table), [
                    {c: self._copy(v, n) if v is not None and (v in self.keys or c in unique) else v
                     for c, v in row.items() if c not in counted}
                    for n in range(first, first + count) for row in rows])
            if conn.dialect.name == "postgresql":
                conn.execute(text("ANALYZE"))
        return first

    def _copy(self, value: str, n: int) -> str:
        table, tail = self.keys.get(value), f"-{n}"
        own = {"organizations": str(ORG_BASE + n), "subscriptions": str(SUB_BASE + n),
               "agents": str(AGENT_BASE + n), "passes": str(PASS_BASE + n)}
        return own.get(table or "", value[:-len(tail)] + tail)  # as long as the original: columns have limits

    def state(self, n: int) -> dict[str, list[tuple[Any, ...]]]:
        """What organization ``n`` holds, ids left out: equal for two organizations that went through the
        same operations, whoever ran them."""
        state = {}
        with self.engine.connect() as conn:
            for table in _org_tables():
                if table.name in HISTORY:
                    continue
                # A spend's request_hash digests its body, which names the organization's agent: the
                # floor (no SHA-256 in pgbench) writes the captured one; it only guards replays.
                kept = [c for c in table.c if c.name not in _identity(table) | {"request_hash"}]
                rows = conn.execute(select(*kept).where(_of_org(table, str(ORG_BASE + n)))).all()
                state[table.name] = sorted((tuple("<id>" if isinstance(v, str) and ID_LIKE.fullmatch(v) else v
                                                  for v in row) for row in rows), key=repr)
        return state


@dataclass(frozen=True)
class Statement:
    """A statement as the floor replays it: the driver's text, and per parameter (its name or position)
    the floor variable that fills it (``org``, ``sub``, ``new0`` …, ``ret_<column>``), or None and the
    constant slotwise sent."""

    sql: str
    params: tuple[tuple[str | int, str | None, Any], ...]
    returns: bool  # an UPDATE … RETURNING whose values later statements use


@contextmanager
def counted(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """What slotwise sends through ``engine`` meanwhile, BEGIN and COMMIT left out."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        if not statement.lstrip().upper().startswith(NOT_COUNTED):
            if many:
                raise ValueError(f"an executemany cannot be replayed as one statement: {statement!r}")
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _returned(engine: Engine, sql: str, org_id: str) -> dict[str, Any]:
    """The values an ``UPDATE <table> … RETURNING`` gave back, read again after the operation."""
    found = re.match(r"UPDATE (\w+) .* RETURNING (.+)$", sql, re.S)
    if found is None:
        raise ValueError(f"cannot replay what this statement returns: {sql!r}")
    table = Base.metadata.tables[found[1]]
    columns = [c.strip().rsplit(".", 1)[-1] for c in found[2].split(",")]
    with engine.connect() as conn:
        row = conn.execute(select(*(table.c[c] for c in columns)).where(table.c.id == org_id)).one()
    return dict(zip(columns, row, strict=True))


def _returns(sql: str) -> bool:
    """An ``UPDATE … RETURNING`` whose values later statements use (the spend's one statement returns its
    answer, which nothing after it reads)."""
    return sql.lstrip().upper().startswith("UPDATE") and "RETURNING" in sql


def _sessions(engine: Engine, op: Operation) -> sessionmaker[Session]:
    if op.autocommit and engine.dialect.name == "postgresql":
        return make_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))
    return make_sessionmaker(engine)


def capture(engine: Engine, pool: Organizations, op: Operation) -> list[Statement]:
    """The statements of ``op``, from two runs of it on one organization: a parameter that is the same in
    both is a constant; one that differs must be the organization's, a new id or a returned value."""
    n = pool.take(1)
    sessions = _sessions(engine, op)
    runs = []
    for _ in range(2):
        with counted(engine) as sent, transaction(sessions) as db:
            op.call(db, pool.actor(n))
        runs.append([(sql, params, _returned(engine, sql, pool.actor(n).org_id) if _returns(sql) else {})
                     for sql, params in sent])
    if [sql for sql, _, _ in runs[0]] != [sql for sql, _, _ in runs[1]]:
        raise ValueError(f"{op.label} does not send the same statements each time")
    own = {str(ORG_BASE + n): "org", str(SUB_BASE + n): "sub", str(AGENT_BASE + n): "agent",
           str(PASS_BASE + n): "pass"}
    fresh: list[dict[Any, str]] = [{}, {}]
    statements: list[Statement] = []
    returned: list[dict[str, Any]] = [{}, {}]
    for (sql, first, ret1), (_, second, ret2) in zip(*runs, strict=True):
        params = []
        for key in first if isinstance(first, dict) else range(len(first)):
            one, two = first[key], second[key]
            var = None
            if one == two and one in own:
                var = own[one]
            elif one != two and (col := next((c for c in returned[0] if returned[0][c] == one
                                              and returned[1][c] == two), None)):
                var = f"ret_{col}"
            elif one != two and all(isinstance(v, str) and NEW_ID.fullmatch(v) for v in (one, two)):
                var = fresh[0].setdefault(one, f"new{len(fresh[0])}")
                if fresh[1].setdefault(two, var) != var:
                    raise ValueError(f"new ids are reused differently in {sql!r}")
            elif one != two and HISTORY_INSERT.match(sql.lstrip()):
                var = None  # an event's payload, an entry's before -> after: history, replayed as captured
            elif one != two:
                raise ValueError(f"parameter {key} of {sql!r} varies in a way no floor replays: {one!r}, {two!r}")
            params.append((key, var, one))
        statements.append(Statement(sql, tuple(params), bool(ret1)))
        returned[0].update(ret1)
        returned[1].update(ret2)
    return statements


@dataclass(frozen=True)
class Measure:
    per_second: float
    ops: int
    statements: float  # per operation, BEGIN and COMMIT left out
    failures: int = 0


def _slotwise(engine: Engine, pool: Organizations, op: Operation, first: int, per_client: int, clients: int,
              seconds: float) -> Measure:
    """slotwise's service function: client ``c``'s ``k``-th operation is on organization
    ``first + c + clients * (k // PER_ORG)``, exactly as on the floor. Each client completes at least
    one organization, however slow, so there is one to compare with the floor's. With several clients
    each is a process of its own, as pgbench's are and as the server's workers are (threads of one
    interpreter would measure its lock, not slotwise)."""
    if clients == 1:
        started = time.monotonic()
        done, sent = _client(engine, pool, op, first, per_client, 1, 0, time.monotonic() + seconds)
        elapsed = time.monotonic() - started
        return Measure(done / elapsed, done, sent / max(done, 1))
    forked = multiprocessing.get_context("fork")
    results = forked.Queue()
    start = forked.Event()

    def child(c: int) -> None:
        engine.dispose(close=False)  # the parent's connections stay the parent's
        start.wait()
        results.put(_client(engine, pool, op, first, per_client, clients, c, time.monotonic() + seconds))

    children = [forked.Process(target=child, args=(c,)) for c in range(clients)]
    for process in children:
        process.start()
    started = time.monotonic()
    start.set()
    outcomes = [results.get() for _ in children]
    elapsed = time.monotonic() - started
    for process in children:
        process.join()
    if any(done < 0 for done, _ in outcomes):
        raise OutOfOrganizations
    done = sum(d for d, _ in outcomes)
    return Measure(done / elapsed, done, sum(n for _, n in outcomes) / max(done, 1))


def on_servers_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on the event loop ``slotwise serve`` runs (``server.LOOP``: uvloop, asyncio on
    Windows), so that the fast lane is measured as the server runs it."""
    if server.LOOP == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def _client(engine: Engine, pool: Organizations, op: Operation, first: int, per_client: int, clients: int, c: int,
            stop: float) -> tuple[int, int]:
    """One client's operations until ``stop`` (at least one organization's) and the statements they
    sent; -1 operations if it ran out of organizations."""
    if op.lane is not None:
        return on_servers_loop(_lane_client(engine, pool, op, first, per_client, clients, c, stop))
    sessions = _sessions(engine, op)
    k = 0
    with counted(engine) as sent:
        while k < PER_ORG or time.monotonic() < stop:
            if k // PER_ORG >= per_client:
                return _ran_out(clients), len(sent)
            with transaction(sessions) as db:
                op.call(db, pool.actor(first + c + clients * (k // PER_ORG)))
            k += 1
    return k, len(sent)


async def _lane_client(engine: Engine, pool: Organizations, op: Operation, first: int, per_client: int,
                       clients: int, c: int, stop: float) -> tuple[int, int]:
    assert op.lane is not None
    lane = Lane(engine.url.render_as_string(hide_password=False), size=1)
    lane.trace = []
    await lane.open(wait=True)
    k = 0
    try:
        async with lane.connection() as conn:
            while k < PER_ORG or time.monotonic() < stop:
                if k // PER_ORG >= per_client:
                    return _ran_out(clients), len(lane.trace)
                await op.lane(lane, conn, pool.actor(first + c + clients * (k // PER_ORG)))
                k += 1
    finally:
        await lane.close()
    return k, len(lane.trace)


def _ran_out(clients: int) -> int:
    if clients == 1:
        raise OutOfOrganizations
    return -1


def _sqlite_floor(path: Path, statements: Sequence[Statement], first: int, per_client: int, seconds: float) -> Measure:
    """The statements in a raw ``sqlite3`` loop, one client, with slotwise's pragmas and write lock."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    for pragma in ("foreign_keys=ON", "journal_mode=WAL", "busy_timeout=30000"):
        conn.execute(f"PRAGMA {pragma}")
    plan = [(st.sql, [(var, value) for _, var, value in st.params], st.returns) for st in statements]
    fresh = sorted({var for st in statements for _, var, _ in st.params if var and var.startswith("new")})
    done, stop = 0, time.monotonic() + seconds
    started = time.monotonic()
    while done < PER_ORG or time.monotonic() < stop:
        if done // PER_ORG >= per_client:
            raise OutOfOrganizations
        n = first + done // PER_ORG
        values: dict[str, Any] = {"org": str(ORG_BASE + n), "sub": str(SUB_BASE + n),
                                  "agent": str(AGENT_BASE + n), "pass": str(PASS_BASE + n)}
        values.update((var, str(random.randrange(*FRESH))) for var in fresh)
        conn.execute("BEGIN IMMEDIATE")
        for sql, params, returns in plan:
            cursor = conn.execute(sql, [value if var is None else values[var] for var, value in params])
            rows = cursor.fetchall()
            if returns:
                values.update((f"ret_{d[0]}", v) for d, v in zip(cursor.description, rows[0], strict=True))
        conn.execute("COMMIT")
        done += 1
    elapsed = time.monotonic() - started
    conn.close()
    return Measure(done / elapsed, done, len(plan))


def _pg_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(" ")
    return str(value).lower() if isinstance(value, bool) else str(value)


def _with_variables(sql: str, names: dict[str | int, str]) -> str:
    """psycopg's ``%(name)s`` placeholders as pgbench ``:variables``."""
    return re.sub(r"%\((\w+)\)s", lambda m: names[m[1]], sql).replace("%%", "%")


def pgbench_script(statements: Sequence[Statement], *, autocommit: bool = False) -> tuple[str, dict[str, str]]:
    """The floor as a pgbench script, and the constants it reads (``-D``): slotwise's statement texts with
    each placeholder a variable; ``k`` counts the client's transactions (pgbench keeps variables from
    one to the next), which picks the organization as the service loop does."""
    constants: dict[str, str] = {}
    fresh = sorted({var for st in statements for _, var, _ in st.params if var and var.startswith("new")})
    lines = [r"\set k :k + 1", r"\if :k / :per >= :orgs", r"\set out_of_organizations 1 / 0", r"\endif",
             r"\set n :first + :client_id + :clients * (:k / :per)",
             rf"\set org {ORG_BASE} + :n", rf"\set sub {SUB_BASE} + :n",
             rf"\set agent {AGENT_BASE} + :n", rf"\set pass {PASS_BASE} + :n",
             *(rf"\set {var} random({FRESH[0]}, {FRESH[1]})" for var in fresh), *([] if autocommit else ["BEGIN;"])]
    for i, st in enumerate(statements):
        names: dict[str | int, str] = {}
        for key, var, value in st.params:
            if var is None and value in (None, ""):  # pgbench -D takes no empty value
                names[key] = "NULL" if value is None else "''"
                continue
            if var is None:
                var = f"c{i}_{key}"
                constants[var] = _pg_text(value)
            names[key] = f":{var}"
        lines.append(_with_variables(st.sql, names) + (r" \gset ret_" if st.returns else ";"))
    return "\n".join([*lines, *([] if autocommit else ["COMMIT;"]), ""]), constants


def _pgbench(dsn: str, statements: Sequence[Statement], first: int, per_client: int, clients: int,
             seconds: int, autocommit: bool = False) -> Measure:
    script, constants = pgbench_script(statements, autocommit=autocommit)
    defines = {"k": "-1", "per": str(PER_ORG), "orgs": str(per_client), "first": str(first),
               "clients": str(clients), **constants}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "floor.sql")
        path.write_text(script, encoding="utf-8")
        done = subprocess.run(
            ["pgbench", "-n", "-M", "prepared", "-r", "-f", str(path), "-c", str(clients),
             "-j", str(min(clients, os.cpu_count() or 1)), "-T", str(seconds),
             *(arg for name, value in defines.items() for arg in ("-D", f"{name}={value}")), dsn],
            capture_output=True, text=True, env={**os.environ, "PGCLIENTENCODING": "UTF8"})
    if "division by zero" in done.stderr:
        raise OutOfOrganizations
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{done.stdout}\n{done.stderr}")
    out = done.stdout
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    processed = re.search(r"transactions actually processed: (\d+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    assert tps and processed and failed, out
    listing = re.findall(r"^\s+[0-9.]+\s+(\d+)\s+(.*)$", out.split("statement latencies", 1)[1], re.M)
    sql = [(int(fails), cmd) for fails, cmd in listing
           if not cmd.startswith("\\") and cmd.strip().upper() not in ("BEGIN;", "COMMIT;")]
    failures = int(failed[1]) + sum(fails for fails, _ in sql)
    return Measure(float(tps[1]), int(processed[1]), len(sql), failures)


def _sized(pool: Organizations, clients: int, seconds: float, guess: int,
           run: Callable[[int, int], Measure]) -> tuple[Measure, int]:
    """``run(first, per_client)`` on enough fresh organizations; the measure and the first one."""
    per_client = math.ceil(guess * seconds / PER_ORG / clients) + 1
    while True:
        first = pool.take(per_client * clients)
        try:
            return run(first, per_client), first
        except OutOfOrganizations:
            per_client *= 2


@dataclass(frozen=True)
class Row:
    database: str
    operation: str
    clients: int
    slotwise: Measure
    floor: Measure
    same_effect: bool | None  # an organization holds the same after 30 operations of either; None: not checked

    @property
    def ratio(self) -> float:
        return self.slotwise.per_second / self.floor.per_second


Floor = Callable[[Sequence[Statement], int, int, int, bool], Measure]  # statements, first, per client, clients,
#                                                                 autocommit


def _rows(database: str, engine: Engine, clients: Sequence[int], seconds: float, floor_seconds: float,
          floor: Floor) -> list[Row]:
    pool = Organizations(engine)
    lane = engine.dialect.name == "postgresql"  # the fast lane exists on PostgreSQL only
    return [_row(database, pool, op, n, seconds, floor_seconds, floor) for n in clients for op in OPERATIONS
            if lane or op.lane is None]


def _row(database: str, pool: Organizations, op: Operation, clients: int, seconds: float, floor_seconds: float,
         floor: Floor) -> Row:
    """One operation against its floor, one right after the other, on fresh organizations each."""
    statements = capture(pool.engine, pool, op)
    mine, mine_first = _sized(pool, clients, seconds, GUESS["slotwise"],
                              lambda first, per: _slotwise(pool.engine, pool, op, first, per, clients, seconds))
    raw, raw_first = _sized(pool, clients, floor_seconds, GUESS["floor"],
                            lambda first, per: floor(statements, first, per, clients, op.autocommit))
    # pgbench tells no client's count: with several, twice the need makes client 0's first one complete
    checked = raw.ops >= PER_ORG * clients * (1 if clients == 1 else 2)
    same = pool.state(mine_first) == pool.state(raw_first) if checked else None
    return Row(database, op.label, clients, mine, raw, same)


def sqlite(seconds: float) -> list[Row]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        engine = make_engine(f"sqlite:///{path}")
        Base.metadata.create_all(engine)
        try:
            return _rows("SQLite", engine, [1], seconds, seconds,
                         lambda st, first, per, _n, _auto: _sqlite_floor(path, st, first, per, seconds))
        finally:
            engine.dispose()


def postgres(base: str, clients: Sequence[int], seconds: float) -> list[Row]:
    server = normalize_database_url(base).rsplit("/", 1)[0]
    name = f"svcbench_{os.getpid()}"
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(f"{server}/{name}", pool_size=8)
    try:
        Base.metadata.create_all(engine)
        dsn = f"{server}/{name}".replace("postgresql+psycopg://", "postgresql://")
        whole = max(1, round(seconds))  # pgbench -T counts whole seconds
        return _rows("PostgreSQL", engine, clients, seconds, whole,
                     lambda st, first, per, n, auto: _pgbench(dsn, st, first, per, n, whole, auto))
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def table(rows: Sequence[Row]) -> str:
    lines = ["| database | operation | clients | slotwise ops/s | floor ops/s (same statements) | slotwise ÷ floor "
             "| SQL statements / op: slotwise, floor |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row.database} | {row.operation} | {row.clients} | {row.slotwise.per_second:,.0f} | "
                     f"{row.floor.per_second:,.0f} | {row.ratio:.2f}× | "
                     f"{row.slotwise.statements:g}, {row.floor.statements:g} |")
    return "\n".join(lines)


def problems(rows: Sequence[Row]) -> list[str]:
    """Where a floor is not exactly slotwise's statements: another count, a failure, another effect."""
    found = []
    for row in rows:
        where = f"{row.database} {row.operation}, {row.clients} client(s)"
        if row.floor.statements != row.slotwise.statements:
            found.append(f"{where}: the floor ran {row.floor.statements:g} statements per operation, slotwise "
                         f"{row.slotwise.statements:g}")
        if row.floor.failures:
            found.append(f"{where}: {row.floor.failures} statements or transactions of the floor failed")
        if row.same_effect is not True:
            found.append(f"{where}: an organization {'was not compared' if row.same_effect is None else 'differs'}"
                         f" after {PER_ORG} operations of slotwise and of the floor")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--quick", action="store_true", help="0.5 s per figure, 1 client, both databases")
    parser.add_argument("--postgres", default=os.environ.get(
        "SLOTWISE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/slotwise_test"))
    args = parser.parse_args()
    seconds, clients = (0.5, [1]) if args.quick else (args.seconds, [1, 4])
    rows = sqlite(seconds) + postgres(args.postgres, clients, seconds)
    print(f"{datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, each figure over {seconds:g} s, "
          f"{PER_ORG} operations per organization\n")
    print(table(rows))
    for problem in problems(rows):
        print(f"\n**Not a floor of slotwise's statements**: {problem}")
    # The outbox's cost on the spend (issue 12): with and without an endpoint taking credits.low.
    from bench import outbox  # it measures the spend as this module does

    rounds = 1 if args.quick else 3
    print("\n" + outbox.table(outbox.sqlite(seconds, rounds) + outbox.postgres(args.postgres, seconds, rounds)))


if __name__ == "__main__":
    main()
