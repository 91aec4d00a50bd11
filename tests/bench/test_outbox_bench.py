"""The outbox's cost on the spend (issue 12, bench/outbox.py) runs, and measures what it says: with an
endpoint subscribed to ``credits.low``, every crossing spend wrote its event and the delivery owed,
and no ordinary spend wrote one. Nothing here is timed: the figures are only reported, by
``make bench``."""

from __future__ import annotations

import pytest

from bench import outbox
from tests.bench.test_service_bench import _postgres_base

QUICK = 0.3  # seconds per figure


@pytest.mark.parametrize("database", ["SQLite", "PostgreSQL"])
def test_the_spend_with_and_without_an_endpoint_on_credits_low(database: str) -> None:
    rows = (outbox.sqlite(QUICK, rounds=1) if database == "SQLite"
            else outbox.postgres(_postgres_base(), QUICK, rounds=1))

    paths = outbox.PATHS if database == "PostgreSQL" else outbox.PATHS[:1]
    assert [(row.path, row.kind) for row in rows] == [(p, k) for p in paths for k in outbox.KINDS]
    for row in rows:
        assert row.without > 0 and row.with_endpoint > 0, row
        if row.kind == "ordinary":
            assert (row.events, row.owed) == (0, 0), row
        else:
            assert row.events > 0 and row.owed == row.events, row
    assert "| with ÷ without |" in outbox.table(rows)
