"""bench/webhooks.py in miniature: the report comes out for 1 and 2 workers, every event was delivered
(the run waits for it), and the floor was measured. Nothing is timed here (figures are `make bench`'s)."""

from __future__ import annotations

import pytest

from bench import webhooks


def test_a_short_run_reports_both_worker_counts(capsys: pytest.CaptureFixture[str]) -> None:
    webhooks.main(["--events", "30", "--orgs", "3", "--workers", "1,2", "--backends", "sqlite"])
    report = capsys.readouterr().out
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in report.splitlines()
            if line.startswith("| sqlite |")]
    assert [row[1] for row in rows] == ["1", "2"], report
    for row in rows:
        assert float(row[2].replace(",", "")) > 0 and float(row[3].replace(",", "")) > 0, row
        assert row[4].endswith("×"), row
