"""Webhook delivery throughput (issue 12): events delivered per second to a local receiver by 1 and 2
worker processes, against a floor measured in the same run.

A receiver process (a threading HTTP/1.1 server answering 200 at once) stands for the platform. On a
fresh database (PostgreSQL and SQLite), with one endpoint taking every type, ``--events`` events are
written across ``--orgs`` organizations (so there are streams for several workers to share) while
the workers idle; then the clock starts and stops when the last delivery is recorded ``delivered``.
Each request is signed, sent over a pooled keep-alive connection, and its attempt logged in its own
transaction, as in production.

The floor: the same receiver driven by bare ``httpx`` loops, one per worker, each in a process of its
own, posting a pre-signed body of the same size with no database at all. The ratio slotwise / floor
says what the outbox, the lease and the log cost over the HTTP round trip itself.

``python -m bench.webhooks [--events 2000] [--workers 1,2] [--backends postgresql,sqlite]``. Prints a
Markdown table. ``SLOTWISE_TEST_POSTGRES_URL`` (or the local server) says where to make the database.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select, text

from slotwise.clock import wall_now
from slotwise.config import normalize_database_url
from slotwise.db import make_engine, make_sessionmaker
from slotwise.models import Base, Organization, WebhookDelivery, new_id
from slotwise.services import events, webhook_delivery, webhook_endpoints
from slotwise.services.webhook_secrets import Sealer, new_signing_secret

SECRET_KEY = "bench-webhook-sealing-key-0123456789abcdef"
SERVER = os.environ.get("SLOTWISE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parents[1]


# --- the receiver, the floor's loop and the worker: each a process of its own ---------------------------

def receive(port: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK wait between

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


def bare_loop(url: str, count: int) -> None:
    """``count`` signed posts over one keep-alive client; prints its own elapsed seconds."""
    body = json.dumps({"id": "evt_0123456789abcdef", "type": "credits.low", "created_at": wall_now().isoformat(),
                       "organization": "org_0123456789abcdef", "data": {"n": 0}}, separators=(",", ":"))
    headers = webhook_delivery.headers([new_signing_secret()], msg_id="evt_0123456789abcdef", at=wall_now(),
                                       body=body)
    with httpx.Client(timeout=webhook_delivery.TIMEOUT) as client:
        client.post(url, content=body, headers=headers)  # the connection, made before the clock starts
        print("ready", flush=True)
        sys.stdin.readline()
        started = time.perf_counter()
        for _ in range(count):
            assert client.post(url, content=body, headers=headers).status_code == 200
        print(time.perf_counter() - started, flush=True)


def work(database: str) -> None:
    from slotwise.catalog import load_catalog
    from slotwise.clock import SystemClock
    from slotwise.gateway import SandboxGateway
    from slotwise.services.context import Env
    from slotwise.worker import Worker

    worker = Worker(make_sessionmaker(make_engine(database, concurrency=1)), clock=SystemClock(), handlers={},
                    env=Env(catalog=load_catalog(), gateway=SandboxGateway()), secret_key=SECRET_KEY)
    print("ready", flush=True)
    worker.run_forever(threading.Event(), poll=0.01)


def spawn(*args: str) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-m", "bench.webhooks", *args], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready", f"{args} did not start"
    return child


# --- the measurements ------------------------------------------------------------------------------------

def floor(url: str, events_count: int, workers: int) -> float:
    loops = [spawn("--bare", url, str(events_count // workers)) for _ in range(workers)]
    for loop in loops:
        assert loop.stdin is not None
        loop.stdin.write("go\n")
        loop.stdin.flush()
    elapsed = []
    for loop in loops:
        assert loop.stdout is not None
        elapsed.append(float(loop.stdout.readline()))
        loop.wait(30)
    return (events_count // workers) * workers / max(elapsed)


def fresh(backend: str, folder: Path, name: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{folder / (name + '.db')}"
    admin = create_engine(normalize_database_url(SERVER.rsplit("/", 1)[0] + "/postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'drop database if exists "{name}" with (force)'))
        conn.execute(text(f'create database "{name}"'))
    admin.dispose()
    return SERVER.rsplit("/", 1)[0] + "/" + name


def drop(backend: str, name: str) -> None:
    if backend == "postgresql":
        admin = create_engine(normalize_database_url(SERVER.rsplit("/", 1)[0] + "/postgres"),
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()


def delivered_per_second(database: str, url: str, *, events_count: int, orgs: int, workers: int) -> float:
    engine = make_engine(database)
    Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    now = wall_now()
    with sessions.begin() as db:
        webhook_endpoints.create(db, sealer=Sealer(SECRET_KEY), url=url, types=None, description=None, now=now)
        org_ids = [new_id("org") for _ in range(orgs)]
        db.add_all(Organization(id=o, name="Bench", plan_code="pro", created_at=now) for o in org_ids)
    running = [spawn("--work", database) for _ in range(workers)]
    try:
        with sessions.begin() as db:
            for i in range(events_count):
                events.emit(db, org_id=org_ids[i % orgs], type="credits.low", data={"n": i}, at=now)
        started = time.perf_counter()
        while True:
            with sessions.begin() as db:
                done = db.scalar(select(func.count()).where(WebhookDelivery.status == "delivered"))
            if done == events_count:
                return events_count / (time.perf_counter() - started)
            if time.perf_counter() - started > 600:
                raise RuntimeError(f"only {done} of {events_count} delivered in 10 minutes")
            time.sleep(0.005)
    finally:
        for worker in running:
            worker.kill()
            worker.wait(10)
        engine.dispose()


@dataclass
class Row:
    backend: str
    workers: int
    slotwise: float
    floor: float

    @property
    def ratio(self) -> float:
        return self.slotwise / self.floor


def table(rows: list[Row], events_count: int) -> str:
    lines = [f"Webhook deliveries, {events_count} events, events/s (higher is better)", "",
             "| backend | workers | slotwise delivered/s | bare httpx loop/s | ratio |", "|---|---|---|---|---|"]
    lines += [f"| {r.backend} | {r.workers} | {r.slotwise:,.0f} | {r.floor:,.0f} | {r.ratio:.2f}× |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--orgs", type=int, default=8)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--receive", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.receive is not None:
        return receive(args.receive)
    if args.bare:
        return bare_loop(args.bare[0], int(args.bare[1]))
    if args.work:
        return work(args.work)
    from bench.http import free_port

    port = free_port()
    receiver = spawn("--receive", str(port))
    url = f"http://127.0.0.1:{port}/hooks"
    rows = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            for backend in args.backends.split(","):
                for workers in [int(w) for w in args.workers.split(",")]:
                    name = f"slotwise_wh_bench_{os.getpid()}_{workers}"
                    database = fresh(backend, Path(folder), name)
                    try:
                        measured = delivered_per_second(database, url, events_count=args.events, orgs=args.orgs,
                                                        workers=workers)
                    finally:
                        drop(backend, name)
                    rows.append(Row(backend, workers, measured, floor(url, args.events, workers)))
    finally:
        receiver.kill()
        receiver.wait(10)
    print(table(rows, args.events))


if __name__ == "__main__":
    main()
