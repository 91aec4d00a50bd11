"""SPEC §10: the renewal sweep against the database's own pace, on the same data in the same run.

N organizations come due at once — most plain, some with add-ons, a few with declined cards, scheduled
downgrades, slot removals or a cancellation — seeded once, then copied fresh for each measurement:

* **floor**: the same renewal invoices and their lines, and the credits of the renewed periods (the
  unused plan credits' expiry and the refill in the ledger, the accounts refilled), written by one
  set-based SQL statement (PostgreSQL: ``INSERT … SELECT`` through data-modifying CTEs; SQLite: four
  statements), in one transaction. It writes less than the sweep does (no charges, no subscription,
  organization or add-on updates, every period refilled as if paid), so the ratios are conservative.
* ``slotwise billing run``: one process, then two at once on a fresh copy: renewals per second over
  the processes' wall time (startup included), the ratio to the floor, each process's peak RSS, SQL
  statements sent per organization (an executemany counts once), and how the renewals split.
* ``slotwise doctor`` on the database the single process swept.

Every run is checked: each due period billed exactly once, nothing due left, the doctor clean (it
runs after each, and is timed after the first).
``python -m bench.sweep --orgs 100000 --workers 1,2 [--database postgresql|sqlite|both] [--free N]``: ``--free``
adds N free organizations whose monthly credit refill comes due with the renewals (refilled set-based
by the sweep; the floor does not write them, so the ratio then understates the sweep).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, event, text

from slotwise.catalog import load_catalog
from slotwise.config import normalize_database_url
from slotwise.db import make_engine
from slotwise.gateway import SandboxGateway
from slotwise.models import Base, UTCDateTime
from slotwise.periods import add_months, period_at_index
from slotwise.services.context import Env
from slotwise.services.invoices import LineDraft, line_description
from slotwise.services.renewals import renewal_lines

ANCHOR = datetime(2026, 1, 10, 6, tzinfo=UTC)  # the organizations' anchors spread over the next day
AT = add_months(ANCHOR, 2) + timedelta(days=1, hours=1)  # every second period has ended by then
CATALOG = load_catalog()
ENV = Env(catalog=CATALOG, gateway=SandboxGateway())  # for renewal_lines: nothing is charged while seeding
SEED_CHUNK = 2000
POSTGRES = os.environ.get("SLOTWISE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TABLES = ("organizations", "users", "agents", "subscriptions", "org_addons", "invoices", "invoice_lines", "charges",
          "credit_accounts", "credit_ledger")
LEDGER_COLUMNS = [c.name for c in Base.metadata.tables["credit_ledger"].columns]


# --- the data: N organizations in their second period, all ending within one day -----------------

@dataclass
class Slots:
    addon_code: str
    active_slots: int
    unit_price: int


def _org_rows(i: int, n: int, rng: random.Random, out: dict[str, list[dict[str, Any]]]) -> bool:
    """One organization's rows; True if its renewal is due (not canceled at the end of its period)."""
    anchor = ANCHOR + timedelta(seconds=86_400 * i // n)
    plan = CATALOG.plan(rng.choices(["starter", "pro", "business"], [3, 5, 2])[0])
    org, sub, card = f"org_{rng.getrandbits(64):016x}", f"sub_{rng.getrandbits(64):016x}", "ok"
    active = {}
    if rng.random() < 0.25:
        active["agent_slots"] = rng.randint(1, 5)
    if plan.teams and rng.random() < 0.10:
        active["member_slots"] = rng.randint(1, 3)
    renewal, scheduled, roll = dict(active), None, rng.random()
    if roll < 0.03:
        card = "card_declined"
    elif roll < 0.08 and active:  # slots scheduled for removal, some down to none
        code = rng.choice(sorted(active))
        renewal[code] = rng.randint(0, active[code] - 1)
    elif roll < 0.13 and plan.code != "starter":  # a downgrade scheduled for renewal
        scheduled = "starter" if plan.code == "pro" else "pro"
        if scheduled == "starter" and "member_slots" in renewal:
            renewal["member_slots"] = 0  # starter has no teams: removed before the downgrade was allowed
    elif roll < 0.14:  # back to free at renewal: no renewal invoice
        scheduled, renewal = "free", dict.fromkeys(active, 0)
    out["organizations"].append({"id": org, "name": f"Bench {i}", "plan_code": plan.code, "invoice_seq": 2,
                                 "card_token": f"sandbox:{card}:{i:012x}", "card_brand": "visa",
                                 "card_last4": "0002" if card != "ok" else "4242", "created_at": anchor})
    out["users"].append({"id": f"usr_{rng.getrandbits(64):016x}", "org_id": org, "email": f"owner{i}@bench.test",
                         "email_key": f"owner{i}@bench.test", "name": "Owner", "role": "owner",
                         "password_hash": None, "created_at": anchor})
    if i % 2:
        out["agents"].append({"id": f"agt_{rng.getrandbits(64):016x}", "org_id": org, "name": "Helpdesk",
                              "archived_at": None, "created_at": anchor})
    first, second = period_at_index(anchor, 0), period_at_index(anchor, 1)
    out["subscriptions"].append({"id": sub, "org_id": org, "plan_code": plan.code, "plan_price": plan.price,
                                 "currency": "usd", "status": "active", "anchor_at": anchor, "period_index": 1,
                                 "period_start": second.start, "period_end": second.end,
                                 "scheduled_plan_code": scheduled, "created_at": anchor, "canceled_at": None})
    for code, quantity in active.items():
        out["org_addons"].append({"org_id": org, "addon_code": code, "active_slots": quantity,
                                  "renewal_slots": renewal[code], "unit_price": CATALOG.addon(code).price_per_slot,
                                  "currency": "usd", "updated_at": second.start})
    invoice_ids = [f"inv_{rng.getrandbits(64):016x}" for _ in range(2)]
    _credit_rows(out, org, i, rng, allowance=plan.credits or 0, since=second.start, refills_at=second.end,
                 invoice_id=invoice_ids[1])
    price = plan.price or 0
    opening = [LineDraft("plan", plan.code, line_description(f"{plan.name} plan", None, first, first.days, first.start),
                         1, price, price, first, first.days, first.days)]
    slots = [Slots(code, q, CATALOG.addon(code).price_per_slot) for code, q in active.items()]
    for number, (kind, period, lines) in enumerate(
            [("subscription", first, opening), ("renewal", second, renewal_lines(ENV, plan, slots, second))], 1):
        _paid_invoice(out, org, sub, number, kind, period.index, lines, rng, invoice_ids[number - 1])
    return scheduled != "free"


def _credit_rows(out: dict[str, list[dict[str, Any]]], org: str, i: int, rng: random.Random, *, allowance: int,
                 since: datetime, refills_at: datetime, invoice_id: str | None) -> None:
    """The organization's credit account in its current period, and the ledger entries it is the sum
    of: the period's refill, some top-up credits for one in five, some of the allowance spent."""
    topup = 1000 * rng.randint(1, 3) if rng.random() < 0.2 else 0
    used = rng.randint(0, allowance)
    entries = [("topup", 0, topup, None), ("refill", allowance, 0, invoice_id), ("spend", -used, 0, None)]
    for k, (kind, plan_delta, topup_delta, invoice) in enumerate(entries):
        if plan_delta or topup_delta:
            out["credit_ledger"].append({
                **dict.fromkeys(LEDGER_COLUMNS), "id": f"cre_{rng.getrandbits(64):016x}", "org_id": org, "kind": kind,
                "plan_delta": plan_delta, "topup_delta": topup_delta, "playground": False, "invoice_id": invoice,
                "reference": f"seed-{i}" if kind == "spend" else None, "cost": used if kind == "spend" else None,
                "created_at": since + timedelta(seconds=k)})
    out["credit_accounts"].append({
        "org_id": org, "plan_balance": allowance - used, "topup_balance": topup, "plan_allowance": allowance,
        "period_start": since, "refills_at": refills_at, "used_in_period": used, "last_from_plan": 0,
        "recharge_enabled": False, "recharge_threshold": 100, "recharge_max_per_period": 1, "recharges_in_period": 0,
        "recharge_failures": 0, "updated_at": since})


def _free_org_rows(i: int, n: int, rng: random.Random, out: dict[str, list[dict[str, Any]]]) -> None:
    """A free organization whose monthly refill comes due with the renewals: created within the month
    before ``ANCHOR`` (the 31st among them: refilled on the last day of shorter months)."""
    created = ANCHOR - timedelta(days=31) + timedelta(seconds=31 * 86_400 * i // n)
    org = f"org_{rng.getrandbits(64):016x}"
    out["organizations"].append({"id": org, "name": f"Free {i}", "plan_code": "free", "invoice_seq": 0,
                                 "card_token": f"sandbox:ok:f{i:011x}", "card_brand": "visa", "card_last4": "4242",
                                 "created_at": created})
    out["users"].append({"id": f"usr_{rng.getrandbits(64):016x}", "org_id": org, "email": f"free{i}@bench.test",
                         "email_key": f"free{i}@bench.test", "name": "Owner", "role": "owner",
                         "password_hash": None, "created_at": created})
    _credit_rows(out, org, n + i, rng, allowance=CATALOG.plan("free").credits or 0, since=add_months(created, 1),
                 refills_at=add_months(created, 2), invoice_id=None)


def _paid_invoice(out: dict[str, list[dict[str, Any]]], org: str, sub: str, number: int, kind: str, index: int,
                  lines: list[LineDraft], rng: random.Random, invoice: str) -> None:
    total, at = sum(line.amount for line in lines), lines[0].period.start
    out["invoices"].append({"id": invoice, "org_id": org, "number": number, "subscription_id": sub, "kind": kind,
                            "billing_key": f"period:{sub}:{index}", "period_start": at,
                            "period_end": lines[0].period.end, "currency": "usd", "total": total, "status": "paid",
                            "created_at": at, "paid_at": at, "attempt_count": 1, "next_retry_at": None})
    for position, line in enumerate(lines, 1):
        out["invoice_lines"].append({
            "id": f"il_{rng.getrandbits(64):016x}", "invoice_id": invoice, "org_id": org, "position": position,
            "kind": line.kind, "code": line.code, "description": line.description, "quantity": line.quantity,
            "unit_price": line.unit_price, "amount": line.amount, "period_start": line.period.start,
            "period_end": line.period.end, "days_left": line.days_left, "days_in_period": line.days_in_period})
    out["charges"].append({"id": f"ch_{rng.getrandbits(64):016x}", "org_id": org, "invoice_id": invoice,
                           "amount": total, "currency": "usd", "status": "succeeded", "failure_code": None,
                           "gateway_reference": f"ch_seed_{invoice}", "created_at": at})


def seed(url: str, orgs: int, free: int = 0) -> int:
    """Create the schema, the ``orgs`` subscribed organizations and ``free`` free ones, each with its
    credit account and ledger; returns how many renewals are due at ``AT`` (every free organization's
    refill is due too)."""
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    rng, due = random.Random(20261128), 0
    with engine.begin() as conn:
        conn.execute(Base.metadata.tables["clock_state"].insert(), {"id": 1, "now": AT})
    for start in range(0, orgs + free, SEED_CHUNK):
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for i in range(start, min(orgs + free, start + SEED_CHUNK)):
            if i < orgs:
                due += _org_rows(i, orgs, rng, rows)
            else:
                _free_org_rows(i - orgs, free, rng, rows)
        with engine.begin() as conn:
            for table in TABLES:
                if rows[table]:
                    conn.execute(Base.metadata.tables[table].insert(), rows[table])
    engine.dispose()
    return due


# --- databases: a seeded template, copied fresh for each measurement -----------------------------

@dataclass
class Databases:
    kind: str  # postgresql | sqlite
    folder: Path
    made: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "PostgreSQL" if self.kind == "postgresql" else "SQLite"

    def url(self, name: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.folder / name}.db"
        return f"{POSTGRES.rsplit('/', 1)[0]}/{name}"

    def _admin(self) -> Engine:
        return create_engine(normalize_database_url(self.url("postgres")), isolation_level="AUTOCOMMIT")

    def create(self, name: str) -> str:
        self.made.append(name)
        if self.kind == "postgresql":
            with self._admin().connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        return self.url(name)

    def settle(self, name: str) -> None:
        """Statistics for the planner, as a live database has them."""
        if self.kind == "postgresql":
            engine = create_engine(normalize_database_url(self.url(name)), isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(text("VACUUM ANALYZE"))
            engine.dispose()

    def copy(self, template: str, name: str) -> str:
        self.made.append(name)
        if self.kind == "sqlite":
            shutil.copyfile(self.folder / f"{template}.db", self.folder / f"{name}.db")
        else:
            with self._admin().connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        return self.url(name)

    def drop_all(self) -> None:
        if self.kind == "postgresql":
            with self._admin().connect() as conn:
                for name in self.made:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- the floor -----------------------------------------------------------------------------------

PRICES = "prices(code, price, name, credits) AS (VALUES {})".format(", ".join(
    f"('{c}', {p.price or 0}, '{p.name}', {p.credits or 0})" for c, p in CATALOG.plans.items() if p.price is not None
) + ", " + ", ".join(f"('{c}', {a.price_per_slot}, '{a.name}', 0)" for c, a in CATALOG.addons.items()))
DUE = """due AS (
  SELECT s.id AS sub_id, s.org_id, o.invoice_seq, s.currency, s.period_index, s.period_end AS starts,
         coalesce(s.scheduled_plan_code, s.plan_code) AS plan, {ends} AS ends
  FROM subscriptions s JOIN organizations o ON o.id = s.org_id
  WHERE s.status = 'active' AND s.period_end <= :at AND coalesce(s.scheduled_plan_code, s.plan_code) <> 'free')"""
ADDONS = """addons AS (
  SELECT d.sub_id, a.addon_code, a.renewal_slots AS quantity, c.price, c.name,
         row_number() OVER (PARTITION BY d.sub_id ORDER BY a.addon_code) + 1 AS position
  FROM due d JOIN org_addons a ON a.org_id = d.org_id AND a.renewal_slots > 0 JOIN prices c ON c.code = a.addon_code)"""
INVOICES = """INSERT INTO invoices (id, org_id, number, subscription_id, kind, billing_key, period_start, period_end,
                      currency, total, status, created_at, paid_at, attempt_count, next_retry_at)
  SELECT {inv_id}, d.org_id, d.invoice_seq + 1, d.sub_id, 'renewal',
         'period:' || d.sub_id || ':' || (d.period_index + 1), d.starts, d.ends, d.currency,
         p.price + coalesce(x.amount, 0), 'paid', d.starts, d.starts, 1, NULL
  FROM due d JOIN prices p ON p.code = d.plan
  LEFT JOIN (SELECT sub_id, sum(quantity * price) AS amount FROM addons GROUP BY sub_id) x ON x.sub_id = d.sub_id"""
LINES = """INSERT INTO invoice_lines (id, invoice_id, org_id, position, kind, code, description, quantity, unit_price,
                           amount, period_start, period_end, days_left, days_in_period)
  SELECT {line_id}, i.id, i.org_id, 1, 'plan', p.code, p.name || ' plan, ' || {span}, 1, p.price, p.price,
         i.period_start, i.period_end, {days}, {days}
  FROM {invoices} i JOIN due d ON d.sub_id = i.subscription_id JOIN prices p ON p.code = d.plan
  UNION ALL
  SELECT {line_id}, i.id, i.org_id, x.position, 'addon', x.addon_code, x.name || ' × ' || x.quantity || ', ' || {span},
         x.quantity, x.price, x.quantity * x.price, i.period_start, i.period_end, {days}, {days}
  FROM {invoices} i JOIN addons x ON x.sub_id = i.subscription_id"""
# The credits of each renewed period: the unused plan credits expire, the allowance is granted (two
# ledger entries), the account is refilled.
CREDITS = """credit AS (
  SELECT i.org_id, a.plan_balance, a.topup_balance, p.credits, i.id AS invoice_id, i.period_start, i.period_end
  FROM {invoices} i JOIN credit_accounts a ON a.org_id = i.org_id JOIN due d ON d.sub_id = i.subscription_id
  JOIN prices p ON p.code = d.plan)"""
ENTRIES = """INSERT INTO credit_ledger (id, org_id, kind, plan_delta, topup_delta, playground, invoice_id, plan_after,
                           topup_after, created_at)
  SELECT {entry_id}, org_id, 'expiry', -plan_balance, 0, false, NULL, 0, topup_balance, period_start
  FROM credit WHERE plan_balance > 0
  UNION ALL
  SELECT {entry_id}, org_id, 'refill', credits, 0, false, invoice_id, credits, topup_balance, period_start
  FROM credit"""
REFILLED = """UPDATE credit_accounts SET plan_balance = c.credits, plan_allowance = c.credits,
    period_start = c.period_start, refills_at = c.period_end, used_in_period = 0, recharges_in_period = 0,
    updated_at = c.period_start
  FROM credit c WHERE credit_accounts.org_id = c.org_id"""
POSTGRES_FLOOR = [  # one statement: the invoices, the lines of what it inserted, their credits
    f"""WITH {PRICES}, {DUE.format(ends="s.anchor_at + (s.period_index + 2) * interval '1 month'")}, {ADDONS},
inserted AS ({INVOICES.format(inv_id="'inv_' || substr(md5(random()::text), 1, 16)")}
             RETURNING id, org_id, subscription_id, period_start, period_end),
lines AS ({LINES.format(line_id="'il_' || substr(md5(random()::text), 1, 16)", invoices="inserted",
                        span="to_char(i.period_start, 'Mon FMDD') || ' – ' || to_char(i.period_end, 'Mon FMDD')",
                        days="(i.period_end::date - i.period_start::date)")}),
{CREDITS.format(invoices="inserted")},
entries AS ({ENTRIES.format(entry_id="'cre_' || substr(md5(random()::text), 1, 16)")})
{REFILLED}"""]
SQLITE_FLOOR = [  # no RETURNING in a CTE: the invoices, then the lines of the invoices created since the due date
    f"""WITH {PRICES}, {DUE.format(ends="datetime(s.anchor_at, '+' || (s.period_index + 2) || ' months')")}, {ADDONS}
{INVOICES.format(inv_id="'inv_' || lower(hex(randomblob(8)))")}""",
    f"""WITH {PRICES}, {DUE.format(ends="NULL")}, {ADDONS},
new AS (SELECT * FROM invoices WHERE kind = 'renewal' AND created_at >= :since)
{LINES.format(line_id="'il_' || lower(hex(randomblob(8)))", invoices="new",
              span="date(i.period_start) || ' – ' || date(i.period_end)",
              days="CAST(julianday(date(i.period_end)) - julianday(date(i.period_start)) AS INTEGER)")}""",
    f"""WITH {PRICES}, {DUE.format(ends="NULL")},
new AS (SELECT * FROM invoices WHERE kind = 'renewal' AND created_at >= :since), {CREDITS.format(invoices="new")}
{ENTRIES.format(entry_id="'cre_' || lower(hex(randomblob(8)))")}""",
    f"""WITH {PRICES}, {DUE.format(ends="NULL")},
new AS (SELECT * FROM invoices WHERE kind = 'renewal' AND created_at >= :since), {CREDITS.format(invoices="new")}
{REFILLED}""",
]
INSTANTS = (bindparam("at", type_=UTCDateTime()), bindparam("since", type_=UTCDateTime()))


def floor(url: str, database: str) -> tuple[float, int]:
    """Seconds to write the due renewal invoices and their lines set-based, and how many invoices."""
    engine = make_engine(url)
    count = text("SELECT count(*) FROM invoices WHERE kind = 'renewal'")
    with engine.connect() as conn:
        before = int(conn.scalar(count) or 0)
        conn.rollback()
        started = time.monotonic()
        with conn.begin():
            if database == "postgresql":
                conn.execute(text("SET LOCAL TIME ZONE 'UTC'"))
            for statement in POSTGRES_FLOOR if database == "postgresql" else SQLITE_FLOOR:
                used = [p for p in INSTANTS if f":{p.key}" in statement]
                conn.execute(text(statement).bindparams(*used), {"at": AT, "since": add_months(ANCHOR, 2)})
        seconds = time.monotonic() - started
        written = int(conn.scalar(count) or 0) - before
    engine.dispose()
    return seconds, written


# --- slotwise, as separate processes -------------------------------------------------------------

@dataclass
class Run:
    seconds: float
    renewed: list[int]  # per process
    rss_mb: list[float]  # peak, per process
    statements: int
    exit_codes: list[int]


def _cli(url: str, args: list[str], folder: Path, k: int) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """``slotwise <args>`` in a process of its own (``--as-cli`` adds a statement counter and reports
    the process's peak RSS)."""
    stats, out = folder / f"stats{k}.json", folder / f"out{k}.json"
    stats.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTWISE_")}
    env.update(SLOTWISE_DATABASE_URL=url, SLOTWISE_CLOCK="simulated", SWEEPBENCH_STATS=str(stats))
    with out.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "bench.sweep", "--as-cli", *args], env=env, stdout=sink,
                                   cwd=Path(__file__).resolve().parent.parent)
    return process, stats, out


def run_cli(url: str, args: list[str], processes: int, folder: Path) -> Run:
    started = time.monotonic()
    children = [_cli(url, args, folder, k) for k in range(processes)]
    codes = [process.wait() for process, _, _ in children]
    seconds = time.monotonic() - started
    renewed, rss, statements = [], [], 0
    for _, stats, out in children:
        try:
            renewed.append(len(json.loads(out.read_text())["renewed"]))
        except (ValueError, KeyError):
            renewed.append(0)  # not a billing run, or it failed (the exit code says)
        counted = json.loads(stats.read_text()) if stats.exists() else {"statements": 0, "peak_rss_kb": 0}
        statements += counted["statements"]
        rss.append(counted["peak_rss_kb"] / 1024)
    return Run(seconds, renewed, rss, statements, codes)


def _peak_rss_kb() -> int:
    """VmHWM: this process image's peak resident set (getrusage would count the parent's pages
    from before exec too)."""
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))


def _as_cli(args: list[str]) -> None:
    count = [0]

    def counted(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT")):
            count[0] += 1

    def report() -> None:
        stats = {"statements": count[0], "peak_rss_kb": _peak_rss_kb()}
        Path(os.environ["SWEEPBENCH_STATS"]).write_text(json.dumps(stats))

    event.listen(Engine, "before_cursor_execute", counted)
    atexit.register(report)
    from slotwise.cli import main as slotwise

    slotwise(args, prog_name="slotwise")


# --- checks and the report -----------------------------------------------------------------------

def check_billed_once(url: str, orgs: int, due: int) -> None:
    """Each due period billed exactly once, none left due, no credit refill left due."""
    engine = make_engine(url)
    with engine.connect() as conn:
        renewals, keys = conn.execute(text(
            "SELECT count(*), count(DISTINCT billing_key) FROM invoices WHERE kind = 'renewal'")).one()
        left = conn.scalar(text("SELECT count(*) FROM subscriptions WHERE status IN ('active', 'past_due') "
                                "AND period_end <= :at").bindparams(INSTANTS[0]), {"at": AT})
        unrefilled = conn.scalar(text("SELECT count(*) FROM credit_accounts WHERE refills_at <= :at")
                                 .bindparams(INSTANTS[0]), {"at": AT})
    engine.dispose()
    assert renewals == keys == orgs + due, (renewals, keys, orgs + due)
    assert left == 0, left
    assert unrefilled == 0, unrefilled


@dataclass
class Row:
    database: str
    orgs: int
    what: str
    workers: int
    seconds: float
    renewals: int | None = None
    rss_mb: float | None = None
    statements: float | None = None
    split: str = ""
    floor: float | None = None  # renewals per second of the floor of the same run

    @property
    def rate(self) -> float | None:
        return self.renewals / self.seconds if self.renewals is not None else None


def measure(database: str, orgs: int, workers: list[int], folder: Path, free: int = 0) -> list[Row]:
    dbs = Databases(database, folder)
    tag = f"sweepbench_{os.getpid()}_{orgs}"
    try:
        template = f"{tag}_seed"
        due = seed(dbs.create(template), orgs, free)
        dbs.settle(template)
        url = dbs.copy(template, f"{tag}_floor")
        seconds, written = floor(url, database)
        assert written == due, (written, due)
        statements = len(POSTGRES_FLOOR if database == "postgresql" else SQLITE_FLOOR)
        rows = [Row(dbs.label, orgs, f"floor: set-based SQL, {statements} statement(s) (invoices, lines, credits)", 1,
                    seconds, written)]
        for n in workers:
            url = dbs.copy(template, f"{tag}_w{n}")
            run = run_cli(url, ["billing", "run"], n, folder)
            assert run.exit_codes == [0] * n, run.exit_codes
            assert sum(run.renewed) == due, (run.renewed, due)
            check_billed_once(url, orgs, due)
            rows.append(Row(dbs.label, orgs, "slotwise billing run", n, run.seconds, due, max(run.rss_mb),
                            run.statements / orgs, " / ".join(map(str, run.renewed)), rows[0].rate))
            doctor = run_cli(url, ["doctor"], 1, folder)  # after every run; its figures once
            assert doctor.exit_codes == [0], (folder / "out0.json").read_text()[-2000:]
            if n == workers[0]:
                rows.append(Row(dbs.label, orgs, "slotwise doctor", 1, doctor.seconds, None, doctor.rss_mb[0],
                                doctor.statements / orgs))
        return rows
    finally:
        dbs.drop_all()


def table(rows: list[Row]) -> str:
    lines = ["| database | organizations | run | processes | seconds | renewals/s | vs floor | peak RSS (MB) "
             "| statements / org | renewals per process |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        rate = f"{row.rate:,.0f}" if row.rate is not None else "—"
        ratio = f"{row.rate / row.floor:.2f}×" if row.rate is not None and row.floor else "—"
        rss = f"{row.rss_mb:.0f}" if row.rss_mb is not None else "—"
        statements = f"{row.statements:.3f}" if row.statements is not None else "—"
        lines.append(f"| {row.database} | {row.orgs:,} | {row.what} | {row.workers} | {row.seconds:.1f} | {rate} "
                     f"| {ratio} | {rss} | {statements} | {row.split or '—'} |")
    return "\n".join(lines)


@contextmanager
def _scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sweepbench_") as folder:
        yield Path(folder)


def main() -> None:
    if sys.argv[1:2] == ["--as-cli"]:
        _as_cli(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orgs", type=int, default=10_000)
    parser.add_argument("--workers", default="1,2", help="processes per run, comma-separated")
    parser.add_argument("--database", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("--free", type=int, default=0, help="free organizations due for their credit refill")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    rows = []
    with _scratch() as folder:
        for database in ("sqlite", "postgresql"):
            if args.database in (database, "both"):
                rows += measure(database, args.orgs, workers, folder, args.free)
    print(f"{datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
