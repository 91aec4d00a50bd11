"""A real HTTP receiver for webhook tests, and a wall clock the test moves.

The receiver is a threading HTTP server on a free loopback port. It records every request (headers,
body, when) and answers from a script: a status per request in order (then 200), with optional
headers, or a delay to hold a request open.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from slotwise.models import Organization, new_id

SECRET_KEY = "test-webhook-sealing-key-0123456789abcdef"


def make_org(sessions: sessionmaker[Session]) -> str:
    """An organization row for events to belong to (only its id matters here)."""
    org_id = new_id("org")
    with sessions.begin() as db:
        db.add(Organization(id=org_id, name="Events org", plan_code="pro", created_at=datetime.now(UTC)))
    return org_id


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[Answer] = []  # answers for the next requests, in order; then ``default``
        self.default = Answer()
        self.delay = 0.0  # seconds each request is held before its answer
        self.lock = threading.Lock()
        self.in_flight: dict[str, int] = {}  # organization → requests being answered now
        self.overlaps = 0  # a request of an organization arrived while another of it was open
        self.arrived = threading.Event()  # set at each request's arrival
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK wait

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                org = str(json.loads(body or b"{}").get("organization"))
                with receiver.lock:
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                      body, time.monotonic()))
                    answer = receiver.script.pop(0) if receiver.script else receiver.default
                    receiver.overlaps += receiver.in_flight.get(org, 0) > 0
                    receiver.in_flight[org] = receiver.in_flight.get(org, 0) + 1
                receiver.arrived.set()
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.in_flight[org] -= 1
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def fail(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        self.script.extend(Answer(status, dict(headers or {}), b"no") for status in statuses)

    def ids(self) -> list[str]:
        with self.lock:
            return [r.webhook_id for r in self.received]


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


class WallClock:
    """The real time plus an offset the test moves forwards: never behind the real time, so what
    ``events.emit`` marks due now (by the real clock) is due for the worker too."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, by: timedelta) -> None:
        self.offset += by
