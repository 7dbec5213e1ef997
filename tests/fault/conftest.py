"""The fault suite's report: what each test of tests/fault/test_processes_under_fault.py did
(kills, restarts, checks, the seed), printed at the end of the run, with or without -s."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.fault.processes import RECORD

    if not RECORD:
        return
    terminalreporter.section("processes under fault")
    for test, line in RECORD:
        terminalreporter.write_line(f"{test}: {line}")
