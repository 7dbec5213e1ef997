"""What an operator gets wrong on the command line is refused with a sentence, never a
traceback: a store that is not one, an output folder that is a file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ledger.application import Ledger
from ledger.cli import main
from tests.conftest import Files, enrolment


def test_a_file_that_is_not_a_store_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_store = tmp_path / "decisions.csv"
    not_a_store.write_text("personal_id,full_name\n", encoding="utf-8")
    for argv in (["verify"], ["payroll", "run", "--period", "2025-07", "--by", "nguyen"]):
        assert main([*argv, "--store", f"sqlite:///{not_a_store}"]) == 1
        err = capsys.readouterr().err
        assert "is not a ledger store" in err and "Traceback" not in err
    assert not_a_store.read_text(encoding="utf-8") == "personal_id,full_name\n"


def test_an_output_folder_that_is_a_file_is_refused(
    tmp_path: Path, files: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger(store) as ledger:
        ledger.enrol(files.enrolments([enrolment("006000000001")]), "maker")
        ledger.run_payroll("2025-07", None, "maker")
        ledger.approve_payroll("2025-07", None, "checker")
    occupied = tmp_path / "out.csv"
    occupied.write_text("keep me\n", encoding="utf-8")
    code = main(
        ["payroll", "export", "--period", "2025-07", "--out", str(occupied), "--store", store]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot use" in err and "Traceback" not in err
    assert occupied.read_text(encoding="utf-8") == "keep me\n"


def test_a_report_from_unguarded_read_models_says_so(
    tmp_path: Path, files: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger(f"sqlite:///{path}") as ledger:
        ledger.enrol(files.enrolments([enrolment("006000000002")]), "maker")
    with sqlite3.connect(path) as con:
        con.execute("DROP TRIGGER ledger_guard_balances_update")
    assert main(["receivables", "--store", f"sqlite:///{path}"]) == 0
    err = capsys.readouterr().err
    assert "warning: the store's guards are not in place" in err
    assert "ledger verify" in err
