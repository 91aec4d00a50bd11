"""Admission control: at most ``SLOTWISE_CONCURRENCY`` requests in the app at once (config.py).

Each request in the app may hold a worker thread and a database connection, and both are sized to
that number, so admitted requests never wait for one another's resources. The rest wait here, in a
queue that costs no thread and no connection, for at most ``MAX_WAIT_SECONDS``; when the queue is
full (``QUEUE_PER_SLOT`` × the limit), or the wait runs out, the answer is 503 ``unavailable`` with
``Retry-After`` at once (SPEC §9), never a stall that ends in a 500.

The queue is fair between tenants: one organization may fill at most half of it, and a freed place
goes to the waiting request whose organization has the fewest in the app, so another organization's
request is served next rather than behind a flood. Static files bypass all of this.

The state is guarded by a thread lock and waiters are woken on their own event loop, so the test
client (one loop per portal, possibly several) is as safe as uvicorn's single loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from dataclasses import dataclass, field

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

QUEUE_PER_SLOT = 4
MAX_WAIT_SECONDS = 5.0
RETRY_AFTER_SECONDS = 1


@dataclass(eq=False)
class _Waiter:
    tenant: str
    loop: asyncio.AbstractEventLoop
    woken: asyncio.Future[None] = field(init=False)
    granted: bool = False  # set under the lock when a place in the app is handed over

    def __post_init__(self) -> None:
        self.woken = self.loop.create_future()


class Admission:
    def __init__(self, app: ASGIApp, *, concurrency: int, max_wait: float = MAX_WAIT_SECONDS) -> None:
        self.app = app
        self.limit = concurrency
        self.queue_depth = QUEUE_PER_SLOT * concurrency
        self.tenant_queue_depth = max(1, self.queue_depth // 2)
        self.max_wait = max_wait
        self._lock = threading.Lock()
        self._running: Counter[str] = Counter()  # requests in the app, per tenant
        self._in_app = 0
        self._queue: list[_Waiter] = []  # in arrival order
        self._sized_loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        self._size_threads()
        tenant = tenant_of(scope)
        if not await self._enter(tenant):
            await _refuse(send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._leave(tenant)

    def _size_threads(self) -> None:
        """Sync endpoints and dependencies run on anyio's default thread limiter, one per event loop:
        it must have a thread for every admitted request. Looked up once per loop."""
        loop = asyncio.get_running_loop()
        if loop is self._sized_loop:
            return
        limiter = anyio.to_thread.current_default_thread_limiter()
        if limiter.total_tokens < self.limit:
            limiter.total_tokens = self.limit
        self._sized_loop = loop

    async def _enter(self, tenant: str) -> bool:
        with self._lock:
            if self._in_app < self.limit:  # then nobody is waiting: a freed place goes to a waiter at once
                self._admit(tenant)
                return True
            if (len(self._queue) >= self.queue_depth
                    or sum(w.tenant == tenant for w in self._queue) >= self.tenant_queue_depth):
                return False
            waiter = _Waiter(tenant, asyncio.get_running_loop())
            self._queue.append(waiter)
        try:
            await asyncio.wait({waiter.woken}, timeout=self.max_wait)
        except BaseException:  # cancelled: give back the place if it was handed over meanwhile
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._queue.remove(waiter)
            if granted:
                self._leave(tenant)
            raise
        with self._lock:
            if not waiter.granted:  # waited too long
                self._queue.remove(waiter)
            return waiter.granted

    def _admit(self, tenant: str) -> None:
        self._in_app += 1
        self._running[tenant] += 1

    def _leave(self, tenant: str) -> None:
        with self._lock:
            self._in_app -= 1
            self._running[tenant] -= 1
            if not self._running[tenant]:
                del self._running[tenant]
            if not self._queue:
                return
            # The tenant with the fewest requests in the app goes first; among equals, another than
            # the one leaving, then the oldest.
            waiter = min(self._queue, key=lambda w: (self._running[w.tenant], w.tenant == tenant))
            self._queue.remove(waiter)
            waiter.granted = True
            self._admit(waiter.tenant)
        waiter.loop.call_soon_threadsafe(_wake, waiter.woken)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def tenant_of(scope: Scope) -> str:
    """Whom a request is for: the organization in an API path, else the caller's credentials, else
    its address. Only fairness depends on it; a caller who varies it still meets the overall limits."""
    path: str = scope["path"]
    parts = path.split("/", 4)
    if len(parts) > 3 and parts[1] == "v1" and parts[2] == "organizations" and parts[3]:
        return "org " + parts[3]
    headers: dict[bytes, bytes] = dict(scope["headers"])
    credentials = headers.get(b"authorization") or headers.get(b"cookie")
    if credentials:
        return "key " + credentials.decode("latin-1")
    client = scope.get("client")
    return "address " + (str(client[0]) if client else "")


async def _refuse(send: Send) -> None:
    body = json.dumps({"error": {
        "code": "unavailable",
        "message": "The server is busy. Try again shortly.",
    }}).encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(RETRY_AFTER_SECONDS).encode())]})
    await send({"type": "http.response.body", "body": body})
