"""Rule 9 on both stores, by hand-computed cases: a person enrolled under a code the 2025
merger retired is paid under it until 2025-06 and under the new province from 2025-07; a
commune moved by a later reorganisation follows it from its month on; what was approved before
a reorganisation was recorded keeps its codes, byte for byte; and a draft the reorganisation
regroups is not approved as drafted."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.sql import SQLiteDatabase
from ledger.application import Ledger
from ledger.inputs import InputRejected
from ledger.rules import RuleViolation
from ledger.service_layer import payroll, reference
from replay.as_of import Cut, check_issued, replay_into
from replay.explain import explain
from tests.conftest import Files, death, enrolment

MAKER, CHECKER = "maker", "checker"
A, B, C = "001234567801", "001234567802", "001234567803"  # Hà Giang, Tuyên Quang, Hà Nội


def people(ledger: Ledger, files: Files) -> None:
    ledger.enrol(
        files.enrolments(
            [
                enrolment(A, province_code="02", commune_code="00712", effective_month="2025-05"),
                enrolment(B, province_code="08", commune_code="02290", effective_month="2025-05"),
                enrolment(C, province_code="01", commune_code="00001", effective_month="2025-05"),
            ]
        ),
        MAKER,
    )


def pay(ledger: Ledger, *periods: str) -> None:
    for period in periods:
        ledger.run_payroll(period, None, MAKER)
        ledger.approve_payroll(period, None, CHECKER)


def lines(ledger: Ledger, period: str) -> dict[str, tuple[str, str, str]]:
    """Each person's payment id, province and commune on the period's lists."""
    return {
        r[0]: (r[1], r[2], r[3])
        for r in ledger.db.query(
            "SELECT personal_id, payment_id, province_code, commune_code FROM payment_lines"
            " WHERE period = ?",
            (period,),
        )
    }


def lists(ledger: Ledger, period: str) -> dict[str, str]:
    return dict(
        ledger.db.query(
            "SELECT province_code, status FROM payment_lists WHERE period = ?", (period,)
        )
    )


def units_file(tmp_path: Path, name: str, rows: list[tuple[str, str, str, str, str]]) -> Path:
    return Files(tmp_path).units(rows, tmp_path / name)


def reorganise(ledger: Ledger, path: Path) -> None:
    """Import a reorganisation and have another person approve it."""
    result = ledger.import_units(path, MAKER)
    assert result.proposal is not None and result.unchanged is None
    ledger.approve_reference_changes(CHECKER)


def test_a_person_recorded_in_ha_giang_is_paid_in_tuyen_quang_from_july_2025(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    people(ledger, files)
    pay(ledger, "2025-05", "2025-06", "2025-07")
    assert lines(ledger, "2025-06")[A] == (f"2025-06-02-{A}", "02", "00712")
    assert lines(ledger, "2025-07")[A] == (f"2025-07-08-{A}", "08", "00712")
    assert lines(ledger, "2025-07")[B] == (f"2025-07-08-{B}", "08", "02290")
    assert lists(ledger, "2025-06") == {"01": "APPROVED", "02": "APPROVED", "08": "APPROVED"}
    assert lists(ledger, "2025-07") == {"01": "APPROVED", "08": "APPROVED"}
    # the record keeps the code given: the person still lives in 02 as enrolled
    assert ledger.db.query("SELECT province_code FROM beneficiaries WHERE personal_id = ?", (A,))[
        0
    ] == ("02",)
    out = tmp_path / "out"
    ledger.export_payroll("2025-07", None, out)
    assert sorted(p.name for p in out.glob("*.csv")) == [
        "2025-07_01_POST.csv",
        "2025-07_08_POST.csv",
    ]
    assert f"2025-07-08-{A},2025-07,08,00712," in (out / "2025-07_08_POST.csv").read_text("utf-8")


def test_a_commune_moved_by_a_later_reorganisation_is_paid_where_it_went_from_its_month(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    people(ledger, files)
    pay(ledger, "2025-07", "2025-08")
    # commune 00712 (Hà Giang's, in Tuyên Quang since July) goes to Hà Nội from September
    reorganise(ledger, units_file(tmp_path, "u.csv", [("2025-09", "08", "00712", "01", "00799")]))
    pay(ledger, "2025-09")
    assert lines(ledger, "2025-08")[A] == (f"2025-08-08-{A}", "08", "00712")
    assert lines(ledger, "2025-09")[A] == (f"2025-09-01-{A}", "01", "00799")
    assert lines(ledger, "2025-09")[B] == (f"2025-09-08-{B}", "08", "02290")
    period, shown = ledger.units_in_force("2025-09")
    hanoi = next(u for u in shown if u.province_code == "01")
    assert (period, hanoi.made_of, hanoi.communes_in) == (
        "2025-09",
        ("01",),
        (("02", "00712", "00799"), ("08", "00712", "00799")),
    )


def test_a_reorganisation_recorded_after_an_approval_leaves_that_list_and_its_export_as_they_were(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    people(ledger, files)
    pay(ledger, "2025-07")
    before = lines(ledger, "2025-07")
    ledger.export_payroll("2025-07", None, tmp_path / "before")
    # back-dated to July: Tuyên Quang's commune 02290 to Hà Nội
    reorganise(ledger, units_file(tmp_path, "u.csv", [("2025-07", "08", "02290", "01", "02290")]))
    ledger.run_payroll("2025-07", None, MAKER)  # the approved lists stand (rule 6)
    ledger.export_payroll("2025-07", None, tmp_path / "after")
    assert lines(ledger, "2025-07") == before
    assert lists(ledger, "2025-07") == {"01": "APPROVED", "08": "APPROVED"}
    for name in ("2025-07_01_POST.csv", "2025-07_08_POST.csv"):
        assert (tmp_path / "after" / name).read_bytes() == (tmp_path / "before" / name).read_bytes()
    # an auditor's replay finds every approved file as the rules gave it from what was then
    # known: the grouping of before the reorganisation
    checks = check_issued(ledger, Cut.of(ledger.today()), tmp_path / "before")
    assert len(checks) == 2 and all(c.ok for c in checks), [c.verdict for c in checks]
    # August follows it; B, paid through July in Tuyên Quang (from May, as arrears), is paid
    # each month once: four months of 500,000
    pay(ledger, "2025-08")
    assert lines(ledger, "2025-08")[B] == (f"2025-08-01-{B}", "01", "02290")
    assert ledger.db.query(
        "SELECT SUM(total_amount) FROM payment_lines WHERE personal_id = ?", (B,)
    ) == [(4 * 500_000,)]


def test_a_draft_regrouped_by_a_reorganisation_recorded_since_is_not_approved(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    people(ledger, files)
    pay(ledger, "2025-07")
    ledger.run_payroll("2025-08", None, MAKER)
    drafted = sum(
        r[0]
        for r in ledger.db.query("SELECT total_amount FROM payment_lists WHERE period = '2025-08'")
    )
    reorganise(ledger, units_file(tmp_path, "u.csv", [("2025-08", "08", "", "01", "")]))
    with pytest.raises(RuleViolation, match="reorganisation of the units in force for 2025-08"):
        ledger.approve_payroll("2025-08", None, CHECKER)
    assert lines(ledger, "2025-08") == {}
    ledger.run_payroll("2025-08", None, MAKER)
    ledger.approve_payroll("2025-08", None, CHECKER)
    assert {p for p, _, _ in lines(ledger, "2025-08").values()} == {
        f"2025-08-01-{A}",
        f"2025-08-01-{B}",
        f"2025-08-01-{C}",
    }
    # grouped anew, the period pays the same in total
    approved = ledger.db.query(
        "SELECT SUM(total_amount) FROM payment_lists WHERE period = '2025-08'"
        " AND status = 'APPROVED'"
    )
    assert approved == [(drafted,)]


def test_a_reorganisation_that_does_not_reach_the_draft_s_period_leaves_it_approvable(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    people(ledger, files)
    ledger.run_payroll("2025-07", None, MAKER)
    reorganise(ledger, units_file(tmp_path, "u.csv", [("2025-10", "08", "", "01", "")]))
    ledger.approve_payroll("2025-07", None, CHECKER)
    assert lists(ledger, "2025-07") == {"01": "APPROVED", "08": "APPROVED"}


def test_a_province_the_merger_retired_is_named_as_such(ledger: Ledger, files: Files) -> None:
    people(ledger, files)
    with pytest.raises(InputRejected, match="02 is not a province in 2025-07: it is part of 08"):
        ledger.run_payroll("2025-07", "02", MAKER)
    ledger.run_payroll("2025-06", "02", MAKER)
    assert lists(ledger, "2025-06") == {"02": "DRAFT"}


def test_an_import_is_checked_whole_with_a_line_per_problem_and_records_nothing(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    people(ledger, files)
    bad = units_file(
        tmp_path,
        "bad.csv",
        [
            ("2025-09", "99", "", "01", ""),  # no such province
            ("2025-09", "08", "", "01", ""),
            ("2025-09", "08", "", "04", ""),  # mapped twice, and to a province mapped away
            ("2025-09", "04", "", "11", ""),
            ("2025-09", "11", "", "04", ""),  # a swap: a cycle
            ("2025-09", "12", "00001", "12", ""),  # one commune code without the other
        ],
    )
    with pytest.raises(InputRejected) as refused:
        ledger.import_units(bad, MAKER)
    problems = refused.value.problems
    assert "bad.csv: row 7: new_commune_code: both commune codes or neither (a whole province)" in (
        problems
    )
    assert len(problems) == 1  # the rows' own fields first; the rest once they are right
    fixed = units_file(tmp_path, "bad2.csv", [r for r in _rows(bad) if r[2] != "00001"])
    with pytest.raises(InputRejected) as refused:
        ledger.import_units(fixed, MAKER)
    assert refused.value.problems == [
        "bad2.csv: row 2: old_province_code: unknown province code '99'",
        "bad2.csv: row 4: new_province_code: 04 is itself mapped again by this reorganisation:"
        " map straight to the unit it ends in",
        "bad2.csv: row 4: old_province_code: province 08 is mapped twice in 2025-09 (also row 3)",
        "bad2.csv: row 5: new_province_code: a cycle: 04 is mapped back to itself",
        "bad2.csv: row 6: new_province_code: a cycle: 11 is mapped back to itself",
    ]
    assert ledger.pending_reference_changes() == []


def _rows(path: Path) -> list[tuple[str, str, str, str, str]]:
    text = path.read_text("utf-8").splitlines()[1:]
    return [tuple(line.split(",")) for line in text]  # type: ignore[misc]


def test_the_same_reorganisation_imported_twice_changes_nothing(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    people(ledger, files)
    path = units_file(tmp_path, "u.csv", [("2025-09", "08", "00712", "01", "00712")])
    first = ledger.import_units(path, MAKER)
    again = ledger.import_units(path, MAKER)
    assert first.proposal is not None and again.proposal == first.proposal
    assert again.unchanged == "already proposed, waiting for approval"
    ledger.approve_reference_changes(CHECKER)
    events = ledger.events.latest_notification_id()
    assert ledger.import_units(path, MAKER).unchanged == "already recorded"
    assert ledger.events.latest_notification_id() == events


def test_the_units_in_force_before_and_after_the_merger(ledger: Ledger) -> None:
    period, before = ledger.units_in_force("2025-06")
    assert (period, len(before)) == ("2025-06", 63)
    period, after = ledger.units_in_force("2025-07")
    assert (period, len(after)) == ("2025-07", 34)
    tuyen_quang = next(u for u in after if u.province_code == "08")
    assert (tuyen_quang.name, tuyen_quang.made_of) == ("Tuyên Quang", ("02", "08"))


def test_explain_names_the_unit_recorded_and_the_reorganisation_that_mapped_it(
    ledger: Ledger, files: Files
) -> None:
    people(ledger, files)
    pay(ledger, "2025-06", "2025-07")
    x = explain(ledger, A, "2025-07")
    assert x.ok, [c for c in x.checks if not c.ok]
    june, july = x.lines
    assert (june.province_code, june.commune_code, june.recorded_unit, june.reorganised_by) == (
        "02",
        "00712",
        "02/00712",
        (),
    )
    merger = ledger.db.query(
        "SELECT DISTINCT seq FROM unit_reorganisations WHERE effective_month = '2025-07'"
    )
    assert (july.province_code, july.recorded_unit, july.reorganised_by) == (
        "08",
        "02/00712",
        (merger[0][0],),
    )
    # the credits of July were posted on Tuyên Quang's list: found, and they balance
    assert [(p.period, p.province_code) for p in x.postings][-1] == ("2025-07", "08")


def test_receivables_are_shown_under_the_province_in_force(ledger: Ledger, files: Files) -> None:
    people(ledger, files)
    pay(ledger, "2025-06")
    ledger.import_deaths(
        files.deaths(
            [death(A, date_of_death="2025-04-10", registered_at="2025-07-02T09:00:00+07:00")]
        ),
        "registry",
    )
    owing = {r["personal_id"]: r for r in ledger.receivables("2025-07")}
    assert owing[A]["province_code"] == "08"
    assert {r["personal_id"]: r for r in ledger.receivables("2025-06")}[A]["province_code"] == "02"


def test_a_province_a_reorganisation_made_can_be_enrolled_in_and_moved_to(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    people(ledger, files)
    newcomer = enrolment("001234567809", province_code="99", commune_code="00712")
    with pytest.raises(InputRejected) as refused:
        ledger.enrol(files.enrolments([newcomer]), MAKER)
    assert [p.split(": ", 1)[1] for p in refused.value.problems] == [
        "row 2: province_code: unknown province code '99'"
    ]
    with pytest.raises(InputRejected, match="--province: unknown province code '99'"):
        ledger.move(A, "99", "00712", MAKER)
    # Hà Nội's commune 00001 becomes province 99 from September 2025
    reorganise(ledger, units_file(tmp_path, "u.csv", [("2025-09", "01", "00001", "99", "00001")]))
    ledger.enrol(files.enrolments([newcomer]), MAKER)
    ledger.move(A, "99", "00712", MAKER)
    pay(ledger, "2025-09")
    # Hà Nội keeps its list (its code is still recorded), with nobody on it
    assert lists(ledger, "2025-09") == {"01": "APPROVED", "08": "APPROVED", "99": "APPROVED"}
    assert {p for p, _, _ in lines(ledger, "2025-09").values()} == {
        f"2025-09-99-{C}",
        f"2025-09-99-{A}",
        f"2025-09-08-{B}",
        "2025-09-99-001234567809",
    }
    assert lines(ledger, "2025-09")[C] == (f"2025-09-99-{C}", "99", "00001")


def test_a_replay_knowing_only_what_was_recorded_before_a_reorganisation_groups_as_before(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    people(ledger, files)
    pay(ledger, "2025-07")
    before = datetime.now(UTC)
    time.sleep(0.01)
    reorganise(ledger, units_file(tmp_path, "u.csv", [("2025-08", "08", "02290", "01", "02290")]))
    for known_at, file, expected in (
        (before, "before.sqlite", "08"),
        (datetime.now(UTC), "now.sqlite", "01"),
    ):
        replay_into(ledger, tmp_path / file, Cut.of(ledger.today(), known_at))
        replayed = SQLiteDatabase(tmp_path / file)
        try:
            grouped = {
                a.personal_id: code
                for code in ("01", "08")
                for a in payroll.draft(ledger.ports, "2025-08", code, db=replayed).assessments
            }
        finally:
            replayed.close()
        assert grouped[B] == expected, file


def test_a_store_made_before_rule_9_gets_its_table_guarded_by_init_and_the_merger(
    store_url: str, files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a store as the ledger made it before rule 9: no reorganisation recorded, no table
    with monkeypatch.context() as patch:
        patch.setattr(reference, "built_in_reorganisations", lambda: [])
        with Ledger(store_url) as old:
            people(old, files)
            pay(old, "2025-06")
    drop_table(store_url, "unit_reorganisations")
    with Ledger(store_url) as opened:  # no command makes a table: it stays missing
        assert "unit_reorganisations" in " ".join(opened.guard_problems())
        assert opened.complete_store() == [
            "table unit_reorganisations added"
        ]  # the owner's `ledger init`
    with Ledger(store_url) as ledger:
        assert ledger.guard_problems() == []
        pay(ledger, "2025-07")
        assert lines(ledger, "2025-07")[A] == (f"2025-07-08-{A}", "08", "00712")
        assert lists(ledger, "2025-06") == {"01": "APPROVED", "02": "APPROVED", "08": "APPROVED"}


def test_a_table_of_reorganisations_dropped_is_not_made_again_unguarded_or_empty(
    ledger: Ledger, files: Files, store_url: str
) -> None:
    people(ledger, files)
    ledger.close()
    drop_table(store_url, "unit_reorganisations")  # the merger is recorded: it held it
    with Ledger(store_url) as reopened:
        assert "unit_reorganisations" in " ".join(reopened.guard_problems())
        with pytest.raises(RuleViolation, match="guard"):
            reopened.run_payroll("2025-07", None, MAKER)


def drop_table(url: str, table: str) -> None:
    """What the database's owner can do, outside the ledger."""
    if url.startswith("sqlite:///"):
        import sqlite3

        con = sqlite3.connect(url[len("sqlite:///") :])
        con.execute(f"DROP TABLE {table}")
        con.commit()
        con.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as con:
            con.execute(f"DROP TABLE {table}")


def test_a_list_approved_after_a_later_period_of_its_people_s_new_province_is_refused(
    ledger: Ledger, files: Files
) -> None:
    people(ledger, files)
    pay(ledger, "2025-05")
    ledger.run_payroll("2025-06", "02", MAKER)  # Hà Giang's June, drafted in time
    ledger.run_payroll("2025-07", None, MAKER)  # Tuyên Quang's July pays A's June as arrears
    ledger.approve_payroll("2025-07", None, CHECKER)
    with pytest.raises(RuleViolation, match="a list of a later period was approved in 08"):
        ledger.approve_payroll("2025-06", "02", CHECKER)
    ledger.run_payroll("2025-06", "02", MAKER)  # drafted again: A was paid June in July
    ledger.approve_payroll("2025-06", "02", CHECKER)
    assert A not in lines(ledger, "2025-06")
    assert ledger.db.query(
        "SELECT SUM(total_amount) FROM payment_lines WHERE personal_id = ?", (A,)
    ) == [(3 * 500_000,)]


def test_a_move_is_checked_whole_against_the_store_s_codes(ledger: Ledger, files: Files) -> None:
    people(ledger, files)
    arabic = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
    with pytest.raises(InputRejected) as refused:
        ledger.move("00123456780x", "01".translate(arabic), "00001".translate(arabic), MAKER)
    assert refused.value.problems == [
        "personal id: must be 12 digits 0-9, got '00123456780x'",
        f"--province: unknown province code {'01'.translate(arabic)!r}",
        f"--commune: must be 5 digits 0-9, got {'00001'.translate(arabic)!r}",
    ]
    ledger.move(A, "77", "00001", MAKER)  # Bà Rịa-Vũng Tàu's code, merged into 79 in 2025
    pay(ledger, "2025-07")
    assert lines(ledger, "2025-07")[A][1:] == ("79", "00001")
