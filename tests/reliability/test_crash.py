"""SIGKILL at random points, on SQLite and PostgreSQL: the server mid-traffic, and the billing sweep
(`slotwise billing run`, and the simulated clock's `slotwise operator clock --to`) mid-renewals.

After every kill `slotwise doctor` must pass, and finishing the work must do it exactly once (the
checks are in ``tests/reliability/crash.py``). SLOTWISE_CRASH_TRIALS trials per kind and database:
a couple in `make test`, at least 50 in `make reliability`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.crash import populate, server_crash_trial, sweep_crash_trial, timed_sweep
from tests.reliability.harness import Server, Store, doctor_cli, fresh_database, record, trials

CRASH_TRIALS = trials("SLOTWISE_CRASH_TRIALS", 2)
SWEEP_ORGANIZATIONS = trials("SLOTWISE_SWEEP_ORGANIZATIONS", 40)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_name(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("postgres_engine")  # reachable, or skipped/failed like the rest of the suite
    return str(request.param)


def _rng(name: str) -> random.Random:
    seed = int(os.environ.get("SLOTWISE_RELIABILITY_SEED", random.randrange(1 << 30)))
    print(f"{name} seed {seed}")  # shown on failure, to replay the same trials
    return random.Random(seed)


@pytest.fixture
def store_and_server(
    backend_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Store, Server]]:
    name = "crash_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[-40:]
    with fresh_database(backend_name, tmp_path, name) as url:
        server = Server(url, tmp_path / "server.log")
        store = None
        try:
            server.start()
            store = Store(url)
            yield store, server
        finally:
            server.stop()
            if store is not None:
                store.close()


def test_server_killed_mid_traffic(store_and_server: tuple[Store, Server], backend_name: str) -> None:
    store, server = store_and_server
    rng = _rng(f"server[{backend_name}]")
    for _ in range(CRASH_TRIALS):
        record(f"crash: server SIGKILL mid-traffic [{backend_name}]", **server_crash_trial(server, store, rng))
    result = doctor_cli(store.url)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("command", ["billing", "clock"])
def test_sweep_killed_mid_renewals(store_and_server: tuple[Store, Server], backend_name: str, command: str) -> None:
    store, server = store_and_server
    rng = _rng(f"sweep {command}[{backend_name}]")
    populate(server, rng, SWEEP_ORGANIZATIONS)
    server.stop()  # the sweep runs alone, as the scheduled `slotwise billing run` does
    work = timed_sweep(store, command)
    name = "billing run" if command == "billing" else "operator clock"
    for _ in range(CRASH_TRIALS):
        figures = sweep_crash_trial(store, rng, command, work)
        record(f"crash: `slotwise {name}` SIGKILL mid-sweep, {SWEEP_ORGANIZATIONS} orgs [{backend_name}]", **figures)
