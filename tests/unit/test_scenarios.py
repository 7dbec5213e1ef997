"""The payment scenarios of docs/rules.md, through the service layer and the contract's files.

Reference data is the default: 500,000 VND/month from 2024-07, funeral = 20 x level = 10,000,000.
"maker" runs every payroll, "checker" approves it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from ledger.application import Ledger
from ledger.inputs import InputRejected
from ledger.rules import RuleViolation
from ledger.service_layer import reference
from tests.conftest import NO_CLAIMANT, Files, death, enrolment, settlement

MAKER = "maker"
CHECKER = "checker"
PID = "001234567890"
OTHER = "001234500001"
CLAIMANT = "009999999999"
LINE_SQL = (
    "SELECT payment_id, kind, payee_personal_id, regular_amount, funeral_amount,"
    " arrears_amount, total_amount, status FROM payment_lines"
)

Line = tuple[str, str, str, int, int, int, int, str]


def pay(ledger: Ledger, *periods: str) -> None:
    """Run (maker) and approve (checker) every province's list for each period."""
    for period in periods:
        ledger.run_payroll(period, None, MAKER)
        ledger.approve_payroll(period, None, CHECKER)


def lines(ledger: Ledger, period: str, personal_id: str = PID) -> list[Line]:
    return [
        tuple(r)  # type: ignore[misc]
        for r in ledger.db.query(
            f"{LINE_SQL} WHERE period = ? AND personal_id = ? ORDER BY payment_id",
            (period, personal_id),
        )
    ]


def all_lines(ledger: Ledger, personal_id: str = PID) -> list[Line]:
    return [
        tuple(r)  # type: ignore[misc]
        for r in ledger.db.query(
            f"{LINE_SQL} WHERE personal_id = ? ORDER BY period, payment_id", (personal_id,)
        )
    ]


def regular(period: str, regular_amount: int, arrears: int = 0, status: str = "PENDING") -> Line:
    total = regular_amount + arrears
    return (f"{period}-01-{PID}", "REGULAR", PID, regular_amount, 0, arrears, total, status)


def receivable(ledger: Ledger, personal_id: str = PID) -> int:
    return sum(r["amount"] for r in ledger.receivables() if r["personal_id"] == personal_id)


def enrol(ledger: Ledger, files: Files, *rows: dict[str, Any]) -> None:
    ledger.enrol(files.enrolments(list(rows)), MAKER)


def read_export(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_death_mid_month(ledger: Ledger, files: Files, tmp_path: Path) -> None:
    enrol(ledger, files, enrolment(PID, effective_month="2025-05"))
    pay(ledger, "2025-05", "2025-06")
    ledger.import_deaths(files.deaths([death(PID, date_of_death="2025-07-15")]), MAKER)
    pay(ledger, "2025-07", "2025-08", "2025-09")

    # 2025-07: credits May..Jul 3 x 500,000 = 1,500,000 + funeral 20 x 500,000 = 10,000,000
    #   = 11,500,000; issued May, Jun 1,000,000 -> owed 10,500,000
    #   = regular 500,000 (July, the death month) + funeral 10,000,000 + arrears 0
    assert lines(ledger, "2025-07") == [
        (f"2025-07-01-{PID}F", "FUNERAL", CLAIMANT, 500_000, 10_000_000, 0, 10_500_000, "PENDING")
    ]
    # after the death month: 11,500,000 - 11,500,000 = 0, nothing
    assert lines(ledger, "2025-08") == []
    assert lines(ledger, "2025-09") == []
    assert receivable(ledger) == 0

    ledger.export_payroll("2025-07", "01", tmp_path / "out")
    rows = read_export(tmp_path / "out" / "2025-07_01_POST.csv")
    who = [(r["payment_id"], r["kind"], r["personal_id"], r["payee_personal_id"]) for r in rows]
    assert who == [(f"2025-07-01-{PID}F", "FUNERAL", PID, CLAIMANT)]
    assert [(r["regular_amount"], r["funeral_amount"], r["total_amount"]) for r in rows] == [
        ("500000", "10000000", "10500000")
    ]


def test_back_dated_death_overpayment_comes_off_the_funeral_line(
    ledger: Ledger, files: Files
) -> None:
    enrol(ledger, files, enrolment(PID, effective_month="2025-03"))
    pay(ledger, "2025-03", "2025-04", "2025-05", "2025-06")  # 4 x 500,000 = 2,000,000 issued
    ledger.import_deaths(
        files.deaths(
            [death(PID, date_of_death="2025-04-10", registered_at="2025-06-28T09:00:00+07:00")]
        ),
        MAKER,
    )
    pay(ledger, "2025-07")

    # credits Mar, Apr 2 x 500,000 = 1,000,000 + funeral 10,000,000 = 11,000,000
    # issued 2,000,000 -> owed 9,000,000 = funeral 10,000,000 - overpaid May, Jun 1,000,000
    assert lines(ledger, "2025-07") == [
        (f"2025-07-01-{PID}F", "FUNERAL", CLAIMANT, 0, 9_000_000, 0, 9_000_000, "PENDING")
    ]
    assert receivable(ledger) == 0


def test_back_dated_death_overpayment_beyond_the_funeral_is_a_receivable(
    ledger: Ledger, files: Files
) -> None:
    # coefficient 3.0: 3 x 500,000 = 1,500,000 a month; back-dated to 2024-07
    enrol(ledger, files, enrolment(PID, effective_month="2024-07", coefficient="3.0"))
    pay(ledger, "2025-06")  # 2024-07..2025-06 = 12 x 1,500,000 = 18,000,000 on one line
    assert lines(ledger, "2025-06") == [regular("2025-06", 1_500_000, 16_500_000)]
    ledger.import_deaths(
        files.deaths(
            [death(PID, date_of_death="2024-08-05", registered_at="2025-06-30T09:00:00+07:00")]
        ),
        MAKER,
    )
    pay(ledger, "2025-07")

    # credits 2024-07, 2024-08 = 2 x 1,500,000 = 3,000,000 + funeral 20 x 500,000 = 10,000,000
    #   = 13,000,000; issued 18,000,000 -> owed -5,000,000: receivable, no line
    assert lines(ledger, "2025-07") == []
    assert receivable(ledger) == 5_000_000
    [summary] = ledger.summaries("2025-07", "01")
    assert summary.receivable_amount == 5_000_000


def test_death_without_claimant_waits_until_a_correction_names_one(
    ledger: Ledger, files: Files
) -> None:
    enrol(ledger, files, enrolment(PID, effective_month="2025-05"))
    pay(ledger, "2025-05", "2025-06")  # 2 x 500,000 issued
    registered = death(PID, date_of_death="2025-07-15", **NO_CLAIMANT)
    ledger.import_deaths(files.deaths([registered]), MAKER)

    [summary] = ledger.run_payroll("2025-07", None, MAKER)
    assert summary.waiting_for_claimant == 1
    assert summary.lines == 0
    ledger.approve_payroll("2025-07", None, CHECKER)
    pay(ledger, "2025-08")
    assert lines(ledger, "2025-07") == []
    assert lines(ledger, "2025-08") == []

    corrected = death(
        PID,
        event_type="CORRECTED",
        date_of_death="2025-07-15",
        registered_at="2025-08-20T09:00:00+07:00",
    )
    ledger.import_deaths(files.deaths([corrected]), MAKER)
    pay(ledger, "2025-09")

    # credits May..Jul 1,500,000 + funeral 10,000,000 = 11,500,000; issued 1,000,000
    # -> owed 10,500,000: regular 0 (not entitled in Sep), funeral 10,000,000, arrears 500,000
    assert lines(ledger, "2025-09") == [
        (f"2025-09-01-{PID}F", "FUNERAL", CLAIMANT, 0, 10_000_000, 500_000, 10_500_000, "PENDING")
    ]


def test_revocation_pays_the_months_not_paid_as_arrears(ledger: Ledger, files: Files) -> None:
    enrol(ledger, files, enrolment(PID, effective_month="2025-05"))
    pay(ledger, "2025-05", "2025-06")  # 2 x 500,000 issued
    ledger.import_deaths(
        files.deaths([death(PID, date_of_death="2025-06-20", **NO_CLAIMANT)]), MAKER
    )
    pay(ledger, "2025-07", "2025-08")
    assert lines(ledger, "2025-07") == []
    assert lines(ledger, "2025-08") == []

    revoked = death(
        PID, event_type="REVOKED", registered_at="2025-08-25T09:00:00+07:00", **NO_CLAIMANT
    )
    ledger.import_deaths(files.deaths([revoked]), MAKER)
    pay(ledger, "2025-09")

    # reinstated: credits May..Sep 5 x 500,000 = 2,500,000, no funeral; issued 1,000,000
    # -> owed 1,500,000 = regular 500,000 + arrears Jul, Aug 1,000,000 on a REGULAR line
    assert lines(ledger, "2025-09") == [regular("2025-09", 500_000, 1_000_000)]


def test_back_dated_enrolment_pays_arrears(ledger: Ledger, files: Files) -> None:
    enrol(ledger, files, enrolment(PID, effective_month="2025-03", coefficient="1.5"))
    pay(ledger, "2025-06", "2025-07")

    # 2025-06: Mar..Jun 4 x 750,000 (500,000 x 1.5) = 3,000,000 = 750,000 + arrears 2,250,000
    assert lines(ledger, "2025-06") == [regular("2025-06", 750_000, 2_250_000)]
    # 2025-07: 750,000, no arrears left
    assert lines(ledger, "2025-07") == [regular("2025-07", 750_000)]


def test_back_dated_rate_change_pays_arrears(ledger: Ledger, files: Files) -> None:
    enrol(ledger, files, enrolment(PID, effective_month="2025-05"))
    pay(ledger, "2025-05", "2025-06")  # 2 x 500,000 issued
    reference.propose_reference_change(ledger.ports, "standard_level", "2025-06", 550_000, MAKER)
    reference.approve_reference_changes(ledger.ports, CHECKER)
    pay(ledger, "2025-07")

    # credits May 500,000 + Jun 550,000 + Jul 550,000 = 1,600,000; issued 1,000,000
    # -> owed 600,000 = regular 550,000 + arrears 50,000 (June's difference)
    assert lines(ledger, "2025-07") == [regular("2025-07", 550_000, 50_000)]
    # the approved lists keep the amounts they had
    assert lines(ledger, "2025-06") == [regular("2025-06", 500_000)]


def test_failed_payment_is_paid_again_as_arrears(ledger: Ledger, files: Files) -> None:
    enrol(ledger, files, enrolment(PID, effective_month="2025-05"))
    pay(ledger, "2025-05")
    ledger.settle(files.settlements([settlement(f"2025-05-01-{PID}", "FAILED")]), MAKER)
    pay(ledger, "2025-06")

    assert lines(ledger, "2025-05") == [regular("2025-05", 500_000, status="FAILED")]
    # credits May, Jun 1,000,000; issued 0 (FAILED no longer counts)
    # -> 1,000,000 = regular 500,000 + arrears 500,000
    assert lines(ledger, "2025-06") == [regular("2025-06", 500_000, 500_000)]


def test_paid_then_returned_is_paid_again_as_arrears(ledger: Ledger, files: Files) -> None:
    enrol(ledger, files, enrolment(PID, effective_month="2025-05"))
    pay(ledger, "2025-05")
    ledger.settle(files.settlements([settlement(f"2025-05-01-{PID}", "PAID")]), MAKER)
    pay(ledger, "2025-06")
    # PAID counts: credits 1,000,000 - issued 500,000 = 500,000, no arrears
    assert lines(ledger, "2025-06") == [regular("2025-06", 500_000)]

    ledger.settle(
        files.settlements([settlement(f"2025-05-01-{PID}", "RETURNED", reason="unclaimed")]),
        MAKER,
    )
    pay(ledger, "2025-07")

    assert lines(ledger, "2025-05") == [regular("2025-05", 500_000, status="RETURNED")]
    # credits May..Jul 1,500,000; issued Jun 500,000 (May RETURNED no longer counts)
    # -> 1,000,000 = regular 500,000 + arrears 500,000
    assert lines(ledger, "2025-07") == [regular("2025-07", 500_000, 500_000)]


def test_hold_and_release(ledger: Ledger, files: Files) -> None:
    enrol(ledger, files, enrolment(PID, effective_month="2025-05"))
    pay(ledger, "2025-05")
    ledger.hold(PID, "not found at home", MAKER)

    for period in ("2025-06", "2025-07"):
        [summary] = ledger.run_payroll(period, None, MAKER)
        assert summary.held == 1
        assert summary.lines == 0
        ledger.approve_payroll(period, None, CHECKER)
        assert lines(ledger, period) == []

    ledger.release(PID, MAKER)
    pay(ledger, "2025-08")

    # credits May..Aug 4 x 500,000 = 2,000,000; issued May 500,000
    # -> 1,500,000 = regular 500,000 + arrears Jun, Jul 1,000,000
    assert lines(ledger, "2025-08") == [regular("2025-08", 500_000, 1_000_000)]


def test_termination(ledger: Ledger, files: Files) -> None:
    enrol(ledger, files, enrolment(PID, effective_month="2025-05"))
    pay(ledger, "2025-05", "2025-06")
    ledger.terminate(PID, "2025-07", "no longer eligible", MAKER)
    pay(ledger, "2025-07", "2025-08")

    # entitled May, Jun only: 1,000,000 credited, 1,000,000 issued -> nothing from July on
    assert all_lines(ledger) == [regular("2025-05", 500_000), regular("2025-06", 500_000)]
    assert receivable(ledger) == 0


def test_back_dated_termination_is_a_receivable(ledger: Ledger, files: Files) -> None:
    enrol(ledger, files, enrolment(PID, effective_month="2025-05"))
    pay(ledger, "2025-05", "2025-06", "2025-07")  # 3 x 500,000 issued
    ledger.terminate(PID, "2025-06", "moved abroad in May", MAKER)
    pay(ledger, "2025-08")

    # credits May 500,000; issued 1,500,000 -> owed -1,000,000: receivable, no line
    assert lines(ledger, "2025-08") == []
    assert receivable(ledger) == 1_000_000


def test_move_puts_the_next_line_in_the_new_province(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    enrol(
        ledger,
        files,
        enrolment(PID, effective_month="2025-05"),
        enrolment(OTHER, effective_month="2025-05"),  # stays in 01
    )
    pay(ledger, "2025-05")
    ledger.move(PID, "79", "26734", MAKER)
    pay(ledger, "2025-06")

    assert [r[0] for r in all_lines(ledger)] == [f"2025-05-01-{PID}", f"2025-06-79-{PID}"]
    moved = ledger.db.query(
        "SELECT province_code, commune_code, total_amount FROM payment_lines WHERE payment_id = ?",
        (f"2025-06-79-{PID}",),
    )
    assert moved == [("79", "26734", 500_000)]  # June only: May was paid in 01
    in_01 = ledger.db.query(
        "SELECT personal_id FROM payment_lines WHERE period = '2025-06' AND province_code = '01'"
    )
    assert [r[0] for r in in_01] == [OTHER]

    out = tmp_path / "out"
    ledger.export_payroll("2025-06", None, out)
    assert [r["personal_id"] for r in read_export(out / "2025-06_01_POST.csv")] == [OTHER]
    assert [r["personal_id"] for r in read_export(out / "2025-06_79_POST.csv")] == [PID]
    # the earlier list keeps the province it had
    ledger.export_payroll("2025-05", None, out)
    may = read_export(out / "2025-05_01_POST.csv")
    assert [(r["personal_id"], r["province_code"]) for r in may] == [(OTHER, "01"), (PID, "01")]


def test_running_an_approved_period_again_changes_nothing(ledger: Ledger, files: Files) -> None:
    enrol(ledger, files, enrolment(PID, effective_month="2025-05"))
    pay(ledger, "2025-05")
    before = lines(ledger, "2025-05")
    assert before == [regular("2025-05", 500_000)]

    # history changes behind the approved list: a back-dated rate and a new beneficiary
    reference.propose_reference_change(ledger.ports, "standard_level", "2025-05", 600_000, MAKER)
    reference.approve_reference_changes(ledger.ports, CHECKER)
    enrol(ledger, files, enrolment(OTHER, effective_month="2025-05"))
    [summary] = ledger.run_payroll("2025-05", None, "someone-else")

    assert summary.status == "APPROVED"
    assert (summary.lines, summary.total_amount) == (1, 500_000)
    assert (summary.drafted_by, summary.approved_by) == (MAKER, CHECKER)
    assert lines(ledger, "2025-05") == before
    assert lines(ledger, "2025-05", OTHER) == []
    with pytest.raises(RuleViolation):
        ledger.approve_payroll("2025-05", None, CHECKER)  # no draft to approve

    pay(ledger, "2025-06")
    # PID: credits May, Jun 2 x 600,000 = 1,200,000; issued 500,000
    #   -> 700,000 = regular 600,000 + arrears 100,000; May is not paid twice
    assert lines(ledger, "2025-06") == [regular("2025-06", 600_000, 100_000)]
    # OTHER: May, Jun 2 x 600,000 = 1,200,000 = regular 600,000 + arrears 600,000
    assert lines(ledger, "2025-06", OTHER) == [
        (f"2025-06-01-{OTHER}", "REGULAR", OTHER, 600_000, 0, 600_000, 1_200_000, "PENDING")
    ]


def test_maker_cannot_approve_own_list(ledger: Ledger, files: Files) -> None:
    enrol(ledger, files, enrolment(PID, effective_month="2025-05"))
    ledger.run_payroll("2025-05", None, MAKER)
    with pytest.raises(InputRejected):
        ledger.approve_payroll("2025-05", None, MAKER)
    assert lines(ledger, "2025-05") == []


def test_enrolling_a_dead_person_is_refused(ledger: Ledger, files: Files) -> None:
    # a death of someone who is not a beneficiary is recorded, and bars enrolment (rule 10)
    ledger.import_deaths(files.deaths([death(PID, date_of_death="2025-06-01")]), MAKER)
    with pytest.raises(InputRejected) as refused:
        enrol(ledger, files, enrolment(PID), enrolment(OTHER))
    assert any(PID in p and "death" in p for p in refused.value.problems)
    # all rows or none: OTHER was not enrolled either
    assert ledger.db.query("SELECT COUNT(*) FROM beneficiaries") == [(0,)]


def test_enrolling_twice_is_refused(ledger: Ledger, files: Files) -> None:
    enrol(ledger, files, enrolment(PID))
    with pytest.raises(InputRejected) as refused:
        enrol(ledger, files, enrolment(PID, coefficient="2.0"))
    assert any(PID in p and "already enrolled" in p for p in refused.value.problems)
    assert ledger.db.query("SELECT personal_id, coefficient FROM beneficiaries") == [(PID, "1.0")]

    with pytest.raises(InputRejected):  # twice in the same file
        enrol(ledger, files, enrolment(OTHER), enrolment(OTHER))
    assert ledger.db.query("SELECT COUNT(*) FROM beneficiaries") == [(1,)]


def test_a_revoked_death_no_longer_costs_the_living_beneficiary(
    ledger: Ledger, files: Files
) -> None:
    """Rule 4 (changed): lines paid to a claimant under a registration since revoked leave the
    beneficiary's balance; the claimant owes them."""
    enrol(ledger, files, enrolment(PID, effective_month="2025-01", coefficient="3.0"))
    pay(ledger, "2025-01", "2025-02")  # 1,500,000 a month
    ledger.settle(files.settlements([settlement(f"2025-01-01-{PID}")]), MAKER)
    ledger.settle(files.settlements([settlement(f"2025-02-01-{PID}", "FAILED")]), MAKER)
    registered = death(PID, date_of_death="2025-03-23", registered_at="2025-03-25T09:00:00+07:00")
    ledger.import_deaths(files.deaths([registered]), MAKER)
    pay(ledger, "2025-03")
    # credits Jan..Mar 4,500,000 + funeral 10,000,000; issued January 1,500,000 (February
    # FAILED) -> 13,000,000 to the claimant: March 1,500,000 + funeral + February as arrears
    assert lines(ledger, "2025-03") == [
        (
            f"2025-03-01-{PID}F",
            "FUNERAL",
            CLAIMANT,
            1_500_000,
            10_000_000,
            1_500_000,
            13_000_000,
            "PENDING",
        )
    ]
    ledger.settle(files.settlements([settlement(f"2025-03-01-{PID}F")]), MAKER)
    revoked = death(
        PID,
        event_type="REVOKED",
        date_of_death="",
        registered_at="2025-04-10T09:00:00+07:00",
        **NO_CLAIMANT,
    )
    ledger.import_deaths(files.deaths([revoked]), MAKER)

    # the beneficiary is owed as if the funeral line had never been paid: credits Jan..Apr
    # 6,000,000 - January 1,500,000 = 4,500,000 = April 1,500,000 + arrears Feb, Mar
    before_april = [r for r in ledger.receivables("2025-03") if r["debtor"] == "beneficiary"]
    assert before_april == []
    pay(ledger, "2025-04")
    assert lines(ledger, "2025-04") == [regular("2025-04", 1_500_000, 3_000_000)]

    owing = ledger.receivables("2025-04")
    assert [(r["debtor"], r["debtor_personal_id"], r["amount"]) for r in owing] == [
        ("funeral claimant", CLAIMANT, 13_000_000)
    ]
    assert owing[0]["personal_id"] == PID
    assert owing[0]["registration_number"] == f"KT-{PID[-6:]} (revoked)"


def test_receivables_and_explain_agree_on_the_months_an_overpayment_covers(
    ledger: Ledger, files: Files
) -> None:
    """A failed April line repaid in May, then a termination back-dated to April: May's line
    paid both April and May, so the overpayment covers April and May, in both reports."""
    from replay.explain import explain

    enrol(ledger, files, enrolment(PID, effective_month="2025-03"))
    pay(ledger, "2025-03", "2025-04")
    ledger.settle(files.settlements([settlement(f"2025-03-01-{PID}")]), MAKER)
    ledger.settle(files.settlements([settlement(f"2025-04-01-{PID}", "FAILED")]), MAKER)
    pay(ledger, "2025-05")
    assert lines(ledger, "2025-05") == [regular("2025-05", 500_000, 500_000)]
    ledger.settle(files.settlements([settlement(f"2025-05-01-{PID}")]), MAKER)
    ledger.terminate(PID, "2025-04", "moved abroad", MAKER)

    [owing] = ledger.receivables("2025-05")
    assert (owing["amount"], owing["months"]) == (1_000_000, ["2025-04", "2025-05"])
    x = explain(ledger, PID, "2025-05")
    assert x.overpayment is not None
    assert x.overpayment.months == ("2025-04", "2025-05")
    assert x.balance.receivable == 1_000_000
