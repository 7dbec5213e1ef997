"""Safeguards an operator or an auditor relies on beyond the payment rules themselves: no two
approvals pay from the same balances, maker is never checker, periods in order and never in
the future, sane reference data, inputs kept byte for byte, every event traceable."""

from __future__ import annotations

from datetime import date

import pytest

from ledger import views
from ledger.aggregates import PAYROLL_REGISTER_ID, PaymentList, PayrollRegister
from ledger.application import Ledger
from ledger.inputs import InputRejected
from ledger.rules import RuleViolation
from ledger.service_layer import payroll, reference
from tests.conftest import Files, death, enrolment, events_table, settlement

A, B = "001000000001", "001000000002"


def lines(ledger: Ledger, period: str) -> list[tuple[str, int, int]]:
    return ledger.db.query(
        "SELECT payment_id, regular_amount, arrears_amount FROM payment_lines"
        " WHERE period = ? ORDER BY payment_id",
        (period,),
    )


def test_two_approvals_at_once_cannot_both_pay(
    ledger: Ledger, files: Files, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.enrol(files.enrolments([enrolment(A, effective_month="2025-07")]), "maker")
    ledger.run_payroll("2025-07", None, "maker")
    ledger.run_payroll("2025-08", None, "maker")
    with Ledger(store_url) as other:
        # the other approver read the register and the balances before this approval was
        # recorded: it would pay July again as arrears in August
        stale_register = payroll.register(other.ports, "01", "checker")
        stale_accounts = list(views.accounts(other.db, "b.province_code = ?", ("01",)))
        ledger.approve_payroll("2025-07", None, "checker")
        with monkeypatch.context() as stale:
            stale.setattr(payroll, "register", lambda ports, code, actor: stale_register)
            stale.setattr(views, "accounts", lambda *_, **__: iter(stale_accounts))
            with pytest.raises(
                RuleViolation, match="another approval in 01 was recorded at the same time"
            ):
                other.approve_payroll("2025-08", None, "checker")
    ledger.catch_up()
    assert lines(ledger, "2025-08") == []
    # run again, August pays August only: July is not paid a second time as arrears
    ledger.run_payroll("2025-08", None, "maker")
    ledger.approve_payroll("2025-08", None, "checker")
    assert lines(ledger, "2025-07") == [("2025-07-01-001000000001", 500_000, 0)]
    assert lines(ledger, "2025-08") == [("2025-08-01-001000000001", 500_000, 0)]


def test_a_mover_is_never_paid_by_two_provinces_approving_at_once(
    ledger: Ledger, files: Files, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Province 01 computes its list with A on it; meanwhile A moves to 79 and 79's list,
    with A on it, is approved. 01's approval is refused at its save (A moved after what it
    computed from); its other people are paid once it is drawn up again, A only in 79."""
    july = {"effective_month": "2025-07"}
    ledger.enrol(files.enrolments([enrolment(A, **july), enrolment(B, **july)]), "maker")
    ledger.run_payroll("2025-07", None, "maker")
    approve = PaymentList.approve
    meanwhile: list[str] = []

    def approve_while_a_moves(self: PaymentList, *args: object, **kwargs: object) -> None:
        approve(self, *args, **kwargs)  # computed: A is on 01's list
        if self.province_code == "01" and not meanwhile:
            meanwhile.append("moved")
            with Ledger(store_url) as other:
                other.move(A, "79", "26734", "maker")
                other.run_payroll("2025-07", "79", "maker")
                other.approve_payroll("2025-07", "79", "checker2")

    with monkeypatch.context() as racing:
        racing.setattr(PaymentList, "approve", approve_while_a_moves)
        with pytest.raises(RuleViolation, match="1 of its people changed since it was drafted"):
            ledger.approve_payroll("2025-07", "01", "checker")
    ledger.catch_up()
    assert lines(ledger, "2025-07") == [("2025-07-79-001000000001", 500_000, 0)]
    ledger.run_payroll("2025-07", "01", "maker")
    ledger.approve_payroll("2025-07", "01", "checker")
    assert lines(ledger, "2025-07") == [
        ("2025-07-01-001000000002", 500_000, 0),
        ("2025-07-79-001000000001", 500_000, 0),
    ]


def test_whoever_drew_up_the_lines_cannot_approve_them(ledger: Ledger, files: Files) -> None:
    ledger.enrol(files.enrolments([enrolment(A)]), "maker")
    ledger.run_payroll("2025-07", None, "alice")
    ledger.run_payroll("2025-07", None, "bob")  # the same lines drafted again
    for drafter in ("alice", "bob"):
        with pytest.raises(InputRejected, match=f"{drafter} drafted the list"):
            ledger.approve_payroll("2025-07", None, drafter)
    ledger.approve_payroll("2025-07", None, "carol")
    assert ledger.summaries("2025-07")[0].approved_by == "carol"


def test_a_future_period_is_refused(store_url: str, files: Files) -> None:
    with Ledger(store_url, today=lambda: date(2025, 7, 31)) as ledger:
        ledger.enrol(files.enrolments([enrolment(A)]), "maker")
        with pytest.raises(RuleViolation, match="2025-08 is in the future"):
            ledger.run_payroll("2025-08", None, "maker")
        ledger.run_payroll("2025-07", None, "maker")
        assert [s.lines for s in ledger.summaries("2025-07")] == [1]


def test_periods_are_paid_in_order(ledger: Ledger, files: Files) -> None:
    ledger.enrol(files.enrolments([enrolment(A)]), "maker")
    ledger.run_payroll("2025-08", None, "maker")
    ledger.approve_payroll("2025-08", None, "checker")
    with pytest.raises(RuleViolation, match="2025-08 is already approved in province 01"):
        ledger.run_payroll("2025-07", "01", "maker")
    # over all provinces, the earlier period is simply not drawn up where it is too late
    assert ledger.run_payroll("2025-07", None, "maker") == []


def test_a_store_from_before_parallel_approvals_keeps_its_periods_in_order(
    ledger: Ledger, files: Files
) -> None:
    """A store whose approvals went through the one register all provinces shared: its
    approvals still order the periods, though new ones go to each province's register."""
    ledger.enrol(files.enrolments([enrolment(A)]), "maker")
    shared = PayrollRegister(actor="checker", source="ledger payroll approve")
    assert shared.id == PAYROLL_REGISTER_ID
    shared.record_approval("2025-08", "01", "checker", "ledger payroll approve")
    ledger.ports.events.save(shared)
    with pytest.raises(RuleViolation, match="2025-08 is already approved in province 01"):
        ledger.run_payroll("2025-07", "01", "maker")
    assert [s.province_code for s in ledger.run_payroll("2025-09", None, "maker")] == ["01"]


def test_reference_data_is_bounded_and_covers_every_month(ledger: Ledger) -> None:
    level = "standard_level"
    with pytest.raises(RuleViolation, match="positive amount of VND"):
        reference.propose_reference_change(ledger.ports, level, "2025-01", 10**20, "ministry")
    with pytest.raises(RuleViolation, match="no funeral multiplier would be in force"):
        reference.propose_reference_change(ledger.ports, level, "2020-01", 300_000, "ministry")
    reference.propose_rates(ledger.ports, "2020-01", "ministry", amount=300_000, multiplier=20)
    reference.approve_reference_changes(ledger.ports, "minister")
    ref = ledger.reference_data()
    assert ref.funeral_allowance(2020 * 12) == 6_000_000
    reference.propose_rates(ledger.ports, "2025-01", "ministry", multiplier=25)
    reference.approve_reference_changes(ledger.ports, "minister")
    assert ledger.reference_data().funeral_allowance(2025 * 12 + 6) == 25 * 500_000


def test_a_line_break_inside_a_quoted_field_is_read_as_one_field_and_refused(
    ledger: Ledger, files: Files
) -> None:
    path = files.enrolments([enrolment(A, full_name="Nguyễn\nVăn An"), enrolment(B)])
    with pytest.raises(InputRejected) as refused:
        ledger.enrol(path, "maker")
    # the quoted line break does not split the row (row 3 is B, and B is fine): it is one
    # field, refused for what it holds
    assert [p.split(": ")[1:3] for p in refused.value.problems] == [["row 2", "full_name"]]
    assert ledger.db.query("SELECT COUNT(*) FROM beneficiaries") == [(0,)]


def test_an_event_id_reused_for_another_person_is_refused(ledger: Ledger, files: Files) -> None:
    ledger.enrol(files.enrolments([enrolment(A), enrolment(B)]), "maker")
    first = death(A)
    assert ledger.import_deaths(files.deaths([first]), "registry").applied == 1
    again = death(B, event_id=first["event_id"], registration_number="KT-OTHER")
    with pytest.raises(InputRejected) as refused:
        ledger.import_deaths(files.deaths([again]), "registry")
    assert len(refused.value.problems) == 1
    assert ": row 2: event_id: " in refused.value.problems[0]
    assert "another person's death record" in refused.value.problems[0]
    assert ledger.db.query("SELECT personal_id FROM deaths WHERE in_force = 1") == [(A,)]


def test_an_event_id_resent_with_other_content_is_refused_and_with_the_same_is_unchanged(
    ledger: Ledger, files: Files
) -> None:
    ledger.enrol(files.enrolments([enrolment(A)]), "maker")
    first = death(A)
    assert ledger.import_deaths(files.deaths([first]), "registry").applied == 1
    resent = ledger.import_deaths(files.deaths([dict(first)]), "registry")
    assert (resent.applied, resent.unchanged) == (0, 1)
    moved = {**first, "date_of_death": "2025-06-30"}
    with pytest.raises(InputRejected) as refused:
        ledger.import_deaths(files.deaths([moved]), "registry")
    assert "event_id: " in refused.value.problems[0]
    assert "with other content" in refused.value.problems[0]
    assert ledger.db.query("SELECT date_of_death FROM deaths WHERE in_force = 1") == [
        (first["date_of_death"],)
    ]


def test_a_settlement_file_applied_before_changes_nothing_later(
    ledger: Ledger, files: Files
) -> None:
    ledger.enrol(files.enrolments([enrolment(A)]), "maker")
    ledger.run_payroll("2025-07", None, "maker")
    ledger.approve_payroll("2025-07", None, "checker")
    payment = "2025-07-01-001000000001"
    paid = files.settlements([settlement(payment, "PAID")])
    assert ledger.settle(paid, "bank").applied == 1
    returned = files.settlements([settlement(payment, "RETURNED", reason="unclaimed")])
    assert ledger.settle(returned, "post").applied == 1
    # the PAID file again: PAID after RETURNED would be illegal, but this very file was applied
    again = ledger.settle(paid, "bank")
    assert (again.applied, again.unchanged) == (0, 1)
    status = ledger.db.query("SELECT status FROM payment_lines WHERE payment_id = ?", (payment,))
    assert status == [("RETURNED",)]


def test_every_event_names_who_caused_it_and_from_what(ledger: Ledger, files: Files) -> None:
    ledger.enrol(files.enrolments([enrolment(A), enrolment(B)]), "maker")
    ledger.import_deaths(files.deaths([death(B)]), "registry")
    ledger.run_payroll("2025-07", None, "maker")
    ledger.approve_payroll("2025-07", None, "checker")
    ledger.settle(files.settlements([settlement("2025-07-01-001000000001")]), "bank")
    trail = ledger.db.query("SELECT event_type, actor, source FROM audit_trail")
    assert {t for t, _, _ in trail} >= {
        "Beneficiary.Enrolled",
        "DeathRecord.Registered",
        "PaymentList.Opened",
        "PaymentList.LinesIssued",
        "PaymentList.CreditsAccrued",
        "PaymentList.LinesSettled",
        "PayrollRegister.ListApproved",
    }
    assert [(t, a, s) for t, a, s in trail if not a or not s] == []
    enrolled = {s for t, _, s in trail if t == "Beneficiary.Enrolled"}
    assert enrolled == {"enrol-1.csv row 2", "enrol-1.csv row 3"}


def test_the_process_environment_cannot_swap_the_recorder(
    store_url: str, files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eventsourcing reads its settings from the environment too: a stray variable must not
    put the stock recorder (no hash chain, no immutability) under the ledger."""
    stock = {
        "sqlite": "eventsourcing.sqlite:SQLiteApplicationRecorder",
        "postgresql": "eventsourcing.postgres:PostgresApplicationRecorder",
    }["postgresql" if store_url.startswith("postgres") else "sqlite"]
    monkeypatch.setenv("APPLICATION_RECORDER_TOPIC", stock)
    monkeypatch.setenv("LEDGER_APPLICATION_RECORDER_TOPIC", stock)
    monkeypatch.setenv("POSTGRES_ENABLE_DB_FUNCTIONS", "y")
    with Ledger(store_url) as ledger:
        ledger.enrol(files.enrolments([enrolment(A), enrolment(B)]), "maker")
        events = ledger.db.query(f"SELECT COUNT(*) FROM {events_table(store_url)}")[0][0]
        chained = ledger.db.query("SELECT COUNT(*) FROM event_chain")[0][0]
    assert events == chained >= 3


def test_a_death_before_the_persons_birth_is_refused(ledger: Ledger, files: Files) -> None:
    ledger.enrol(files.enrolments([enrolment(A, date_of_birth="1940-01-01")]), "maker")
    before_birth = death(A, date_of_death="1930-01-01")
    with pytest.raises(InputRejected) as refused:
        ledger.import_deaths(files.deaths([before_birth]), "registry")
    [line] = refused.value.problems
    assert ": row 2: date_of_death: 1930-01-01 is before the person's date of birth" in line
    assert ledger.db.query("SELECT COUNT(*) FROM deaths") == [(0,)]
