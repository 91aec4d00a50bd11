"""bench/http.py in miniature: the report comes out, for every route, and every answer was 2xx.

Nothing here is timed (SPEC §10: figures are ratios in `make bench`, never assertions). The second
test checks the sockets `slotwise serve` listens on, whose missing TCP_NODELAY made every
keep-alive answer under ``--workers`` wait ~40 ms for a delayed ACK (slotwise.server).
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
from multiprocessing.reduction import ForkingPickler

import pytest
from sqlalchemy import create_engine, text

from bench import http as bench_http
from slotwise.config import normalize_database_url
from slotwise.server import SPREAD_BY_KERNEL, _OwnSocketPerWorker, listening_socket
from tests.conftest import DEFAULT_PG, _postgres_required

ROUTES = {("bare", "GET /ping"), ("bare", "GET /ping-db"), ("bare", "POST /things"),
          ("slotwise", "GET /v1/organizations/{org}"),
          ("slotwise", "POST /v1/organizations/{org}/agents"),
          ("slotwise", "POST /v1/organizations/{org}/credits/spend")}


def _postgres_base() -> str:
    base = os.environ.get("SLOTWISE_TEST_POSTGRES_URL", DEFAULT_PG)
    admin = create_engine(normalize_database_url(base.rsplit("/", 1)[0] + "/postgres"))
    try:
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as error:
        if _postgres_required():
            pytest.fail(f"PostgreSQL is required here but unreachable: {error}")
        pytest.skip(f"PostgreSQL unreachable: {str(error).splitlines()[0]}")
    finally:
        admin.dispose()
    return base


def test_a_short_run_reports_every_route_with_only_2xx_answers(capsys: pytest.CaptureFixture[str]) -> None:
    assert shutil.which("wrk") is not None, "wrk is not installed: `make wrk` installs it (make test does)"
    bench_http.main(["--seconds", "1", "--workers", "1", "--connections", "2", "--postgres", _postgres_base()])
    report = capsys.readouterr().out
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in report.splitlines()
            if line.startswith("| 1 |")]
    assert {(row[1], row[2]) for row in rows} == ROUTES, report
    for row in rows:
        app, per_second, ratio, landed, not_2xx = row[1], row[3], row[7], row[8], row[9]
        assert float(per_second.replace(",", "")) > 0, row
        assert not_2xx == "0", row
        assert landed == "2", row  # both connections, on the one worker
        assert (ratio == "—") == (app == "bare"), row  # slotwise's against the bare app or, the spend, GET org


def test_listeners_are_tcp_with_nagle_off_and_each_worker_gets_its_own() -> None:
    with listening_socket("127.0.0.1", 0) as sock:
        # asyncio sets TCP_NODELAY on an accepted socket only if it reports IPPROTO_TCP, copied from here.
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    if not SPREAD_BY_KERNEL:
        return
    with listening_socket("127.0.0.1", 0, reuse_port=True, kind=_OwnSocketPerWorker) as parent:
        # What uvicorn's supervisor sends a worker: a new socket of its own on the same port.
        address, worker = parent.getsockname(), pickle.loads(ForkingPickler.dumps(parent))
    with worker:
        assert worker.getsockname() == address
        assert worker.proto == socket.IPPROTO_TCP
        assert worker.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        assert worker.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
