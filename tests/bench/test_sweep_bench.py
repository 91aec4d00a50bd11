"""``bench/sweep.py`` on a tiny run, on both databases: the report comes out, and what it measured was
right — ``measure`` itself checks each run (every due period billed once, nothing left due, the doctor
clean) and fails otherwise. Not a timed test: the figures are only printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import sweep


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_tiny_sweep_bench_reports_correct_runs(database: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if database == "postgresql":
        request.getfixturevalue("postgres_engine")  # reachable, or skipped/failed like the rest of the suite
    rows = sweep.measure(database, 50, [1, 2], tmp_path)
    print(sweep.table(rows))

    floor, single, doctor, double = rows
    assert floor.what.startswith("floor") and floor.renewals is not None
    due = floor.renewals
    assert 40 <= due < 50  # the mix: a few organizations end on the free plan and renew nothing
    for run, processes in ((single, 1), (double, 2)):
        assert (run.what, run.workers, run.renewals) == ("slotwise billing run", processes, due)
        assert sum(map(int, run.split.split(" / "))) == due  # each renewal reported by exactly one process
        assert run.floor == floor.rate and run.rss_mb and run.statements
    assert doctor.what == "slotwise doctor" and doctor.renewals is None
    assert f"| {floor.database} | 50 | slotwise billing run | 2 |" in sweep.table(rows)
