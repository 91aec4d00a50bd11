"""SPEC §10 for the Usage route: ``GET /v1/organizations/{org}/usage`` for an organization with a million
spends in a month, against the database running the route's own roll-up read.

On a fresh PostgreSQL database, one business organization with 20 agents and:

* the ``credit_usage`` roll-up rows that ``--spends`` spends over ``--days`` days across the agents
  would leave (a row per day and agent: 600 for 30 days and 20 agents), and
* ``--ledger`` spend entries in ``credit_ledger`` over the same days, which the route must not read
  (every statement it sends is captured and checked; the report also times one read of the ledger
  summed per day, what a chart built on the ledger would cost).

Timed, each ``--calls`` times in a row over one keep-alive connection to a uvicorn server in this
process, with the owner's API token: the usage of the last 30 days by day, the same for one agent,
and a year by month; for scale, the same server's ``GET /v1/organizations/{org}``. Then the service
function alone (``usage.usage`` in a session), and the floor: the roll-up statement the route sends,
run by ``pgbench -M prepared`` (one client) or, without pgbench, a psycopg loop of the same statement.

Prints a Markdown table (milliseconds per call: median and p95, and the ratio to the floor).
``python -m bench.usage [--spends 1000000] [--ledger 1000000] [--calls 2000]``; ``--quick`` is a tiny
pass. ``SLOTWISE_TEST_POSTGRES_URL`` (or the local server) says where to make the database.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn
from sqlalchemy import Engine, create_engine, event, text

from slotwise.api.app import create_app
from slotwise.catalog import load_catalog
from slotwise.clock import SimulatedClock
from slotwise.config import Settings, normalize_database_url
from slotwise.db import make_engine, make_sessionmaker, transaction
from slotwise.gateway import SandboxGateway
from slotwise.models import Base, CreditUsage
from slotwise.services import addons, agents, organizations, usage
from slotwise.services.context import Actor, Env

AT = datetime(2026, 11, 30, 12, tzinfo=UTC)  # the bench's billing time: the month of spends ends today
MADE_AT = AT - timedelta(days=20)  # the organization subscribes then: its period holds AT, nothing comes due
AGENTS = 20
KEY = "bench-operator-key"
ENV = Env(catalog=load_catalog(), gateway=SandboxGateway())
SERVER = os.environ.get("SLOTWISE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass(frozen=True)
class Seeded:
    org_id: str
    token: str
    agent_ids: list[str]
    spends: int
    ledger: int


@dataclass(frozen=True)
class Row:
    what: str
    median_ms: float
    p95_ms: float
    floor_ms: float | None = None

    @property
    def ratio(self) -> str:
        return "" if self.floor_ms is None else f"{self.median_ms / self.floor_ms:.1f}×"


# --- the data ------------------------------------------------------------------------------------

def roll_up_rows(org_id: str, agent_ids: list[str], *, spends: int, days: int, end: date) -> list[dict[str, Any]]:
    """What ``spends`` spends over ``days`` days up to ``end`` leave in the roll-up: a row per day and
    agent, busier agents and weekdays taking more, the counts adding up to ``spends`` exactly. Most
    spends are standard messages (1 credit); one in ten a premium message (5), one in twenty a document
    (10, no message)."""
    cells = [(end - timedelta(days=d), n) for d in range(days) for n in range(len(agent_ids))]
    weights = [(0.5 if day.weekday() >= 5 else 1.0) / (1 + n % 7) for day, n in cells]
    counts = [int(spends * w / sum(weights)) for w in weights]
    counts[0] += spends - sum(counts)
    rows = []
    for (day, n), count in zip(cells, counts, strict=True):
        documents, premium = count // 20, count // 10
        messages = count - documents
        rows.append({"org_id": org_id, "day": day, "agent_key": agent_ids[n], "messages": messages,
                     "credits": messages + 4 * premium + 10 * documents})
    return rows


_LEDGER = """
INSERT INTO credit_ledger (id, org_id, kind, plan_delta, topup_delta, reference, activity, model, units, cost,
                           agent_id, playground, created_at)
SELECT 'cre_' || lpad(to_hex(g), 16, '0'), :org_id, 'spend', -1, 0, 'bench-' || g, 'message', 'standard', 1, 1,
       (CAST(:agents AS text[]))[1 + g % :agent_count], false,
       :start + (CAST(g AS bigint) * :step) * interval '1 microsecond'
FROM generate_series(1, :n) AS g
"""


def seed(engine: Engine, *, spends: int, ledger: int, days: int) -> Seeded:
    """The schema, the organization (Business + 10 chatbot slots, 20 agents), its roll-up rows and
    ``ledger`` spend entries, spread over the ``days`` days up to ``AT``."""
    Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as db:
        made = organizations.create_organization(db, env=ENV, name="Million Spends Inc", owner_email="owner@bench.test",
                                                 owner_name="Owner", owner_password=None, plan_code="business",
                                                 card_number=None, at=MADE_AT)
        org_id, token = made.organization.id, made.owner.api_token
        owner = Actor(made.owner.user.id, org_id, "owner")
    with transaction(sessions) as db:
        addons.add_slots(db, env=ENV, actor=owner, addon_code="agent_slots", quantity=AGENTS - 10, at=MADE_AT)
    with transaction(sessions) as db:
        agent_ids = [agents.create_agent(db, env=ENV, actor=owner, name=f"Agent {n + 1}", at=MADE_AT).agent.id
                     for n in range(AGENTS)]
    with engine.begin() as conn:
        # As if this period's refill had run: nothing is due at AT, so every call measures the read
        # itself, not a catch-up of due work.
        conn.execute(text("UPDATE credit_accounts SET refills_at = (SELECT period_end FROM subscriptions s"
                          " WHERE s.org_id = :o) WHERE org_id = :o"), {"o": org_id})
        conn.execute(CreditUsage.__table__.insert(),
                     roll_up_rows(org_id, agent_ids, spends=spends, days=days, end=AT.date()))
        start = datetime.combine(AT.date() - timedelta(days=days - 1), datetime.min.time(), UTC)
        step = max(1, int(days * 86_400_000_000 / max(ledger, 1)))
        conn.execute(text(_LEDGER), {"org_id": org_id, "agents": agent_ids, "agent_count": AGENTS, "start": start,
                                     "step": step, "n": ledger})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE credit_usage"))
        conn.execute(text("VACUUM ANALYZE credit_ledger"))
    return Seeded(org_id, token, agent_ids, spends, ledger)


# --- a fresh database and a server ----------------------------------------------------------------

@contextmanager
def scratch_database() -> Iterator[str]:
    base = normalize_database_url(SERVER)
    name = f"slotwise_bench_usage_{os.getpid()}"
    admin = create_engine(base.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def serving(engine: Engine, url: str) -> Iterator[str]:
    settings = Settings(database_url=url, operator_key=KEY, catalog_path=None, clock="simulated", clock_start=AT,
                        secure_cookies=False)
    app = create_app(settings, engine=engine, clock=SimulatedClock(AT), gateway=ENV.gateway, catalog=ENV.catalog)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    # lifespan on: the app opens its fast lane's pool at startup, as `slotwise serve` does
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the bench server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def statements_sent(engine: Engine) -> Iterator[list[str]]:
    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


# --- timing ---------------------------------------------------------------------------------------

def timed(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """Median and p95 milliseconds of ``calls`` calls in a row, after a tenth as many warm-ups."""
    for _ in range(max(3, calls // 10)):
        call()
    times = []
    for _ in range(calls):
        begun = time.perf_counter()
        call()
        times.append((time.perf_counter() - begun) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.95))]


_FLOOR_SQL = ("SELECT day, CAST(sum(credits) AS BIGINT), CAST(sum(messages) AS BIGINT) FROM credit_usage "
              "WHERE org_id = {org} AND day BETWEEN {start} AND {end} GROUP BY day")


def floor_ms(url: str, org_id: str, start: date, end: date, calls: int) -> tuple[float, str]:
    """The route's roll-up read with nothing around it: pgbench (prepared, one client), else psycopg."""
    pgbench = shutil.which("pgbench")
    if pgbench is not None:
        with tempfile.TemporaryDirectory() as folder:
            script = Path(folder) / "usage.sql"
            # -D variables are bound as parameters of the prepared statement, as psycopg binds them
            script.write_text(_FLOOR_SQL.format(org=":org", start="CAST(:start AS date)", end="CAST(:end AS date)")
                              + ";\n")
            ran = subprocess.run([pgbench, "-n", "-M", "prepared", "-c", "1", "-t", str(calls), "-f", str(script),
                                  "-D", f"org={org_id}", "-D", f"start={start}", "-D", f"end={end}",
                                  url.replace("postgresql+psycopg://", "postgresql://")],
                                 capture_output=True, text=True)
            out = ran.stdout
            if ran.returncode != 0:
                raise RuntimeError(f"pgbench failed: {ran.stderr}")
        found = re.search(r"latency average = ([0-9.]+) ms", out)
        assert found is not None, out
        return float(found.group(1)), "pgbench -M prepared"
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        sql = _FLOOR_SQL.format(org="%s", start="%s", end="%s")
        median, _ = timed(lambda: conn.execute(sql, (org_id, start, end), prepare=True).fetchall(), calls)
    return median, "psycopg loop"


def ledger_read_ms(engine: Engine, org_id: str, start: date) -> float:
    """One read of the ledger summed per day (what the route does not do), warm."""
    sql = text("SELECT date_trunc('day', created_at), sum(cost), sum(units) FILTER (WHERE activity = 'message') "
               "FROM credit_ledger WHERE org_id = :o AND kind = 'spend' AND created_at >= :s GROUP BY 1")
    with engine.connect() as conn:
        conn.execute(sql, {"o": org_id, "s": start}).all()
        begun = time.perf_counter()
        conn.execute(sql, {"o": org_id, "s": start}).all()
        return (time.perf_counter() - begun) * 1000


# --- the run --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Report:
    rows: list[Row]
    seeded: Seeded
    floor_how: str
    ledger_read_ms: float
    statements: int  # what one usage request sent


def measure(*, spends: int, ledger: int, calls: int, days: int = 30) -> Report:
    with scratch_database() as url:
        engine = make_engine(url, pool_size=4)
        try:
            seeded = seed(engine, spends=spends, ledger=ledger, days=days)
            return _measure(engine, url, seeded, calls=calls, days=days)
        finally:
            engine.dispose()


def _measure(engine: Engine, url: str, seeded: Seeded, *, calls: int, days: int) -> Report:
    end = AT.date()
    start = end - timedelta(days=days - 1)
    month = {"from": start.isoformat(), "to": end.isoformat()}
    org_path = f"/v1/organizations/{seeded.org_id}"
    cases = [("GET …/usage, 30 days by day", month),
             ("GET …/usage, 30 days by day, one agent", {**month, "agent_id": seeded.agent_ids[0]}),
             ("GET …/usage, a year by month", {"from": (end - timedelta(days=364)).isoformat(), "to": end.isoformat(),
                                               "interval": "month"})]
    floor, how = floor_ms(url, seeded.org_id, start, end, calls)
    rows: list[Row] = []
    with serving(engine, url) as base, httpx.Client(base_url=base, headers={"Authorization": f"Bearer {seeded.token}"},
                                                     timeout=30) as client:
        first = client.get(org_path + "/usage", params=month)
        first.raise_for_status()
        body = first.json()
        assert body["messages"] + sum(r["credits"] for r in body["series"]) > 0
        assert len(body["series"]) == days
        with statements_sent(engine) as sent:
            client.get(org_path + "/usage", params=month).raise_for_status()
        assert not any("credit_ledger" in s for s in sent), "the usage route read the ledger"
        for what, params in cases:
            median, p95 = timed(_getter(client, org_path + "/usage", params), calls)
            rows.append(Row(what, median, p95, floor))
        median, p95 = timed(_getter(client, org_path, {}), calls)
        rows.append(Row("GET …/organizations/{org} (for scale: the fast lane)", median, p95, floor))
    sessions = make_sessionmaker(engine)

    def service() -> None:
        with sessions() as db:
            usage.usage(db, catalog=ENV.catalog, org_id=seeded.org_id, start=start, end=end, agent_id=None,
                        interval="day")

    median, p95 = timed(service, calls)
    rows.append(Row("usage.usage (the service, no HTTP)", median, p95, floor))
    rows.append(Row(f"floor: the roll-up read ({how})", floor, floor, floor))
    return Report(rows, seeded, how, ledger_read_ms(engine, seeded.org_id, start), len(sent))


def _getter(client: httpx.Client, path: str, params: dict[str, str]) -> Callable[[], object]:
    return lambda: client.get(path, params=params).raise_for_status()


def table(report: Report) -> str:
    s = report.seeded
    lines = [f"One organization: {s.spends:,} spends over 30 days across {AGENTS} agents, i.e. "
             f"{30 * AGENTS} roll-up rows, and {s.ledger:,} ledger entries. The usage route sent "
             f"{report.statements} statements, none on credit_ledger; one read of the ledger summed per day "
             f"would take {report.ledger_read_ms:,.1f} ms.", "",
             "| what | median ms | p95 ms | × floor |", "|---|---:|---:|---:|"]
    lines += [f"| {r.what} | {r.median_ms:.3f} | {r.p95_ms:.3f} | {r.ratio} |" for r in report.rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--spends", type=int, default=1_000_000)
    parser.add_argument("--ledger", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="a tiny pass: 10,000 spends and ledger rows, 50 calls")
    args = parser.parse_args()
    if args.quick:
        args.spends, args.ledger, args.calls = 10_000, 10_000, 50
    begun = time.monotonic()
    report = measure(spends=args.spends, ledger=args.ledger, calls=args.calls)
    print(table(report))
    print(f"\n({time.monotonic() - begun:.0f} s in all, seeding included)")


if __name__ == "__main__":
    main()
