"""The outbox's cost on the spend path (issue 12): the credit spend's ops/s without any webhook endpoint
and with an enabled one subscribed to ``credits.low``, reported as a ratio, on SQLite and PostgreSQL
(there also on the fast lane, which is what the server runs).

The spend is measured as ``bench/run.py`` measures "spend 1 credit" — the service function in
autocommit, on copies of one organization (``run.Organizations``), one client — in two kinds:

* **ordinary**: 1 credit from a balance far above the threshold; it crosses nothing, so the question
  is whether the outbox costs the common spend anything at all (it should not: on PostgreSQL the
  crossing's parts of the one statement run on no rows);
* **crossing**: every spend takes its organization from the threshold (100) to just below it, so it
  writes ``credits.low`` — and, with the endpoint, the delivery owed to it and the stream marked due,
  in the same statement (SQLite: the same rows by ``events.emit`` in the spend's transaction). Each
  organization is set at the threshold before the clock starts, and spent on once.

Prints a Markdown table for docs/BENCHMARKS.md; ``python -m bench.run`` prints it after its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

from bench import run
from slotwise.api.fastlane import Lane
from slotwise.config import normalize_database_url
from slotwise.db import make_engine, make_sessionmaker, transaction
from slotwise.models import Base, new_id
from slotwise.services import spend

THRESHOLD = 100  # the credit accounts' default auto-recharge threshold
LOW = "credits.low"
PATHS = ("service", "fast lane")
KINDS = ("ordinary", "crossing")


@dataclass(frozen=True)
class Figure:
    database: str
    path: str  # "service" (spend.spend through SQLAlchemy) or "fast lane" (api.fastlane, PostgreSQL)
    kind: str  # "ordinary" or "crossing"
    without: float  # ops/s with no endpoint
    with_endpoint: float  # ops/s with an enabled endpoint subscribed to credits.low
    events: int  # credits.low written while measured with the endpoint
    owed: int  # deliveries of them owed to the endpoint

    @property
    def ratio(self) -> float:
        return self.with_endpoint / self.without


def _request() -> spend.SpendRequest:
    return spend.SpendRequest(activity="tool", reference=new_id("ref"))  # 1 credit


def _spends(engine: Engine, path: str, org_of: Callable[[int], str], seconds: float) -> float:
    """Spends of 1 credit on ``org_of(k)`` for k = 0, 1, … for ``seconds``, one client; ops/s."""
    if path == "fast lane":
        return run.on_servers_loop(_lane_spends(engine, org_of, seconds))
    sessions = make_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT")
                                 if engine.dialect.name == "postgresql" else engine)
    k, started = 0, time.monotonic()
    while time.monotonic() < started + seconds:
        with transaction(sessions) as db:
            spend.spend(db.connection(), terms=run.ENV.catalog.credits, org_id=org_of(k), request=_request(),
                        at=run.AT, wall_now=run.AT)
        k += 1
    return k / (time.monotonic() - started)


async def _lane_spends(engine: Engine, org_of: Callable[[int], str], seconds: float) -> float:
    lane = Lane(engine.url.render_as_string(hide_password=False), size=1)
    await lane.open(wait=True)
    try:
        async with lane.connection() as conn:
            k, started = 0, time.monotonic()
            while time.monotonic() < started + seconds:
                await lane.spend(conn, catalog=run.ENV.catalog, org_id=org_of(k), request=_request(), at=run.AT,
                                 wall_now=run.AT)
                k += 1
            return k / (time.monotonic() - started)
    finally:
        await lane.close()


def _organizations(pool: run.Organizations, kind: str, seconds: float, guess: float) -> Callable[[int], str]:
    """Which organization the k-th spend is on: ``run.PER_ORG`` spends each (ordinary), or one each, set
    at the threshold (crossing); enough fresh copies for ``seconds`` at twice ``guess`` ops/s."""
    per_org = run.PER_ORG if kind == "ordinary" else 1
    count = int(2 * guess * seconds / per_org) + 2
    first = pool.take(count)
    orgs = [pool.actor(first + i).org_id for i in range(count)]
    if kind == "crossing":
        with pool.engine.begin() as conn:
            conn.execute(text("UPDATE credit_accounts SET plan_balance = 0, topup_balance = :t, "
                              "recharge_threshold = :t WHERE org_id >= :a AND org_id <= :b"),
                         {"t": THRESHOLD, "a": orgs[0], "b": orgs[-1]})

    def org_of(k: int) -> str:
        if k // per_org >= count:
            raise run.OutOfOrganizations
        return orgs[k // per_org]
    return org_of


def _measured(pool: run.Organizations, path: str, kind: str, seconds: float, guess: float) -> float:
    while True:
        try:
            return _spends(pool.engine, path, _organizations(pool, kind, seconds, guess), seconds)
        except run.OutOfOrganizations:
            guess *= 2


def _endpoint(engine: Engine, enabled: bool) -> None:
    """No endpoint, or one enabled endpoint subscribed to ``credits.low`` only."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM webhook_streams"))
        conn.execute(text("DELETE FROM webhook_deliveries"))
        conn.execute(text("DELETE FROM webhook_endpoints"))
        if enabled:
            now = datetime.now(UTC)
            conn.execute(text(
                "INSERT INTO webhook_endpoints (id, url, event_types, enabled, secret_sealed, created_at, updated_at)"
                " VALUES (:id, 'http://127.0.0.1:9/bench', :types, true, 'sealed', :now, :now)"),
                {"id": new_id("we"), "types": json.dumps([LOW]), "now": now})


def _counted(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        events = conn.execute(text("SELECT count(*) FROM events WHERE type = :t"), {"t": LOW}).scalar_one()
        owed = conn.execute(text("SELECT count(*) FROM webhook_deliveries")).scalar_one()
    return int(events), int(owed)


def figures(database: str, engine: Engine, seconds: float, rounds: int = 3) -> list[Figure]:
    """Each path and kind without, then with the endpoint, ``rounds`` times in turn (a shared machine's
    load falls on both alike), on fresh organizations; the medians, and what the last round with the
    endpoint wrote."""
    pool = run.Organizations(engine)
    paths = PATHS if engine.dialect.name == "postgresql" else PATHS[:1]
    found = []
    for path in paths:
        for kind in KINDS:
            without, with_endpoint = [], []
            for _ in range(rounds):
                _endpoint(engine, enabled=False)
                without.append(_measured(pool, path, kind, seconds, run.GUESS["slotwise"]))
                _endpoint(engine, enabled=True)
                before, _ = _counted(engine)
                with_endpoint.append(_measured(pool, path, kind, seconds, run.GUESS["slotwise"]))
                events, owed = _counted(engine)
            found.append(Figure(database, path, kind, statistics.median(without), statistics.median(with_endpoint),
                                events - before, owed))
    _endpoint(engine, enabled=False)
    return found


def sqlite(seconds: float, rounds: int = 3) -> list[Figure]:
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'outbox.db'}")
        Base.metadata.create_all(engine)
        try:
            return figures("SQLite", engine, seconds, rounds)
        finally:
            engine.dispose()


def postgres(base: str, seconds: float, rounds: int = 3) -> list[Figure]:
    server = normalize_database_url(base).rsplit("/", 1)[0]
    name = f"outboxbench_{os.getpid()}"
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(f"{server}/{name}", pool_size=4)
    try:
        Base.metadata.create_all(engine)
        return figures("PostgreSQL", engine, seconds, rounds)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def table(rows: Sequence[Figure]) -> str:
    lines = ["| database | spend | kind | ops/s, no endpoint | ops/s, endpoint on credits.low | with ÷ without "
             "| credits.low written, owed |",
             "|---|---|---|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row.database} | {row.path} | {row.kind} | {row.without:,.0f} | {row.with_endpoint:,.0f} "
                     f"| {row.ratio:.2f}× | {row.events:,}, {row.owed:,} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get(
        "SLOTWISE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/slotwise_test"))
    args = parser.parse_args()
    print(f"{datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"each figure the median of {args.rounds} runs of {args.seconds:g} s, 1 client\n")
    print(table(sqlite(args.seconds, args.rounds) + postgres(args.postgres, args.seconds, args.rounds)))


if __name__ == "__main__":
    main()
