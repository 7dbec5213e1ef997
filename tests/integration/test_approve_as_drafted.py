"""A list is approved as it was drafted. A death registered between the draft and the approval
does not refuse the approval: the line is paid as drafted and the next list recovers what it
paid after the death. What would make the draft wrong to pay (a hold, a move, an approval in
the province since, a kept entry changed) refuses it, with nothing recorded."""

from __future__ import annotations

import pytest

from ledger.aggregates import PaymentList, payment_list_id
from ledger.application import Ledger
from ledger.rules import RuleViolation
from tests.conftest import NO_CLAIMANT, Files, death, enrolment

pytestmark = pytest.mark.integration

PEOPLE = [f"0010{n:08d}" for n in range(300)]  # enough for PostgreSQL's COPY path


def lines_of(ledger: Ledger, period: str) -> list[tuple[object, ...]]:
    return ledger.db.query(
        "SELECT payment_id, kind, total_amount FROM payment_lines WHERE period = ?"
        " ORDER BY payment_id",
        (period,),
    )


def status_of(ledger: Ledger, period: str) -> str:
    return str(
        ledger.db.query("SELECT status FROM payment_lists WHERE period = ?", (period,))[0][0]
    )


def enrolled(ledger: Ledger, files: Files) -> Ledger:
    ledger.enrol(files.enrolments([enrolment(p) for p in PEOPLE]), "maker")
    return ledger


def test_deaths_after_the_draft_are_paid_as_drafted_and_recovered_next_month(
    ledger: Ledger, files: Files
) -> None:
    enrolled(ledger, files)
    ledger.run_payroll("2025-07", "01", "maker")
    drafted = [
        (ln.payment_id, ln.kind, ln.total_amount) for ln in ledger.draft("2025-07", "01").lines
    ]
    dead = PEOPLE[:5]
    ledger.import_deaths(
        files.deaths([death(p, date_of_death="2025-05-15") for p in dead]), "registry"
    )

    (summary,) = ledger.approve_payroll("2025-07", "01", "checker")

    assert summary.status == "APPROVED"
    assert summary.deaths_since_draft == 5
    assert lines_of(ledger, "2025-07") == drafted
    # once approved, what was kept is in the list's events: the entries go
    assert ledger.db.query("SELECT COUNT(*) FROM kept_draft_entries") == [(0,)]
    # January to July at 500,000: the dead are paid as drafted, as regular lines
    assert drafted[0] == (f"2025-07-01-{dead[0]}", "REGULAR", 3_500_000)
    # August: the funeral allowance (20 x 500,000) less June and July paid after the death
    ledger.run_payroll("2025-08", "01", "maker")
    ledger.approve_payroll("2025-08", "01", "checker")
    august = {pid: (kind, total) for pid, kind, total in lines_of(ledger, "2025-08")}
    assert august[f"2025-08-01-{dead[0]}F"] == ("FUNERAL", 9_000_000)
    assert august[f"2025-08-01-{PEOPLE[5]}"] == ("REGULAR", 500_000)


def test_a_hold_after_the_draft_refuses_it_and_the_new_draft_leaves_the_person_out(
    ledger: Ledger, files: Files
) -> None:
    enrolled(ledger, files)
    ledger.run_payroll("2025-07", "01", "maker")
    ledger.hold(PEOPLE[0], "not found at home", "officer")

    with pytest.raises(RuleViolation, match="1 of its people changed since it was drafted"):
        ledger.approve_payroll("2025-07", "01", "checker")
    assert status_of(ledger, "2025-07") == "DRAFT"
    assert lines_of(ledger, "2025-07") == []

    ledger.run_payroll("2025-07", "01", "maker")
    ledger.approve_payroll("2025-07", "01", "checker")
    paid = {pid for pid, _, _ in lines_of(ledger, "2025-07")}
    assert f"2025-07-01-{PEOPLE[0]}" not in paid and len(paid) == len(PEOPLE) - 1


@pytest.mark.parametrize(
    "change",
    [
        {
            "event_type": "CORRECTED",
            "claimant_personal_id": "008888888888",
            "claimant_name": "Con gái",
            "claimant_channel": "BANK",
            "claimant_bank_code": "VCB",
            "claimant_account_number": "0011223344",
        },
        {"event_type": "REVOKED", **NO_CLAIMANT},
    ],
    ids=["claimant-corrected", "registration-revoked"],
)
def test_a_funeral_line_whose_death_was_corrected_or_revoked_since_the_draft_is_refused(
    ledger: Ledger, files: Files, change: dict[str, str]
) -> None:
    """Paid as drafted, the funeral line would go to a claimant (or under a registration) no
    longer in force, and no balance of the person owed would recover it."""
    enrolled(ledger, files)
    dead = PEOPLE[0]
    ledger.import_deaths(files.deaths([death(dead, date_of_death="2025-06-15")]), "registry")
    ledger.run_payroll("2025-07", "01", "maker")
    funeral = f"2025-07-01-{dead}F"
    assert funeral in {ln.payment_id for ln in ledger.draft("2025-07", "01").lines}
    ledger.import_deaths(
        files.deaths([death(dead, date_of_death="2025-06-15", **change)]), "registry"
    )

    with pytest.raises(RuleViolation, match="1 of its people changed since it was drafted"):
        ledger.approve_payroll("2025-07", "01", "checker")
    assert status_of(ledger, "2025-07") == "DRAFT"

    ledger.run_payroll("2025-07", "01", "maker")
    ledger.approve_payroll("2025-07", "01", "checker")
    paid = {pid: (kind, total) for pid, kind, total in lines_of(ledger, "2025-07")}
    if change["event_type"] == "REVOKED":  # alive again: January to July to the person
        assert funeral not in paid and paid[f"2025-07-01-{dead}"] == ("REGULAR", 3_500_000)
    else:
        (row,) = ledger.db.query(
            "SELECT payee_personal_id, channel FROM payment_lines WHERE payment_id = ?",
            (funeral,),
        )
        assert row == ("008888888888", "BANK")


def test_a_correction_of_the_date_of_death_alone_leaves_the_funeral_line_approvable(
    ledger: Ledger, files: Files
) -> None:
    """No claimant named: the claimant in force stays, and rule 2 settles the new date."""
    enrolled(ledger, files)
    dead = PEOPLE[0]
    ledger.import_deaths(files.deaths([death(dead, date_of_death="2025-06-15")]), "registry")
    ledger.run_payroll("2025-07", "01", "maker")
    drafted = [
        (ln.payment_id, ln.kind, ln.total_amount) for ln in ledger.draft("2025-07", "01").lines
    ]
    ledger.import_deaths(
        files.deaths(
            [death(dead, event_type="CORRECTED", date_of_death="2025-05-15", **NO_CLAIMANT)]
        ),
        "registry",
    )

    (summary,) = ledger.approve_payroll("2025-07", "01", "checker")
    assert (summary.status, summary.deaths_since_draft) == ("APPROVED", 1)
    assert lines_of(ledger, "2025-07") == drafted


def test_a_kept_entry_changed_after_the_draft_refuses_the_approval(
    ledger: Ledger, files: Files
) -> None:
    enrolled(ledger, files)
    ledger.run_payroll("2025-07", "01", "maker")
    with ledger.db.transaction() as cursor:  # anyone with the database
        cursor.execute(
            "UPDATE kept_draft_entries SET entry = REPLACE(entry, '3500000', '35000000')"
            " WHERE personal_id = ?",
            (PEOPLE[7],),
        )

    with pytest.raises(RuleViolation, match="or someone changed them"):
        ledger.approve_payroll("2025-07", "01", "checker")
    assert status_of(ledger, "2025-07") == "DRAFT"
    assert lines_of(ledger, "2025-07") == []


def test_a_kept_entry_changed_while_the_approval_records_refuses_it_all(
    ledger: Ledger, files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The approval reads the kept entries once, checking them as it makes the lines and the
    postings it records a chunk at a time: an entry changed in the last chunk, after many
    chunks were made, refuses the whole approval, with nothing recorded."""
    enrolled(ledger, files)
    ledger.run_payroll("2025-07", "01", "maker")
    drafts = ledger.ports.drafts
    entries = drafts.entries
    readings: list[str] = []

    def changed_after_the_check(list_id: str) -> object:
        readings.append(list_id)
        for personal_id, entry in entries(list_id):
            if personal_id == PEOPLE[-1]:  # the last line's chunk
                entry = entry.replace("3500000", "35000000")
            yield personal_id, entry

    monkeypatch.setattr(drafts, "entries", changed_after_the_check)
    monkeypatch.setattr(ledger, "LINE_CHUNK", 50)  # the change comes chunks after the first
    with pytest.raises(RuleViolation, match="its entries are not those its draft recorded"):
        ledger.approve_payroll("2025-07", "01", "checker")
    assert len(readings) == 1
    monkeypatch.undo()
    ledger.catch_up()
    assert status_of(ledger, "2025-07") == "DRAFT"
    assert lines_of(ledger, "2025-07") == []
    assert ledger.db.query(
        "SELECT COUNT(*) FROM audit_trail WHERE event_type LIKE 'PaymentList.%'"
        " AND event_type NOT IN ('PaymentList.Opened', 'PaymentList.Drafted')"
    ) == [(0,)]
    # the same draft, read the same each time, is approved
    (summary,) = ledger.approve_payroll("2025-07", "01", "checker")
    assert summary.status == "APPROVED" and summary.lines == len(PEOPLE)


def test_a_kept_entry_moved_to_another_person_refuses_the_approval(
    ledger: Ledger, files: Files
) -> None:
    """The approval fences the people the entries name: renaming one (to hide a mover from
    the fence) is refused."""
    enrolled(ledger, files)
    ledger.run_payroll("2025-07", "01", "maker")
    ledger.move(PEOPLE[3], "04", "00001", "officer")
    with ledger.db.transaction() as cursor:
        cursor.execute(
            "UPDATE kept_draft_entries SET personal_id = ? WHERE personal_id = ?",
            ("009999999999", PEOPLE[3]),
        )

    with pytest.raises(RuleViolation, match="the draft kept for its approval was changed"):
        ledger.approve_payroll("2025-07", "01", "checker")
    assert status_of(ledger, "2025-07") == "DRAFT"


def test_an_approval_in_the_province_after_the_draft_refuses_it_and_nothing_is_paid_twice(
    ledger: Ledger, files: Files
) -> None:
    enrolled(ledger, files)
    ledger.run_payroll("2025-08", "01", "maker")  # drafted before July is paid
    ledger.run_payroll("2025-07", "01", "maker")
    ledger.approve_payroll("2025-07", "01", "checker")

    with pytest.raises(RuleViolation, match="was approved after this draft was made"):
        ledger.approve_payroll("2025-08", "01", "checker")
    assert status_of(ledger, "2025-08") == "DRAFT"

    ledger.run_payroll("2025-08", "01", "maker")
    ledger.approve_payroll("2025-08", "01", "checker")
    assert {total for _, _, total in lines_of(ledger, "2025-08")} == {500_000}


def test_a_draft_recorded_before_drafts_were_kept_is_drafted_again() -> None:
    payment_list = PaymentList(period="2025-07", province_code="01", actor="maker", source="t")
    # a Drafted event as stores recorded it before: without the facts of its draft
    payment_list._drafted(
        digest="d",
        line_count=0,
        total_amount=0,
        bank_amount=0,
        receivable_amount=0,
        actor="maker",
        source="t",
    )
    with pytest.raises(RuleViolation, match="before drafts were kept"):
        payment_list.approve("checker", "t")
    assert not payment_list.is_approved


def test_entries_an_approval_left_behind_go_with_the_next_run(ledger: Ledger, files: Files) -> None:
    """An approval that stopped after its events were recorded, before it discarded its
    list's kept entries: the next run of any list drops them, and keeps its own."""
    enrolled(ledger, files)
    ledger.run_payroll("2025-07", "01", "maker")
    july = str(payment_list_id("2025-07", "01"))
    kept = ledger.db.query(
        "SELECT list_id, seq, personal_id, entry FROM kept_draft_entries ORDER BY seq"
    )
    assert len(kept) == len(PEOPLE) and {row[0] for row in kept} == {july}
    ledger.approve_payroll("2025-07", "01", "checker")
    with ledger.db.transaction(lock=()) as cursor:  # as if the approval had stopped there
        cursor.executemany(
            "INSERT INTO kept_draft_entries (list_id, seq, personal_id, entry) VALUES (?, ?, ?, ?)",
            kept,
        )

    ledger.run_payroll("2025-08", "01", "maker")

    left = ledger.db.query("SELECT list_id, COUNT(*) FROM kept_draft_entries GROUP BY list_id")
    assert left == [(str(payment_list_id("2025-08", "01")), len(PEOPLE))]
