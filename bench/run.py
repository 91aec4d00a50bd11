"""SPEC §10 benchmarks: slotwise's capacity check (agent creation) and its add/remove path, measured
against what the database itself does on this machine with a comparable transaction.

* PostgreSQL: `pgbench` runs the raw shape of the capacity check (lock the organization row, count
  its agents, insert one) and a minimal one-row-lock transaction (lock, update, commit).
* SQLite: a raw `sqlite3` loop of the same capacity-check shape, with slotwise's pragmas.
* slotwise: the service functions (`agents.create_agent`, `addons.add_slots`, `addons.remove_slots`),
  each in its own transaction through SQLAlchemy, as a request runs them, minus HTTP.

Prints a Markdown table (operations per second, the ratio to raw, SQL statements per operation)
for docs/BENCHMARKS.md. Run with `make bench`; `--seconds` sets each measurement's length.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from slotwise.catalog import load_catalog
from slotwise.config import normalize_database_url
from slotwise.db import make_engine, make_sessionmaker, transaction
from slotwise.gateway import SandboxGateway
from slotwise.models import Base
from slotwise.services import addons, agents, organizations
from slotwise.services.context import Actor, Env

AT = datetime(2026, 11, 15, 9, tzinfo=UTC)
ENV = Env(catalog=load_catalog(), gateway=SandboxGateway(), quantity_changes_per_hour=10**9)  # no cap here
ORGS = 24
RAW_CHECK = """\\set n random(1, {orgs})
BEGIN;
SELECT id, plan_code FROM organizations WHERE id = 'org_bench_' || :n FOR UPDATE;
SELECT count(*) FROM agents WHERE org_id = 'org_bench_' || :n AND archived_at IS NULL;
INSERT INTO agents (id, org_id, name, archived_at, created_at)
  VALUES (substr(md5(random()::text), 1, 24), 'org_bench_' || :n, 'raw', NULL, now());
COMMIT;
"""
RAW_LOCK = """\\set n random(1, {orgs})
BEGIN;
SELECT invoice_seq FROM organizations WHERE id = 'org_bench_' || :n FOR UPDATE;
UPDATE organizations SET invoice_seq = invoice_seq + 1 WHERE id = 'org_bench_' || :n;
COMMIT;
"""


@dataclass
class Row:
    database: str
    what: str
    clients: int
    per_second: float
    statements: float | None = None
    baseline: str | None = None  # the raw row this one is compared with


class Counter:
    """SQL statements sent through an engine, BEGIN and COMMIT left out (as in the raw figures)."""

    def __init__(self, engine: Engine) -> None:
        self.n = 0
        self.lock = threading.Lock()
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, _conn: object, _cursor: object, statement: str, *_: object) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT")):
            with self.lock:
                self.n += 1


_seeded = iter(range(10**9))


def _seed(sessions: sessionmaker[Session], *, slots: int = 0) -> list[Actor]:
    """Business organizations (10 agents included), each with ``slots`` agent slots bought."""
    actors = []
    for _ in range(ORGS):
        with transaction(sessions) as db:
            made = organizations.create_organization(
                db, env=ENV, name="Bench", owner_email=f"bench{next(_seeded)}@example.test", owner_name=None,
                owner_password=None, plan_code="business", card_number=None, at=AT)
            actor = Actor(made.owner.user.id, made.organization.id, "owner")
            for _ in range(slots // 100):
                addons.add_slots(db, env=ENV, actor=actor, addon_code="agent_slots", quantity=100, at=AT)
        actors.append(actor)
    return actors


def _rate(sessions: sessionmaker[Session], actors: list[Actor], clients: int, seconds: float,
          op: Callable[[Session, Actor, datetime], object], limit_per_org: int) -> tuple[float, int]:
    """Operations per second with ``clients`` threads, each on its own organizations."""
    done = [0] * clients
    stop = time.monotonic() + seconds
    at = AT + timedelta(days=1)

    def worker(c: int) -> None:
        mine = actors[c::clients]
        used = dict.fromkeys(range(len(mine)), 0)
        i = 0
        while time.monotonic() < stop:
            k = i % len(mine)
            i += 1
            if used[k] >= limit_per_org:
                if all(v >= limit_per_org for v in used.values()):
                    return
                continue
            with transaction(sessions) as db:
                op(db, mine[k], at)
            used[k] += 1
            done[c] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.monotonic() - started), sum(done)


def _create(db: Session, actor: Actor, at: datetime) -> object:
    return agents.create_agent(db, env=ENV, actor=actor, name="bench", at=at)


def _add(db: Session, actor: Actor, at: datetime) -> object:
    return addons.add_slots(db, env=ENV, actor=actor, addon_code="agent_slots", quantity=1, at=at)


def _remove(db: Session, actor: Actor, at: datetime) -> object:
    return addons.remove_slots(db, env=ENV, actor=actor, addon_code="agent_slots", quantity=1, at=at)


def _slotwise_rows(url: str, database: str, clients: list[int], seconds: float) -> list[Row]:
    engine = make_engine(url, **({} if database == "SQLite" else {"pool_size": 8}))
    Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    count = Counter(engine)
    rows = []
    base = "raw capacity check"
    for n in clients:
        for label, actors, op, cap, compare in (
            ("slotwise create agent (capacity check)", _seed(sessions, slots=1000), _create, 1010, base),
            ("slotwise add 1 slot (invoice + charge)", _seed(sessions), _add, 1000, "raw one-row lock"),
            ("slotwise remove 1 slot", _seed(sessions, slots=1000), _remove, 1000, "raw one-row lock"),
        ):
            before = count.n
            rate, ops = _rate(sessions, actors, n, seconds, op, cap)
            rows.append(Row(database, label, n, rate, (count.n - before) / max(ops, 1), compare))
    engine.dispose()
    return rows


def _pgbench(url: str, script: str, clients: int, seconds: float) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script.format(orgs=ORGS))
    dsn = normalize_database_url(url).replace("postgresql+psycopg://", "postgresql://")
    out = subprocess.run(["pgbench", "-n", "-M", "prepared", "-f", f.name, "-c", str(clients),
                          "-j", str(min(clients, os.cpu_count() or 1)), "-T", str(max(1, round(seconds))), dsn],
                         capture_output=True, text=True, check=True).stdout
    os.unlink(f.name)
    found = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    assert found, out
    return float(found.group(1))


def _raw_orgs(engine: Engine) -> None:
    with engine.begin() as conn:
        for i in range(1, ORGS + 1):
            conn.execute(text("INSERT INTO organizations (id, name, plan_code, invoice_seq, created_at) "
                              "VALUES (:id, 'raw', 'business', 0, :at)"), {"id": f"org_bench_{i}", "at": AT})


def postgres(base: str, clients: list[int], seconds: float) -> list[Row]:
    url = f"{base.rsplit('/', 1)[0]}/slotwise_bench_{os.getpid()}"
    admin = create_engine(normalize_database_url(base.rsplit("/", 1)[0] + "/postgres"), isolation_level="AUTOCOMMIT")
    name = url.rsplit("/", 1)[1]
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        engine = make_engine(url)
        Base.metadata.create_all(engine)
        _raw_orgs(engine)
        engine.dispose()
        rows = []
        for n in clients:
            rows.append(Row("PostgreSQL", "raw capacity check", n, _pgbench(url, RAW_CHECK, n, seconds), 3))
            rows.append(Row("PostgreSQL", "raw one-row lock", n, _pgbench(url, RAW_LOCK, n, seconds), 2))
        return rows + _slotwise_rows(url, "PostgreSQL", clients, seconds)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _raw_sqlite(path: Path, seconds: float, lock_only: bool) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("foreign_keys=ON", "journal_mode=WAL", "busy_timeout=30000"):
        conn.execute(f"PRAGMA {pragma}")
    n, stop = 0, time.monotonic() + seconds
    started = time.monotonic()
    while time.monotonic() < stop:
        org = f"org_bench_{n % ORGS + 1}"
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("SELECT id, plan_code FROM organizations WHERE id = ?", (org,)).fetchone()
        if lock_only:
            conn.execute("UPDATE organizations SET invoice_seq = invoice_seq + 1 WHERE id = ?", (org,))
        else:
            conn.execute("SELECT count(*) FROM agents WHERE org_id = ? AND archived_at IS NULL", (org,)).fetchone()
            conn.execute("INSERT INTO agents (id, org_id, name, archived_at, created_at) VALUES (?, ?, 'raw', NULL, ?)",
                         (f"agt_raw_{n}", org, "2026-11-15 09:00:00.000000"))
        conn.execute("COMMIT")
        n += 1
    conn.close()
    return n / (time.monotonic() - started)


def sqlite(seconds: float) -> list[Row]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        engine = make_engine(f"sqlite:///{path}")
        Base.metadata.create_all(engine)
        _raw_orgs(engine)
        engine.dispose()
        rows = [Row("SQLite", "raw capacity check", 1, _raw_sqlite(path, seconds, lock_only=False), 3),
                Row("SQLite", "raw one-row lock", 1, _raw_sqlite(path, seconds, lock_only=True), 2)]
        return rows + _slotwise_rows(f"sqlite:///{path}", "SQLite", [1], seconds)


def table(rows: list[Row]) -> str:
    lines = ["| database | operation | clients | ops/s | vs raw | SQL statements / op (besides BEGIN, COMMIT) |",
             "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        raw = next((r for r in rows if r.database == row.database and r.what == row.baseline
                    and r.clients == row.clients), None)
        ratio = f"{row.per_second / raw.per_second:.2f}× of {row.baseline}" if raw else "—"
        statements = f"{row.statements:.1f}" if row.statements is not None else "—"
        lines.append(f"| {row.database} | {row.what} | {row.clients} | {row.per_second:,.0f} | {ratio} | "
                     f"{statements} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--postgres", default=os.environ.get(
        "SLOTWISE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/slotwise_test"))
    args = parser.parse_args()
    rows = sqlite(args.seconds) + postgres(args.postgres, [1, 4], args.seconds)
    print(f"{datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, each figure over {args.seconds:g} s\n")
    print(table(rows))


if __name__ == "__main__":
    main()
