"""A flood of valid requests on one `slotwise serve` process (SPEC §9), on SQLite and PostgreSQL.

Each round sends FLOOD_SIZE requests at once for one organization (reads of it and agent creations,
with room for every creation), and while they are in flight one read for another organization.
Every request must be answered — served, or refused at once with 503 ``unavailable`` and a
``Retry-After`` — never with a 500, never a stall, and the other organization within two seconds.
SLOTWISE_FLOOD_ROUNDS rounds (one in `make test`, more in `make reliability`), each on a fresh
organization; the doctor checks the database afterwards.

The flood opens its connections first, then writes every request whole at once: an HTTP client
library from this one process would spend a second or more of CPU on the handshakes (so the flood
would not be at once) and writes a body apart from its headers (so every creation reached the server
after every read).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from slotwise.api.admission import Admission
from slotwise.api.app import create_app
from slotwise.config import Settings
from slotwise.db import make_engine
from tests.factories import Org
from tests.reliability.harness import Server, doctor_cli, fresh_database, headers, record, record_worst, trials

FLOOD_ROUNDS = trials("SLOTWISE_FLOOD_ROUNDS", 1)
FLOOD_SIZE = 200
OTHER_TENANT_SECONDS = 2.0  # SPEC §9: "within a second or two"
STALL_SECONDS = 15.0  # no request of the flood may take longer: served or refused, not left hanging
CLIENT_TIMEOUT = 120.0  # longer than any pool timeout, so a stall shows as a slow answer, not a client error
OTHER_TENANT_DELAY = 0.005  # the flood's requests are written (the fast lane answers all 200 within ~0.1 s)
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True)
class Outcome:
    status: int | None  # None: no answer at all (connection error, client timeout)
    code: str | None
    retry_after: str | None
    started: float
    ended: float
    error: str | None = None

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def acceptable(self) -> bool:
        """Served, or refused as SPEC §9 allows: 503 ``unavailable`` with a ``Retry-After``."""
        if self.status is None:
            return False
        if self.status == 503:
            return self.code == "unavailable" and bool(self.retry_after)
        return self.status < 500


def answered(started: float, status: int, retry_after: str | None, body: bytes) -> Outcome:
    code = None
    if status >= 400:
        with contextlib.suppress(ValueError, KeyError, TypeError):  # a bare 500 is plain text
            code = json.loads(body)["error"]["code"]
    return Outcome(status, code, retry_after, started, time.perf_counter())


def unanswered(started: float, error: BaseException) -> Outcome:
    return Outcome(None, None, None, started, time.perf_counter(), error=repr(error))


def raw_request(method: str, path: str, token: str, body: Any = None) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {token}",
            "Content-Type: application/json", f"Content-Length: {len(data)}", "Connection: close"]
    return "\r\n".join([*head, "", ""]).encode() + data


async def exchange(connection: Connection | BaseException, request: bytes) -> Outcome:
    """One request on its own open connection; the answer is read until the server closes it."""
    started = time.perf_counter()
    if isinstance(connection, BaseException):
        return unanswered(started, connection)
    reader, writer = connection
    try:
        writer.write(request)
        answer = await asyncio.wait_for(reader.read(), CLIENT_TIMEOUT)
    except (OSError, TimeoutError) as error:
        return unanswered(started, error)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 "):
        return unanswered(started, ConnectionError(f"no HTTP answer: {answer[:80]!r}"))
    fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return answered(started, int(lines[0].split()[1]), fields.get("retry-after"), body)


def ask(client: httpx.Client, org: Org) -> Outcome:
    started = time.perf_counter()
    try:
        response = client.get(org.path, headers=headers(org.token))
    except httpx.HTTPError as error:
        return unanswered(started, error)
    return answered(started, response.status_code, response.headers.get("retry-after"), response.content)


async def flood(server: Server, org: Org, other: Org) -> tuple[list[Outcome], Outcome]:
    """FLOOD_SIZE requests for ``org`` at once, each on its own connection, and meanwhile one for
    ``other`` from a thread of its own, on a connection it opened before."""
    requests = [raw_request("GET", org.path, org.token) if i % 2 == 0 else
                raw_request("POST", org.path + "/agents", org.token, {"name": f"flood {i}"})
                for i in range(FLOOD_SIZE)]
    with httpx.Client(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as aside:
        assert ask(aside, other).status == 200
        connections = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", server.port) for _ in requests),
                                           return_exceptions=True)
        tasks = [asyncio.create_task(exchange(c, r)) for c, r in zip(connections, requests, strict=True)]
        await asyncio.sleep(OTHER_TENANT_DELAY)
        meanwhile = await asyncio.to_thread(ask, aside, other)
        return list(await asyncio.gather(*tasks)), meanwhile


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if request.param == "postgresql":
        request.getfixturevalue("postgres_engine")  # reachable, or skipped/failed like the rest of the suite
    folder = tmp_path_factory.mktemp("flood")
    with fresh_database(request.param, folder, "flood") as url:
        found = Server(url, folder / "flood.log")
        try:
            yield found.start()
        finally:
            found.stop()


def test_a_flood_is_served_or_refused_at_once_and_other_organizations_are_answered(
    server: Server, request: pytest.FixtureRequest
) -> None:
    backend = request.node.callspec.params["server"]
    kind = f"flood: {FLOOD_SIZE} requests at once on one server [{backend}]"
    api = server.api()
    for _ in range(FLOOD_ROUNDS):
        org, other = api.create_org("business"), api.create_org("pro")
        assert org.add_slots("agent_slots", FLOOD_SIZE // 2).status_code == 200  # room for every creation
        used = org.capacity("agents")["used"]

        began = time.perf_counter()
        outcomes, meanwhile = asyncio.run(flood(server, org, other))
        wall = time.perf_counter() - began

        statuses = Counter(o.status for o in outcomes)
        latencies = sorted(o.seconds for o in outcomes)
        record(kind, rounds=1, served=statuses[200] + statuses[201], unavailable_503=statuses[503],
               other_5xx=sum(n for s, n in statuses.items() if s and s >= 500 and s != 503),
               no_answer=statuses[None], other_tenant_2xx=int(meanwhile.status is not None and meanwhile.status < 300))
        record_worst(kind, p50_ms=round(1000 * statistics.median(latencies)),
                     p99_ms=round(1000 * latencies[int(0.99 * (len(latencies) - 1))]),
                     other_tenant_ms=round(1000 * meanwhile.seconds), wall_ms=round(1000 * wall))
        print(f"{kind}: {dict(statuses)}, other organization {meanwhile.status} in {meanwhile.seconds:.2f} s, "
              f"p50 {statistics.median(latencies):.2f} s, max {latencies[-1]:.2f} s, wall {wall:.1f} s")
        bad = [o for o in outcomes if not o.acceptable]
        assert not bad, (statuses, [(o.status, o.code, o.retry_after, o.error) for o in bad[:5]],
                         server.log_path.read_text()[-3000:])
        assert set(statuses) <= {200, 201, 503}, statuses
        assert meanwhile.acceptable and meanwhile.seconds < OTHER_TENANT_SECONDS, meanwhile
        assert max(o.ended for o in outcomes) > meanwhile.started, "the other organization asked after the flood"
        slowest = max(o.seconds for o in outcomes)
        assert slowest < STALL_SECONDS, f"a request of the flood took {slowest:.1f} s"
        assert org.capacity("agents")["used"] == used + statuses[201]  # each 201 made one agent, nothing else did

    result = doctor_cli(server.url)
    assert result.returncode == 0, result.stdout + result.stderr



# --- the pieces on their own: the queue's order and bounds, and a pool timeout -------------------

async def _call(admission: Admission, path: str) -> tuple[str, int, bytes | None]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await admission({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send)
    return path, sent[0]["status"], dict(sent[0]["headers"]).get(b"retry-after")


def _held_app(release: asyncio.Event, admitted: list[str]) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        admitted.append(scope["path"])
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def test_another_organization_is_served_next_and_one_may_fill_only_half_the_queue() -> None:
    async def scenario() -> tuple[list[str], list[tuple[str, int, bytes | None]]]:
        release, admitted = asyncio.Event(), []
        admission = Admission(_held_app(release, admitted), concurrency=1)  # a queue of 4, 2 per organization
        tasks = []
        for path in ("a/1", "a/2", "a/3", "a/4", "b/1"):
            tasks.append(asyncio.create_task(_call(admission, "/v1/organizations/" + path)))
            await asyncio.sleep(0)  # each reaches the admission in this order
        release.set()
        return admitted, list(await asyncio.gather(*tasks))

    admitted, answers = asyncio.run(scenario())

    assert [p.removeprefix("/v1/organizations/") for p in admitted] == ["a/1", "b/1", "a/2", "a/3"]
    assert [(p[-3:], status, retry) for p, status, retry in answers if status != 200] == [("a/4", 503, b"1")]


def test_a_request_that_waited_too_long_is_refused_and_gives_back_its_place() -> None:
    async def scenario() -> list[int]:
        release, admitted = asyncio.Event(), []
        admission = Admission(_held_app(release, admitted), concurrency=1, max_wait=0.05)
        holder = asyncio.create_task(_call(admission, "/v1/organizations/a"))
        await asyncio.sleep(0)
        _, waited, _ = await _call(admission, "/v1/organizations/b")
        release.set()
        statuses = [waited, (await holder)[1], (await _call(admission, "/v1/organizations/c"))[1]]
        return statuses

    assert asyncio.run(scenario()) == [503, 200, 200]


def test_no_pooled_connection_in_time_is_503_unavailable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    engine = make_engine(url, concurrency=1, pool_timeout=0.1)
    settings = Settings(database_url=url, operator_key="k", catalog_path=None, clock="system", clock_start=None,
                        secure_cookies=False)
    with engine.connect(), TestClient(create_app(settings, engine=engine)) as client:  # the pool's one connection
        response = client.get("/v1/organizations/org_x", headers=headers("some-token"))
    engine.dispose()
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "unavailable"
