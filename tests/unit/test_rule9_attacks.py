"""Rule 9 attacked: each test shows one defect of the reorganised units found by a review as an
attacker and as a careless operator would use the ledger. Each fails on the code it was written
against, for the reason its name gives."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from ledger.application import Ledger
from ledger.inputs import InputRejected
from ledger.rules import RuleViolation
from replay.explain import explain
from tests import services
from tests.conftest import Files, enrolment

MAKER, CHECKER = "maker", "checker"
X, Y = "001234567801", "001234567802"
ALLOWANCE = 500_000  # the standard level at coefficient 1.0


def units_file(path: Path, rows: list[tuple[str, str, str, str, str]]) -> Path:
    return Files(path.parent).units(rows, path)


def reorganise(ledger: Ledger, path: Path) -> None:
    """Import a reorganisation and have another person approve it."""
    result = ledger.import_units(path, MAKER)
    assert result.proposal is not None and result.unchanged is None
    ledger.approve_reference_changes(CHECKER)


def pay(ledger: Ledger, *periods: str) -> None:
    for period in periods:
        ledger.run_payroll(period, None, MAKER)
        ledger.approve_payroll(period, None, CHECKER)


def paid(ledger: Ledger, personal_id: str) -> int:
    """What the person's lines pay in all."""
    return int(
        ledger.db.query(
            "SELECT COALESCE(SUM(total_amount), 0) FROM payment_lines WHERE personal_id = ?",
            (personal_id,),
        )[0][0]
    )


def unit_paid_in(ledger: Ledger, personal_id: str, period: str) -> str:
    (row,) = ledger.db.query(
        "SELECT province_code FROM payment_lines WHERE personal_id = ? AND period = ?",
        (personal_id, period),
    )
    return str(row[0])


# 1. Money: periods approved out of order across a reorganisation pay a month twice


def test_a_retired_code_s_late_list_does_not_pay_again_a_month_the_merged_province_paid(
    ledger: Ledger, files: Files
) -> None:
    """Hà Giang (02) pays May; its June is late (a refused draft, a forgotten run); July is
    approved nationally, so the person is paid June and July on Tuyên Quang's (08) list. The
    late June list of 02 is then drafted and approved: 02's register only knows May, and rule 2
    does not count July's line for June, so June is paid a second time. Before rule 9 the
    province's own register refused a June after its July."""
    ledger.enrol(
        files.enrolments(
            [enrolment(X, province_code="02", commune_code="00712", effective_month="2025-05")]
        ),
        MAKER,
    )
    pay(ledger, "2025-05", "2025-07")
    assert paid(ledger, X) == 3 * ALLOWANCE  # May, then June and July on 08's list
    with contextlib.suppress(RuleViolation, InputRejected):  # refusing it is one answer
        pay(ledger, "2025-06")
    assert paid(ledger, X) == 3 * ALLOWANCE, "June paid twice"


# 2. Money: a back-dated reorganisation into a new code pays again what a later list paid


def test_a_back_dated_reorganisation_into_a_new_province_does_not_pay_again_a_later_list_s_arrears(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    """X, enrolled late from May, is paid May to October on Cao Bằng's (04) October list. A
    reorganisation back-dated to September makes 04 a new province 50, whose register is
    empty; the September run drafts 50's list and rule 2, which does not count October's line
    for September, pays X May to September again. The rules promise that a person paid for a
    month on an approved list is not paid for it again on their new unit's list."""
    ledger.enrol(
        files.enrolments(
            [enrolment(Y, province_code="04", commune_code="01000", effective_month="2025-05")]
        ),
        MAKER,
    )
    pay(ledger, "2025-05", "2025-06", "2025-07", "2025-08", "2025-09")
    ledger.enrol(
        files.enrolments(
            [enrolment(X, province_code="04", commune_code="01001", effective_month="2025-05")]
        ),
        MAKER,
    )
    pay(ledger, "2025-10")
    assert paid(ledger, X) == 6 * ALLOWANCE  # May to October, once
    reorganise(ledger, units_file(tmp_path / "u.csv", [("2025-09", "04", "", "50", "")]))
    with contextlib.suppress(RuleViolation, InputRejected):
        pay(ledger, "2025-09")  # "run the payroll again" after a reorganisation
    assert paid(ledger, X) == 6 * ALLOWANCE, "May to September paid twice"


# 3. Wrong list: a row naming a unit an earlier reorganisation retired is accepted and maps
#    nobody


def test_a_commune_row_of_a_province_the_merger_retired_in_the_same_month_is_refused_or_applied(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    """A file from 2025-07 moves Hà Giang's (02) commune 00712 to Hà Nội (01). It is accepted
    (the merger maps province 02, not commune 02/00712, so it is not "mapped twice"), but the
    merger, recorded first, has already made 02/00712 into 08/00712, so the row maps nobody:
    the person stays in Tuyên Quang, and nothing tells the operator."""
    ledger.enrol(
        files.enrolments(
            [enrolment(X, province_code="02", commune_code="00712", effective_month="2025-05")]
        ),
        MAKER,
    )
    path = units_file(tmp_path / "u.csv", [("2025-07", "02", "00712", "01", "00712")])
    try:
        reorganise(ledger, path)
    except InputRejected:
        return  # refusing the row is one right answer
    pay(ledger, "2025-07")
    assert unit_paid_in(ledger, X, "2025-07") == "01", "the reorganisation was accepted and ignored"


def test_a_row_of_a_province_retired_in_an_earlier_month_is_refused_or_applied(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    """The same from 2025-09: 02 is "a province code ever in force", so the row is accepted;
    02 no longer exists in September (it is 08 since July), so the row maps nobody."""
    ledger.enrol(
        files.enrolments(
            [enrolment(X, province_code="02", commune_code="00712", effective_month="2025-05")]
        ),
        MAKER,
    )
    path = units_file(tmp_path / "u.csv", [("2025-09", "02", "00712", "01", "00712")])
    try:
        reorganise(ledger, path)
    except InputRejected:
        return
    pay(ledger, "2025-09")
    assert unit_paid_in(ledger, X, "2025-09") == "01", "the reorganisation was accepted and ignored"


# 4. explain: a list grouped by a reorganisation a back-dated one has since superseded


def test_explain_finds_the_postings_of_a_list_whose_grouping_a_back_dated_reorganisation_changed(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    """Cao Bằng (04) becomes 50 from October; X, held, is on 50's October list with a posting
    and no line. A second reorganisation of October, recorded later, then makes 50 into 52:
    with every reorganisation known, X was never in 50, so explain did not read 50's list,
    missed its posting, and its check `postings = balances read model` said NO. (The first
    form of this attack, a reorganisation back-dated to August making 04 into 51, is now
    refused: it would leave October's reorganisation of 04 nobody to map.)"""
    ledger.enrol(
        files.enrolments(
            [
                enrolment(X, province_code="04", commune_code="01000", effective_month="2025-05"),
                enrolment(Y, province_code="04", commune_code="01001", effective_month="2025-05"),
            ]
        ),
        MAKER,
    )
    pay(ledger, "2025-05", "2025-06", "2025-07", "2025-08", "2025-09")
    reorganise(ledger, units_file(tmp_path / "late.csv", [("2025-10", "04", "", "50", "")]))
    ledger.hold(X, "documents to check", MAKER)
    pay(ledger, "2025-10")
    with pytest.raises(InputRejected, match="mapped again from 2025-10"):
        ledger.import_units(
            units_file(tmp_path / "early.csv", [("2025-08", "04", "", "51", "")]), MAKER
        )
    reorganise(ledger, units_file(tmp_path / "again.csv", [("2025-10", "50", "", "52", "")]))
    x = explain(ledger, X, "2025-10")
    assert x.ok, [c for c in x.checks if not c.ok]


# 5. Crash: more communes moved than PostgreSQL takes parameters in one statement


def test_a_list_with_more_communes_moved_than_a_statement_takes_parameters_is_drafted(
    postgres_server: str, tmp_path: Path
) -> None:
    """Four valid files of 20,000 communes each (one month, distinct communes) move Hà Nội's
    communes to a new province 99. The lists of 01 and 99 are read with one parameter a
    commune: 80,000 parameters, and PostgreSQL takes 65,535, so `payroll run` fails with an
    OperationalError (`failed: ...` and a crash report on the command line)."""
    files = Files(tmp_path)
    with Ledger(services.new_database(postgres_server)) as ledger:
        ledger.enrol(
            files.enrolments(
                [
                    enrolment(X, province_code="01", commune_code="00001"),
                    enrolment(Y, province_code="01", commune_code="99999"),
                ]
            ),
            MAKER,
        )
        for k in range(4):
            rows = [
                ("2026-01", "01", f"{i:05d}", "99", f"{i:05d}")
                for i in range(k * 20_000, (k + 1) * 20_000)
            ]
            reorganise(ledger, units_file(tmp_path / f"u{k}.csv", rows))
        pay(ledger, "2026-01")
        assert unit_paid_in(ledger, X, "2026-01") == "99"
        assert unit_paid_in(ledger, Y, "2026-01") == "01"


# 6. Slow and badly reported: the row limit is applied after a quadratic check


def _store(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'store' / 'ledger.sqlite'}")


def test_a_units_file_over_the_row_limit_is_refused_as_a_bad_file_naming_it(
    tmp_path: Path,
) -> None:
    """20,001 rows: refused, but by the aggregate's check of a proposal (`refused: a
    reorganisation is 1 to 20,000 rows of ...`), a RuleViolation that names neither the file
    nor how many rows it has, instead of the file's own one line."""
    rows = [("2026-02", "01", f"{i:05d}", "99", f"{i:05d}") for i in range(20_001)]
    path = units_file(tmp_path / "big.csv", rows)
    with _store(tmp_path) as ledger, pytest.raises(InputRejected) as refused:
        ledger.import_units(path, MAKER)
    assert any("big.csv" in p and "20,000" in p for p in refused.value.problems)


def test_a_chained_units_file_is_refused_row_by_row(tmp_path: Path) -> None:
    """A file of 20,000 rows (within the limit) renumbering one commune after the other is
    refused, one line a chained row. The check followed each row's chain to its end, so the
    rows cost their square (about 45 s of CPU here for one refused file); each unit is now
    followed once (ledger/units.py `_cycles`: timings are the benchmarks' business, not the
    tests')."""
    rows = [("2026-03", "01", f"{i:05d}", "01", f"{i + 1:05d}") for i in range(20_000)]
    path = units_file(tmp_path / "chain.csv", rows)
    with _store(tmp_path) as ledger, pytest.raises(InputRejected) as refused:
        ledger.import_units(path, MAKER)
    assert refused.value.total == 19_999  # every row but the last: its unit is mapped again
    assert refused.value.problems[0] == (
        "chain.csv: row 2: new_province_code: 01/00001 is itself mapped again by this "
        "reorganisation: map straight to the unit it ends in"
    )


# 7. units show and --province: a province shown in force before it exists


def test_a_province_a_reorganisation_makes_is_not_in_force_before_its_month(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    """Hà Nội's commune 00001 becomes a new province 99 from 2026-01. `units show --period
    2025-12` lists 99 (made of 99) among 35 provinces, and `payroll run --period 2025-12
    --province 99` drafts a list for it, a province that did not exist then."""
    reorganise(ledger, units_file(tmp_path / "u.csv", [("2026-01", "01", "00001", "99", "00001")]))
    _, before = ledger.units_in_force("2025-12")
    assert "99" not in {u.province_code for u in before}
    assert len(before) == 34
    _, june = ledger.units_in_force("2025-06")
    assert len(june) == 63
    with pytest.raises(InputRejected, match="99"):
        ledger.run_payroll("2025-12", "99", MAKER)


# 8. Cosmetic: "1 rows"


def test_a_one_row_reorganisation_is_not_called_1_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`units import` of a file already proposed says `(1 rows)`, and `reference pending`
    shows the change as `unit reorganisation of 1 rows` (describe() gets it right: `of 1
    unit`)."""
    from ledger.cli import main

    store = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    path = units_file(tmp_path / "u.csv", [("2026-01", "01", "00001", "99", "00001")])
    assert main(["init", "--store", store]) == 0
    for _ in range(2):
        assert main(["units", "import", str(path), "--store", store, "--by", MAKER]) == 0
    assert main(["reference", "pending", "--store", store]) == 0
    shown = capsys.readouterr()
    assert "1 rows" not in shown.out + shown.err
