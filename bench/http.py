"""SPEC §10 over HTTP: slotwise's request path against the same server's cheapest routes.

For each worker count it starts two servers the same way — the bare FastAPI app (bench/bare_app.py:
one tiny JSON GET, one tiny JSON POST, no database) and `slotwise serve` on a fresh PostgreSQL
database — and loads each with `wrk` at the same number of keep-alive connections:

* bare `GET /ping` and slotwise `GET /v1/organizations/{org}` (the caller's token, the snapshot);
* bare `POST /things` and slotwise `POST /v1/organizations/{org}/agents` (the capacity check);
* slotwise `POST /v1/organizations/{org}/credits/spend` (a fresh reference each time), against the same
  server's cheapest authenticated route, `GET /v1/organizations/{org}` (SPEC §10, issue 9's goal);
* paid agents (SPEC §13, issue 11's goal), with the operator key, against that same route: the access
  check `POST /v1/agents/{agent}/access` and the visitor message `POST /v1/agents/{agent}/messages` (a
  fresh reference each time), each organization with a paid agent whose visitor holds a pass of
  1,000,000 messages, bought on its paywall. They get a table of their own.

slotwise (system clock) is seeded through its own API, and its requests rotate over at least one
business organization per connection, each with slots bought for every agent the run can create, so
connections contend for the database, not for one row; the hourly cap on slot changes is lifted.

Prints a Markdown table: requests per second, p50/p95/p99 latency, the ratio to the bare app at the
same worker count, how the connections landed on the workers (established sockets per worker
process, read from /proc mid-run) and how many answers were not 2xx. Run with `make bench`, or
`python -m bench.http --seconds 5 --workers 1,2`.

`--server uvicorn:LOOP:HTTP` runs both apps under plain `uvicorn --workers N` instead (what `slotwise
serve` did before slotwise.server), e.g. `uvicorn:asyncio:h11` for the "before" figures.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from slotwise.catalog import MAX_SLOTS_PER_ADDON, MAX_SLOTS_PER_CHANGE
from slotwise.config import normalize_database_url

PYTHON = sys.executable
SLOTWISE = str(Path(sys.executable).with_name("slotwise"))
ROOT = Path(__file__).resolve().parents[1]  # where bench.bare_app is imported from
GOOD_CARD = "4242424242424242"
MAX_CREATES_PER_SECOND = 4000  # capacity bought per organization assumes no faster creation than this
READY_SECONDS = 60.0
GOALS = {"GET": 0.33, "POST": 0.2,  # the issues' goals: slotwise vs bare at the same workers,
         "SPEND": 0.5,  # and the credit spend vs the same server's cheapest authenticated route,
         "ACCESS": 0.5, "MESSAGE": 0.5}  # as the paid agents' access check and visitor message
PAID = ("ACCESS", "MESSAGE")  # measured against GET of an organization, reported in a table of their own
PASS_MESSAGES = 1_000_000  # a pass's message credits (SPEC §13's most): the run never uses them up
CREDITS = 10**9  # top-up credits each organization gets for the visitor messages
P99_GOAL_MS = 50.0

# wrk rotates over prebuilt requests, one per organization; `done` prints one JSON line.
LUA = """
local specs = {specs}
local built = {{}}
local i = 0
init = function(args)
  for k, s in ipairs(specs) do
    built[k] = wrk.format(s[1], s[2], s[3], s[4])
  end
end
request = function()
  i = i + 1
  local k = (i % #built) + 1
  local s = specs[k]
  if s[5] then  -- a body with a fresh reference each time (a credit spend: a repeat would only replay)
    return wrk.format(s[1], s[2], s[3], string.format(s[5], i))
  end
  return built[k]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {{"requests": %d, "duration_us": %d, "p50": %.0f, "p95": %.0f, "p99": %.0f, "status_errors": %d, '
    .. '"socket_errors": %d}}\\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(95), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: str | None = None
    numbered: str | None = None  # a body with one %d, filled with the request's number (unique per run)


@dataclass
class Result:
    workers: int
    app: str  # "bare" or "slotwise"
    method: str  # "GET" or "POST"
    route: str
    run: Run


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal for ASCII text


def _lua_script(requests: list[Request]) -> str:
    def spec(r: Request) -> str:
        headers = ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in r.headers.items())
        body = _lua_string(r.body) if r.body is not None else "nil"
        numbered = _lua_string(r.numbered) if r.numbered is not None else "nil"
        return f"{{{_lua_string(r.method)}, {_lua_string(r.path)}, {{{headers}}}, {body}, {numbered}}}"

    return LUA.format(specs="{" + ", ".join(spec(r) for r in requests) + "}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            todo.extend(int(p) for p in Path(f"/proc/{current}/task/{current}/children").read_text().split())
    return found


def landed(port: int, root: int, workers: int) -> list[int]:
    """Established connections to ``port`` held by each process of the server (Linux /proc), busiest
    first; [] where /proc cannot tell."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 01: ESTABLISHED
                    inodes.add(fields[9])
    if not inodes:
        return []
    counts = []
    for pid in _descendants(root):
        n = 0
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    n += target.startswith("socket:[") and target[8:-1] in inodes
        counts.append(n)
    return sorted(counts, reverse=True)[:workers]


@dataclass
class ServerProcess:
    """One server (bare or slotwise) with ``workers`` worker processes on a free loopback port."""

    command: list[str]
    workers: int
    env: dict[str, str]
    log: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, probe: str) -> ServerProcess:
        self.port = free_port()
        command = [part.replace("{port}", str(self.port)) for part in self.command]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{command} exited: {self.log.read_text()[-3000:]}")
            # Every worker says so once its app is loaded; loading before that would skew the spread.
            started = self.log.read_text(errors="replace").count("Application startup complete")
            if started >= self.workers:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(self.base_url + probe, timeout=2).status_code < 500:
                        return self
            time.sleep(0.1)
        raise RuntimeError(f"{command} not ready in {READY_SECONDS:g}s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)
        self.process = None


@dataclass
class Run:
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    failed: int  # answers that were not 2xx, and socket errors
    landed: list[int]


def wrk(server: ServerProcess, requests: list[Request], *, seconds: float, connections: int) -> Run:
    """One wrk run (one thread: the cores are for the servers); the established connections per
    worker are read halfway through."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua_script(requests))
    try:
        run = subprocess.Popen(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", script.name,
             server.base_url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(max(0.5, seconds / 2))
        assert server.process is not None
        spread = landed(server.port, server.process.pid, server.workers)
        out, _ = run.communicate(timeout=seconds + 60)
    finally:
        os.unlink(script.name)
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    if run.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed: {out}")
    found = json.loads(line.removeprefix("WRK_JSON "))
    return Run(found["requests"] / (found["duration_us"] / 1e6), found["p50"] / 1000, found["p95"] / 1000,
               found["p99"] / 1000, found["status_errors"] + found["socket_errors"], spread)


@contextlib.contextmanager
def fresh_postgres(base: str) -> Iterator[str]:
    url = f"{base.rsplit('/', 1)[0]}/httpbench_{os.getpid()}"
    name = url.rsplit("/", 1)[1]
    admin = create_engine(normalize_database_url(base.rsplit("/", 1)[0] + "/postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Tenant:
    org_id: str
    token: str
    agent_id: str = ""  # a paid agent (SPEC §13)
    visitor_token: str = ""  # a pass on it

def seed(base_url: str, operator_key: str, *, orgs: int, slots: int) -> list[Tenant]:
    """Business organizations, each with ``slots`` agent slots bought (a card on file, the hourly cap
    lifted by the server's environment)."""
    tenants = []
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for n in range(orgs):
            made = client.post("/v1/operator/organizations", headers={"Authorization": f"Bearer {operator_key}"},
                               json={"name": f"Bench {n}", "owner_email": f"bench{n}@example.test",
                                     "plan": "business", "card_number": GOOD_CARD})
            made.raise_for_status()
            tenant = Tenant(made.json()["id"], made.json()["owner"]["api_token"])
            for _ in range(math.ceil(slots / MAX_SLOTS_PER_CHANGE)):
                client.post(f"/v1/organizations/{tenant.org_id}/addons/agent_slots/add",
                            headers={"Authorization": f"Bearer {tenant.token}"},
                            json={"quantity": MAX_SLOTS_PER_CHANGE}).raise_for_status()
            tenants.append(tenant)
    return tenants


def seed_paid(base_url: str, database_url: str, tenants: list[Tenant]) -> None:
    """Each organization gets a paid agent and a visitor's pass of ``PASS_MESSAGES`` messages, bought on
    its paywall with the sandbox's card, and ``CREDITS`` top-up credits (one ledger adjustment, so the
    books balance) for the messages to spend."""
    config = {"price": 999, "currency": "usd", "access_days": 30, "message_credits": PASS_MESSAGES}
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for n, tenant in enumerate(tenants):
            auth = {"Authorization": f"Bearer {tenant.token}"}
            made = client.post(f"/v1/organizations/{tenant.org_id}/agents", headers=auth, json={"name": "Paid"})
            made.raise_for_status()
            tenant.agent_id = made.json()["id"]
            client.put(f"/v1/organizations/{tenant.org_id}/agents/{tenant.agent_id}/access", headers=auth,
                       json={"mode": "paid", "paid": config}).raise_for_status()
            bought = client.post(f"/v1/agents/{tenant.agent_id}/checkout", json={
                "email": f"visitor{n}@example.test", "card_number": GOOD_CARD, "checkout": f"bench-{n}"})
            bought.raise_for_status()
            tenant.visitor_token = bought.json()["visitor_token"]
    engine = create_engine(normalize_database_url(database_url))
    try:
        with engine.begin() as conn:
            for tenant in tenants:
                conn.execute(text("update credit_accounts set topup_balance = topup_balance + :n where org_id = :o"),
                             {"n": CREDITS, "o": tenant.org_id})
                conn.execute(text("insert into credit_ledger (id, org_id, kind, plan_delta, topup_delta, playground,"
                                  " created_at) values (:id, :o, 'adjustment', 0, :n, false, now())"),
                             {"id": f"cre_bench{secrets.token_hex(10)}", "o": tenant.org_id, "n": CREDITS})
    finally:
        engine.dispose()


def commands(server: str, workers: int) -> tuple[list[str], list[str]]:
    """How to start the bare app and slotwise: through slotwise.server, or plain uvicorn."""
    if server == "serve":
        return ([PYTHON, "-m", "bench.bare_app", "--port", "{port}", "--workers", str(workers)],
                [SLOTWISE, "serve", "--port", "{port}", "--workers", str(workers)])
    _, loop, http = server.split(":")
    plain = [PYTHON, "-m", "uvicorn", "--port", "{port}", "--workers", str(workers), "--loop", loop, "--http", http,
             "--proxy-headers"]
    return [*plain, "bench.bare_app:app"], [*plain, "slotwise.asgi:app"]


def measure(*, postgres: str, workers_list: list[int], connections: int, seconds: float, server: str,
            folder: Path) -> list[Result]:
    results: list[Result] = []
    operator_key = secrets.token_urlsafe(16)
    creates = MAX_CREATES_PER_SECOND * max(1.0, seconds) * len(workers_list)
    orgs = max(connections, math.ceil(creates / MAX_SLOTS_PER_ADDON))
    slots = math.ceil(creates / orgs / MAX_SLOTS_PER_CHANGE) * MAX_SLOTS_PER_CHANGE
    with fresh_postgres(postgres) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTWISE_")}
        env.update(SLOTWISE_DATABASE_URL=url, SLOTWISE_OPERATOR_KEY=operator_key,
                   SLOTWISE_QUANTITY_CHANGES_PER_HOUR=str(10**9), PYTHONPATH=str(ROOT))
        subprocess.run([SLOTWISE, "migrate"], env=env, check=True, capture_output=True)
        tenants: list[Tenant] = []
        for workers in workers_list:
            bare_cmd, slotwise_cmd = commands(server, workers)
            bare = ServerProcess(bare_cmd, workers, env, folder / f"bare-{workers}.log").start("/ping")
            try:
                for method, path, body in (("GET", "/ping", None), ("DB", "/ping-db", None),
                                           ("POST", "/things", '{"name": "bench"}')):
                    headers = {"Content-Type": "application/json"} if body else {}
                    verb = "POST" if body else "GET"
                    run = wrk(bare, [Request(verb, path, headers, body)], seconds=seconds, connections=connections)
                    results.append(Result(workers, "bare", method, f"{verb} {path}", run))
            finally:
                bare.stop()
            slotwise = ServerProcess(slotwise_cmd, workers, env, folder / f"slotwise-{workers}.log").start("/v1/plans")
            try:
                if not tenants:
                    tenants = seed(slotwise.base_url, operator_key, orgs=orgs, slots=slots)
                    seed_paid(slotwise.base_url, url, tenants)
                auth = [{"Authorization": f"Bearer {t.token}"} for t in tenants]
                get = [Request("GET", f"/v1/organizations/{t.org_id}", a) for t, a in zip(tenants, auth, strict=True)]
                post = [Request("POST", f"/v1/organizations/{t.org_id}/agents",
                                {**a, "Content-Type": "application/json"}, '{"name": "bench"}')
                        for t, a in zip(tenants, auth, strict=True)]
                run_id = secrets.token_hex(4)
                spend = [Request("POST", f"/v1/organizations/{t.org_id}/credits/spend",
                                 {**a, "Content-Type": "application/json"},
                                 numbered=f'{{"activity": "tool", "reference": "{run_id}-%d"}}')
                         for t, a in zip(tenants, auth, strict=True)]
                operator = {"Authorization": f"Bearer {operator_key}", "Content-Type": "application/json"}
                access = [Request("POST", f"/v1/agents/{t.agent_id}/access", operator,
                                  json.dumps({"visitor_token": t.visitor_token})) for t in tenants]
                messages = [Request("POST", f"/v1/agents/{t.agent_id}/messages", operator, numbered=json.dumps(
                    {"visitor_token": t.visitor_token, "reference": f"{run_id}-msg-%d"})) for t in tenants]
                for method, route, requests in (("GET", "GET /v1/organizations/{org}", get),
                                                ("POST", "POST /v1/organizations/{org}/agents", post),
                                                ("SPEND", "POST /v1/organizations/{org}/credits/spend", spend),
                                                ("ACCESS", "POST /v1/agents/{agent}/access", access),
                                                ("MESSAGE", "POST /v1/agents/{agent}/messages", messages)):
                    results.append(Result(workers, "slotwise", method, route,
                                          wrk(slotwise, requests, seconds=seconds, connections=connections)))
            finally:
                slotwise.stop()
    return results


def table(results: list[Result], connections: int) -> str:
    lines = [f"| workers | app | route | req/s | p50 ms | p95 ms | p99 ms | vs bare | connections per worker "
             f"| not 2xx | goal ({connections} connections) |",
             "|---:|---|---|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in results:
        if r.method in PAID:
            continue  # paid_table
        # The spend is measured against the same server's cheapest authenticated route (SPEC §10).
        bare = next((b for b in results if b.workers == r.workers and (
            (b.app == "slotwise" and b.method == "GET") if r.method == "SPEND"
            else (b.app == "bare" and b.method == r.method))), None)
        run, ratio, goal = r.run, "—", ""
        if r.method == "SPEND" and bare is not None:
            share = run.per_second / bare.run.per_second
            ratio = f"{share:.2f}× of GET org"
            goal = f"≥ {GOALS[r.method]}× of GET org: {'met' if share >= GOALS[r.method] else 'not met'}"
        elif r.app == "slotwise" and bare is not None:
            share = run.per_second / bare.run.per_second
            ratio = f"{share:.2f}×"
            one_trip = next((b for b in results if b.workers == r.workers and b.method == "DB"), None)
            if r.method == "GET" and one_trip is not None:  # the same read's least cost: one round trip
                ratio += f" ({run.per_second / one_trip.run.per_second:.2f}× of bare + 1 round trip)"
            met = share >= GOALS[r.method] and run.p99_ms < P99_GOAL_MS
            goal = f"≥ {GOALS[r.method]}×, p99 < {P99_GOAL_MS:g} ms: {'met' if met else 'not met'}"
        spread = "/".join(str(n) for n in run.landed) or "?"
        lines.append(f"| {r.workers} | {r.app} | {r.route} | {run.per_second:,.0f} | {run.p50_ms:.1f} "
                     f"| {run.p95_ms:.1f} | {run.p99_ms:.1f} | {ratio} | {spread} | {run.failed} | {goal} |")
    return "\n".join(lines)


def paid_table(results: list[Result]) -> str:
    """The paid agents' hot routes (SPEC §13), each against the same server's `GET` of an organization
    in the same run (issue 11's goal: ≥ 0.5×)."""
    lines = ["| route | workers | req/s | p50 ms | p95 ms | p99 ms | vs GET org | not 2xx | goal |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if r.method not in PAID:
            continue
        get = next((b for b in results if b.workers == r.workers and b.app == "slotwise" and b.method == "GET"), None)
        run, ratio, goal = r.run, "—", ""
        if get is not None:
            share = run.per_second / get.run.per_second
            ratio = f"{share:.2f}×"
            goal = f"≥ {GOALS[r.method]}× of GET org: {'met' if share >= GOALS[r.method] else 'not met'}"
        lines.append(f"| {r.route} | {r.workers} | {run.per_second:,.0f} | {run.p50_ms:.1f} | {run.p95_ms:.1f} "
                     f"| {run.p99_ms:.1f} | {ratio} | {run.failed} | {goal} |")
    return "\n".join(lines)


def implementation(server: str) -> str:
    version = importlib.metadata.version("uvicorn")
    if server != "serve":
        _, loop, http = server.split(":")
        return f"plain uvicorn {version} --loop {loop} --http {http}"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"slotwise serve (uvicorn {version}, {loop}, {http})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk run")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure, e.g. 1,2")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--server", default="serve", help="serve, or uvicorn:LOOP:HTTP (e.g. uvicorn:asyncio:h11)")
    parser.add_argument("--postgres", default=os.environ.get(
        "SLOTWISE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/slotwise_test"))
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("bench.http needs wrk (Debian: apt-get install wrk; `make bench` installs it)")
    workers_list = [int(n) for n in args.workers.split(",")]
    load = os.getloadavg()[0]  # the cores are shared: figures taken under load are not comparable
    with tempfile.TemporaryDirectory(prefix="httpbench_") as folder:
        results = measure(postgres=args.postgres, workers_list=workers_list, connections=args.connections,
                          seconds=args.seconds, server=args.server, folder=Path(folder))
    print(f"{datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {implementation(args.server)}; wrk, 1 thread, "
          f"{args.connections} keep-alive connections, each figure over {max(1, round(args.seconds))} s; "
          f"slotwise on PostgreSQL; load average {load:.1f} at the start\n")
    print(table(results, args.connections))
    print("\nPaid agents (SPEC §13), with the operator key, against the same server's GET of an organization:\n")
    print(paid_table(results))


if __name__ == "__main__":
    main()
