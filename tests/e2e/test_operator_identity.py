"""Who is acting: `--by`, else LEDGER_USER; an approval never falls back to the OS user."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Files, enrolment
from tests.e2e.support import Cli

pytestmark = pytest.mark.e2e


def test_approval_takes_the_checker_from_ledger_user(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    enrol = Files(tmp_path).enrolments([enrolment("001000000001")])
    assert cli("enrol", enrol).code == 0
    assert cli("payroll", "run", "--period", "2025-07", "--by", "maker").code == 0

    anonymous = cli("payroll", "approve", "--period", "2025-07")
    assert anonymous.code == 2 and "--by USER (or LEDGER_USER)" in anonymous.stderr

    cli.env["LEDGER_USER"] = "maker"
    assert cli("payroll", "approve", "--period", "2025-07").code == 1  # maker is not checker
    cli.env["LEDGER_USER"] = "checker"
    approved = cli("payroll", "approve", "--period", "2025-07")
    assert approved.code == 0, approved
    assert cli.query("SELECT approved_by FROM payment_lists") == [("checker",)]
