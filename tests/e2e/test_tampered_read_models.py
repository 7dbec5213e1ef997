"""A read model changed behind its guard (a SQLite connection that answers the guard's own
question) reaches a list; `ledger exports check` recomputes every approved list from the
events and refuses to let its files be sent (issue 11, point 6)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Files, enrolment
from tests.e2e.support import Cli

pytestmark = pytest.mark.e2e

P1, P2 = "001000000301", "001000000302"


def test_exports_check_refuses_files_of_a_list_drawn_from_changed_read_models(
    tmp_path: Path,
) -> None:
    cli = Cli(tmp_path)
    people = [enrolment(P1, effective_month="2025-07"), enrolment(P2, effective_month="2025-07")]
    assert cli("enrol", Files(tmp_path).enrolments(people)).code == 0
    path = cli.store.removeprefix("sqlite:///")
    with sqlite3.connect(path) as con:  # the guard asks current_setting: this one says yes
        con.create_function("current_setting", 1, lambda name: "on")
        con.execute(
            "UPDATE beneficiaries SET channel = 'BANK', bank_code = 'VCB', "
            "account_number = '66666666' WHERE personal_id = ?",
            (P1,),
        )
    for step in (
        ("payroll", "run", "--period", "2025-07", "--by", "maker"),
        ("payroll", "approve", "--period", "2025-07", "--by", "checker"),
        ("payroll", "export", "--period", "2025-07", "--out", tmp_path / "out"),
    ):
        assert cli(*step).code == 0
    checked = cli("exports", "check", tmp_path / "out")
    assert checked.code == 1, checked
    assert "approved list 2025-07 01" in checked.stdout
    assert "send nothing" in checked.stderr
