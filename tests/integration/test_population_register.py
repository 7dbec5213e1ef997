"""Identities checked against the population register, on both stores: an extract loaded whole
or not at all (every problem named), again changing nothing, a later one updating it; then
enrolment refuses, row by row with both values shown, a person the register does not hold, a
name or date of birth that differs (case, spacing and Unicode form aside) and a person it
records as dead; and a death registration of someone it does not hold is refused."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import pytest

from ledger.application import Ledger
from ledger.inputs import POPULATION_COLUMNS, InputRejected
from ledger.rules import RuleViolation
from tests.conftest import NO_CLAIMANT, Files, death, enrolment, write_csv

pytestmark = pytest.mark.integration

AN, BINH, CHI, DUNG = "001000000101", "001000000102", "001000000103", "001000000104"


def person(pid: str, name: str, born: str = "1940-01-01", died: str = "") -> dict[str, Any]:
    return {
        "personal_id": pid,
        "full_name": name,
        "date_of_birth": born,
        "sex": "F",
        "date_of_death": died,
    }


def extract(folder: Path, name: str, *people: dict[str, Any]) -> Path:
    return write_csv(folder / name, POPULATION_COLUMNS, list(people))


def register(ledger: Ledger) -> dict[str, tuple[Any, ...]]:
    return {
        str(r[0]): tuple(r[1:])
        for r in ledger.db.query(
            "SELECT personal_id, full_name, date_of_birth, date_of_death, extract_no"
            " FROM population_register"
        )
    }


def test_an_extract_is_loaded_whole_once_and_a_later_one_updates_it(
    ledger: Ledger, tmp_path: Path
) -> None:
    first = extract(tmp_path, "e1.csv", person(AN, "Nguyễn Văn An"), person(BINH, "Trần Thị Bình"))
    loaded, before = ledger.import_population(first, "2025-06-30", "owner")
    assert (loaded.extract_no, loaded.rows_read, loaded.added, loaded.changed) == (1, 2, 2, 0)
    assert not before
    again, before = ledger.import_population(first, "2025-06-30", "owner")
    assert before and again.extract_no == 1
    second = extract(
        tmp_path,
        "e2.csv",
        person(BINH, "Trần Thị Bình", died="2025-07-02"),
        person(CHI, "Lê Văn Chí"),
        person(AN, "Nguyễn Văn An"),  # as it was: unchanged
    )
    loaded, _ = ledger.import_population(second, "2025-07-31", "owner")
    assert (loaded.extract_no, loaded.rows_read, loaded.added, loaded.changed) == (2, 3, 1, 1)
    assert register(ledger) == {
        AN: ("Nguyễn Văn An", "1940-01-01", None, 1),
        BINH: ("Trần Thị Bình", "1940-01-01", "2025-07-02", 2),
        CHI: ("Lê Văn Chí", "1940-01-01", None, 2),
    }
    older = extract(tmp_path, "e0.csv", person(DUNG, "Phạm Dũng"))
    with pytest.raises(RuleViolation, match="older than the extract 2 of 2025-07-31"):
        ledger.import_population(older, "2025-05-31", "owner")
    assert DUNG not in register(ledger)


def test_a_bad_extract_names_every_problem_and_loads_nothing(
    ledger: Ledger, tmp_path: Path
) -> None:
    bad = extract(
        tmp_path,
        "bad.csv",
        person(AN, "Nguyễn Văn An"),
        person("12345", "Ngắn"),
        person(BINH, "Bình\x1b[31m"),
        person(CHI, "Chí", born="2999-01-01"),
        person(DUNG, "Dũng", born="1950-01-01", died="1949-12-31"),
        person(AN, "Nguyễn Văn An"),
        {**person("001000000105", "Sáu"), "sex": "X"},
    )
    with pytest.raises(InputRejected) as refused:
        ledger.import_population(bad, "2025-06-30", "owner")
    lines = refused.value.problems
    assert any(line.startswith("bad.csv: row 3: personal_id:") for line in lines), lines
    assert any(line.startswith("bad.csv: row 4: full_name:") for line in lines), lines
    assert any(line.startswith("bad.csv: row 5: date_of_birth:") for line in lines), lines
    assert any(line.startswith("bad.csv: row 6: date_of_death:") for line in lines), lines
    assert "bad.csv: row 7: personal_id: 001000000101 is already on row 2" in lines
    assert any(line.startswith("bad.csv: row 8: sex:") for line in lines), lines
    assert register(ledger) == {}
    assert ledger.population_extract() is None


def test_enrolment_refuses_what_the_register_contradicts_and_takes_the_rest(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    ledger.import_population(
        extract(
            tmp_path,
            "e.csv",
            person(AN, "Nguyễn Văn An"),
            person(BINH, "Trần Thị Bình", born="1941-02-03"),
            person(CHI, "Lê Văn Chí", died="2025-01-05"),
            person(DUNG, "Phạm Thị Dung"),
        ),
        "2025-06-30",
        "owner",
    )
    rows = [
        enrolment(AN, full_name=unicodedata.normalize("NFD", "  NGUYỄN  văn an ")),  # the same
        enrolment(BINH, full_name="Trần Thị Bình"),  # born another day
        enrolment(CHI, full_name="Lê Văn Chí"),  # dead
        enrolment(DUNG, full_name="Phạm Thị Dũng"),  # another name: an accent differs
        enrolment("001000000199"),  # not in the register
    ]
    with pytest.raises(InputRejected) as refused:
        ledger.enrol(files.enrolments(rows), "maker")
    lines = [line.split(": ", 1)[1] for line in refused.value.problems]
    extract_named = "the population register (extract 1 of 2025-06-30)"
    assert lines == [
        f"row 3: date_of_birth: 1940-01-01 differs from 1941-02-03 in {extract_named}",
        f"row 4: personal_id: {CHI} died on 2025-01-05 according to {extract_named}",
        f"row 5: full_name: 'Phạm Thị Dũng' differs from 'Phạm Thị Dung' in {extract_named}",
        f"row 6: personal_id: 001000000199 is not in {extract_named}",
    ]
    assert ledger.db.query("SELECT COUNT(*) FROM beneficiaries") == [(0,)]
    assert ledger.enrol(files.enrolments(rows[:1]), "maker") == 1


def test_a_death_of_someone_the_register_does_not_hold_is_refused(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    ledger.import_population(
        extract(tmp_path, "e.csv", person(AN, "Nguyễn Văn An")), "2025-06-30", "owner"
    )
    with pytest.raises(InputRejected) as refused:
        ledger.import_deaths(files.deaths([death(AN), death(BINH) | NO_CLAIMANT]), "registry")
    assert len(refused.value.problems) == 1
    assert f"personal_id: {BINH} is not in the population register" in refused.value.problems[0]
    assert ledger.import_deaths(files.deaths([death(AN)]), "registry").applied == 1


def test_the_command_line_loads_an_extract_and_enrolment_says_what_it_checked(
    tmp_path: Path,
) -> None:
    from tests.e2e.support import Cli

    cli = Cli(tmp_path)
    path = extract(tmp_path, "register.csv", person(AN, "Nguyễn Văn An"))
    loaded = cli("population", "import", path, "--date", "2025-06-30")
    assert loaded.code == 0, loaded
    assert "extract 1 of 2025-06-30 loaded: 1 people, 1 added to the register, 0 changed" in (
        loaded.stdout
    )
    again = cli("population", "import", path, "--date", "2025-06-30")
    assert "nothing changed: loaded before as extract 1" in again.stdout
    bad_day = cli("population", "import", path, "--date", "2999-01-01")
    assert bad_day.code == 1 and "--date:" in bad_day.stderr and "Traceback" not in bad_day.stderr
    enrolled = cli("enrol", Files(tmp_path).enrolments([enrolment(AN, full_name="Nguyễn Văn An")]))
    assert enrolled.code == 0, enrolled
    assert "identities checked against the population register (extract 1 of 2025-06-30)" in (
        enrolled.stdout
    )
