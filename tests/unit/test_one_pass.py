"""Issue 10 point 5: a bad file is reported whole, in one run: format errors, errors across
fields, and references to unknown payments or people, every row, one line per problem
(`FILE: row N: FIELD: message`) in row order, and nothing applied. On the embedded store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ledger.application import Ledger
from ledger.inputs import InputRejected
from tests.conftest import REVOKE, Files, death, enrolment, settlement

P1, P2, P3 = "001000000001", "001000000002", "001000000003"
STRANGER = "001888888801"  # dead, never enrolled


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path / 'store' / 'ledger.sqlite'}") as opened:
        yield opened


def refusal(run: object) -> list[str]:
    assert isinstance(run, pytest.ExceptionInfo)
    assert isinstance(run.value, InputRejected)
    return run.value.problems


def snapshot(ledger: Ledger) -> tuple[object, ...]:
    return tuple(
        ledger.db.query(f"SELECT * FROM {table} ORDER BY 1")
        for table in ("beneficiaries", "deaths", "payment_lines", "settlement_files")
    )


def test_a_settlement_file_is_reported_whole(ledger: Ledger, files: Files) -> None:
    ledger.enrol(
        files.enrolments([enrolment(p, effective_month="2025-07") for p in (P1, P2, P3)]), "maker"
    )
    ledger.run_payroll("2025-07", None, "maker")
    ledger.approve_payroll("2025-07", None, "checker")
    ledger.settle(files.settlements([settlement(f"2025-07-01-{P1}", "PAID")]), "bank")
    before = snapshot(ledger)
    path = files.settlements(
        [
            settlement("2025-07-01-0010000000", "PAID"),  # row 2: format
            settlement("2025-07-01-001000000999", "PAID"),  # row 3: unknown payment
            settlement(f"2025-07-01-{P1}", "FAILED", reason="closed"),  # row 4: PAID -> FAILED
            settlement(f"2025-07-01-{P2}", "PAID"),  # row 5: fine, and not applied
            settlement(f"2025-07-01-{P3}", "FAILED", reason=""),  # row 6: across fields
            settlement("2025-06-01-001000000001", "PAID"),  # row 7: no list for June
            settlement(f"2025-07-01-{P2}", "PAID"),  # row 8: twice in the file
        ]
    )
    with pytest.raises(InputRejected) as run:
        ledger.settle(path, "bank")
    name = path.name
    assert refusal(run) == [
        f"{name}: row 2: payment_id: must be a payment id such as 2025-07-27-001234567890 "
        "(F appended for a funeral line), got '2025-07-01-0010000000'",
        f"{name}: row 3: payment_id: unknown payment 2025-07-01-001000000999",
        f"{name}: row 4: status: payment 2025-07-01-{P1} is PAID and cannot become FAILED",
        f"{name}: row 6: reason: is required for FAILED",
        f"{name}: row 7: payment_id: unknown payment 2025-06-01-001000000001",
        f"{name}: row 8: payment_id: 2025-07-01-{P2} is already on row 5",
    ]
    assert snapshot(ledger) == before  # nothing applied, not even row 5


def test_an_enrolment_file_is_reported_whole(ledger: Ledger, files: Files) -> None:
    ledger.enrol(files.enrolments([enrolment(P1)]), "maker")
    ledger.import_deaths(files.deaths([death(STRANGER, date_of_death="2025-07-01")]), "registry")
    before = snapshot(ledger)
    path = files.enrolments(
        [
            enrolment(P2),  # row 2: fine, and not enrolled
            enrolment("12345"),  # row 3: format
            enrolment(P3, channel="BANK", bank_code="VCB"),  # row 4: across fields
            enrolment(P2),  # row 5: twice in the file
            enrolment(P1),  # row 6: already enrolled
            enrolment(STRANGER),  # row 7: recorded dead
            enrolment("001000000009", commune_code="٠٠٠٠١"),  # row 8: Arabic-Indic digits
        ]
    )
    with pytest.raises(InputRejected) as run:
        ledger.enrol(path, "maker")
    name = path.name
    assert refusal(run) == [
        f"{name}: row 3: personal_id: must be 12 digits 0-9, got '12345'",
        f"{name}: row 4: account_number: is required when the channel is BANK",
        f"{name}: row 5: personal_id: {P2} is already on row 2",
        f"{name}: row 6: personal_id: {P1} is already enrolled",
        f"{name}: row 7: personal_id: {STRANGER} has a death registration in force and "
        "cannot be enrolled",
        f"{name}: row 8: commune_code: must be 5 digits 0-9, got '٠٠٠٠١'",
    ]
    assert snapshot(ledger) == before


def test_a_deaths_file_is_reported_whole(ledger: Ledger, files: Files) -> None:
    ledger.enrol(files.enrolments([enrolment(p) for p in (P1, P2, P3)]), "maker")
    before = snapshot(ledger)
    path = files.deaths(
        [
            death(P1),  # row 2: fine, and not recorded
            death(P2, event_id="not-a-uuid"),  # row 3: format
            death(P3, date_of_death="2025-07-25"),  # row 4: after registered_at
            death(P3, event_type="CORRECTED", registration_number="KT-X"),  # row 5: unknown
            death(STRANGER, registration_number="KT-Y", **REVOKE),  # row 6: unknown
            death(P2, claimant_channel="BANK"),  # row 7: across fields
        ]
    )
    with pytest.raises(InputRejected) as run:
        ledger.import_deaths(path, "registry")
    name = path.name
    assert refusal(run) == [
        f"{name}: row 3: event_id: must be a UUID, got 'not-a-uuid'",
        f"{name}: row 4: date_of_death: 2025-07-25 is after the day registered_at falls on "
        "in Vietnam (2025-07-20)",
        f"{name}: row 5: registration_number: corrected of unknown registration KT-X",
        f"{name}: row 6: registration_number: revoked of unknown registration KT-Y",
        f"{name}: row 7: claimant_account_number: is required when the channel is BANK",
        f"{name}: row 7: claimant_bank_code: is required when the channel is BANK",
    ]
    assert snapshot(ledger) == before


def test_a_file_with_only_format_errors_is_reported_and_nothing_applied(
    ledger: Ledger, files: Files
) -> None:
    path = files.enrolments([enrolment(P1), enrolment(P2, sex="X"), enrolment(P3)])
    with pytest.raises(InputRejected) as run:
        ledger.enrol(path, "maker")
    problems = refusal(run)
    assert len(problems) == 1 and problems[0].startswith(f"{path.name}: row 3: sex: ")
    assert ledger.db.query("SELECT COUNT(*) FROM beneficiaries") == [(0,)]


def test_a_file_that_cannot_be_read_as_the_contract_says_is_refused_at_once(
    ledger: Ledger, tmp_path: Path
) -> None:
    path = tmp_path / "settle.csv"
    path.write_text("payment_id,status\n2025-07-01-001000000001,PAID\n", encoding="utf-8")
    with pytest.raises(InputRejected) as run:
        ledger.settle(path, "bank")
    problems = refusal(run)
    assert len(problems) == 1 and problems[0].startswith("settle.csv: row 1: header: ")


def test_a_row_with_a_format_error_is_still_checked_against_the_ledger(
    tmp_path: Path, files: Files
) -> None:
    """Its other fields, each fine on its own, are checked across fields and against the
    ledger in the same run: a duplicate, an unknown payment, a missing bank detail."""
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
        enrolled = "007000000001"
        ledger.enrol(files.enrolments([enrolment(enrolled)]), "maker")
        people = files.enrolments(
            [
                # a bad province, and a BANK row without its bank details
                enrolment("007000000002", province_code="99", channel="BANK"),
                enrolment("007000000003", date_of_birth="1940-13-01"),  # a bad date...
                enrolment("007000000003"),  # ...and the same person again
                enrolment(enrolled, sex="X"),  # a bad sex, and already enrolled
            ]
        )
        found = refusals(ledger.enrol, people)
        assert "row 2: account_number: is required when the channel is BANK" in found
        assert "row 2: bank_code: is required when the channel is BANK" in found
        assert any(p.startswith("row 2: province_code: ") for p in found)
        assert any(p.startswith("row 3: date_of_birth: ") for p in found)
        assert "row 4: personal_id: 007000000003 is already on row 3" in found
        assert f"row 5: personal_id: {enrolled} is already enrolled" in found
        assert any(p.startswith("row 5: sex: ") for p in found)

        ledger.run_payroll("2025-07", None, "maker")
        ledger.approve_payroll("2025-07", None, "checker")
        results = files.settlements(
            [
                settlement("2025-07-01-007000009999", "FAILED", reason=""),  # unknown, no reason
                settlement(f"2025-07-01-{enrolled}", settled_at="yesterday"),
            ]
        )
        found = refusals(ledger.settle, results)
        assert "row 2: payment_id: unknown payment 2025-07-01-007000009999" in found
        assert "row 2: reason: is required for FAILED" in found
        assert any(p.startswith("row 3: settled_at: ") for p in found)
        assert len(found) == 3


def refusals(command: Callable[[Path, str], object], path: Path) -> list[str]:
    """The problem lines of a refused file, without the file's name."""
    with pytest.raises(InputRejected) as refused:
        command(path, "operator")
    return [p.split(": ", 1)[1] for p in refused.value.problems]


def test_a_status_change_is_checked_in_a_row_with_other_problems_too(
    ledger: Ledger, files: Files
) -> None:
    """Issue 11: once a file is bad its rows are not kept whole, yet the payment and status
    of each, fine on their own, are still checked against the lists."""
    ledger.enrol(files.enrolments([enrolment(P1), enrolment(P2)]), "maker")
    ledger.run_payroll("2025-07", None, "maker")
    ledger.approve_payroll("2025-07", None, "checker")
    ledger.settle(files.settlements([settlement(f"2025-07-01-{P1}", "PAID")]), "bank")
    before = snapshot(ledger)
    path = files.settlements(
        [
            settlement(f"2025-07-01-{P2}", "PAID"),  # row 2: fine, and not applied
            settlement(f"2025-07-01-{P1}", "FAILED", settled_at="yesterday"),  # row 3: both
            settlement(f"2025-07-01-{P2}", "PAID", reference=""),  # row 4: repeat, no reference
        ]
    )
    with pytest.raises(InputRejected) as run:
        ledger.settle(path, "bank")
    name = path.name
    assert refusal(run) == [
        f"{name}: row 3: settled_at: must be an ISO 8601 time with offset, got 'yesterday'",
        f"{name}: row 3: status: payment 2025-07-01-{P1} is PAID and cannot become FAILED",
        f"{name}: row 4: payment_id: 2025-07-01-{P2} is already on row 2",
        f"{name}: row 4: reference: is required for PAID",
    ]
    assert snapshot(ledger) == before
