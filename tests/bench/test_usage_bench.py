"""``bench/usage.py`` on a tiny run (PostgreSQL): the report comes out, the route answered every bucket
and never read the ledger (``measure`` checks both and fails otherwise). Not a timed test: the figures
are only printed."""

from __future__ import annotations

from datetime import date

import pytest

from bench import usage


def test_a_tiny_usage_bench_reports_each_case_against_its_floor(request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("postgres_engine")  # reachable, or skipped/failed like the rest of the suite
    report = usage.measure(spends=1000, ledger=1000, calls=5)
    print(usage.table(report))
    assert [row.what for row in report.rows][:3] == [
        "GET …/usage, 30 days by day", "GET …/usage, 30 days by day, one agent", "GET …/usage, a year by month"]
    assert report.rows[-1].what.startswith("floor: the roll-up read")
    assert all(row.median_ms > 0 and row.floor_ms for row in report.rows)
    assert report.statements == 3  # the caller, the snapshot, the roll-up: no ledger
    assert "| GET …/usage, 30 days by day |" in usage.table(report)


def test_the_roll_up_rows_are_what_a_million_spends_leave() -> None:
    rows = usage.roll_up_rows("org_x", [f"agt_{n}" for n in range(20)], spends=1_000_000, days=30,
                              end=date(2026, 11, 30))
    assert len({(r["day"], r["agent_key"]) for r in rows}) == len(rows) == 600  # a row per day and agent
    assert min(r["day"] for r in rows) == date(2026, 11, 1)
    messages = sum(r["messages"] for r in rows)
    assert 950_000 <= messages <= 1_000_000  # one spend in twenty is a document, not a message
    assert all(r["credits"] >= r["messages"] > 0 for r in rows)
