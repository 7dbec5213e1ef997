"""Export at its edges: an approved list with no line to pay is exported as no file, not
refused as if it were not approved (the operator would be sent to approve it again)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.application import Ledger
from ledger.rules import RuleViolation
from tests.conftest import Files, enrolment

pytestmark = pytest.mark.integration


def test_an_approved_list_with_no_line_exports_no_file_and_no_refusal(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    ledger.enrol(files.enrolments([enrolment("003200000000")]), "maker")
    ledger.terminate("003200000000", "2025-01", "wrong enrolment", "officer")
    ledger.run_payroll("2025-07", "01", "maker")
    (summary,) = ledger.approve_payroll("2025-07", "01", "checker")
    assert (summary.status, summary.lines) == ("APPROVED", 0)

    result = ledger.export_payroll("2025-07", "01", tmp_path / "out")

    assert (result.files, result.not_written) == ([], [])
    assert not any((tmp_path / "out").glob("*.csv"))


def test_a_period_with_no_approved_list_is_still_refused(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    ledger.enrol(files.enrolments([enrolment("003200000001")]), "maker")
    ledger.run_payroll("2025-07", "01", "maker")

    with pytest.raises(
        RuleViolation, match=r"no approved list for 2025-07 01 to export \(1 drafts"
    ):
        ledger.export_payroll("2025-07", "01", tmp_path / "out")
