"""Prints the reliability figures (trials per kind and what they hit) at the end of a run."""

from __future__ import annotations

from typing import Any

from tests.reliability.harness import FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for kind in sorted(FIGURES):
        counts = ", ".join(f"{name}={n}" for name, n in FIGURES[kind].items())
        terminalreporter.write_line(f"{kind}: {counts}")
