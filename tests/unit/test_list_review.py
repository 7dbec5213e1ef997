"""What a list changed from the month before (ledger.list_review): the comparison's invariant,
and a month on the embedded store with each kind of change in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import list_review
from ledger.application import Ledger
from ledger.list_review import Line, compare
from tests.conftest import NO_CLAIMANT, Files, death, enrolment, new_store

PEOPLE = st.sampled_from([f"0010000000{i:02d}" for i in range(12)])
AMOUNT = st.integers(min_value=1, max_value=50_000_000)


def _line(pid: str, total: int) -> Line:
    return Line(f"2025-07-01-{pid}", pid, "01", "00001", "REGULAR", "x", total, 0)


MONTH = st.dictionaries(PEOPLE, AMOUNT, max_size=12).map(
    lambda d: [_line(p, a) for p, a in d.items()]
)


@given(MONTH, MONTH)
def test_the_difference_of_two_months_is_new_less_ended_plus_changed(
    then: list[Line], now: list[Line]
) -> None:
    new, ended, changed = compare(then, now)
    assert new.count - ended.count == len(now) - len(then)
    total_then = sum(ln.total_amount for ln in then)
    total_now = sum(ln.total_amount for ln in now)
    assert new.amount - ended.amount + changed.amount == total_now - total_then
    both = {ln.personal_id for ln in then} & {ln.personal_id for ln in now}
    assert changed.count <= len(both)
    assert new.count + len(both) == len(now)


def test_a_month_beside_the_one_before(tmp_path: Path, files: Files) -> None:
    """July pays five people; in August one is new, one is held, one moved commune, two died
    (one with a funeral line to the claimant, one with no claimant yet): each is named where
    an approver looks, and the draft's counts of who got no line are its own."""
    store = new_store("sqlite", tmp_path, None)  # type: ignore[arg-type]
    july = [f"00100000000{i}" for i in range(5)]
    with Ledger(store) as ledger:
        ledger.enrol(files.enrolments([enrolment(p) for p in july]), "maker")
        ledger.run_payroll("2025-07", None, "maker")
        ledger.approve_payroll("2025-07", None, "checker")
        ledger.enrol(files.enrolments([enrolment("001000000009")]), "maker")
        ledger.hold(july[1], "address unknown", "maker")
        ledger.move(july[2], "01", "00004", "maker")
        told = {"date_of_death": "2025-08-03", "registered_at": "2025-08-05T09:00:00+07:00"}
        ledger.import_deaths(
            files.deaths([death(july[3], **told), death(july[4], **told, **NO_CLAIMANT)]),
            "maker",
        )
        ledger.run_payroll("2025-08", None, "maker")
        (found,) = list_review.overview(ledger.db, "2025-08")
        review = list_review.review(ledger.db, "2025-08", "01")
        july_lines = {
            ln.personal_id: ln for ln in list_review.list_lines(ledger.db, "2025-07", "01")
        }
    assert found.held == 1 and found.waiting_for_claimant == 1
    assert found.previous_lines == 5 and found.line_difference == found.summary.lines - 5
    assert review.status == "DRAFT" and review.previous_lines == 5
    assert review.new.count == 1  # the new enrolment
    assert review.ended.count == 2  # the held one, the one whose death awaits a claimant
    assert review.ended.amount == sum(july_lines[p].total_amount for p in (july[1], july[4]))
    assert [ln.personal_id for ln in review.funeral] == [july[3]]
    assert review.funeral_count == 1
    assert [(m.line.personal_id, m.from_commune, m.line.commune_code) for m in review.movers] == [
        (july[2], "00001", "00004")
    ]
    assert review.new.amount - review.ended.amount + review.changed.amount == (
        review.total_amount - review.previous_total
    )


def test_a_draft_whose_entries_are_not_its_own_is_not_reviewed(
    tmp_path: Path, files: Files
) -> None:
    """While an approval replaces a draft's kept entries by its lines (or when someone
    changed them), the lines read do not add up to what the list recorded: no review."""
    store = new_store("sqlite", tmp_path, None)  # type: ignore[arg-type]
    people = [f"00100000000{i}" for i in range(3)]
    with Ledger(store) as ledger:
        ledger.enrol(files.enrolments([enrolment(p) for p in people]), "maker")
        ledger.run_payroll("2025-07", None, "maker")
        assert list_review.review(ledger.db, "2025-07", "01").lines == 3
        with ledger.db.transaction() as cursor:
            cursor.execute("DELETE FROM kept_draft_entries WHERE seq = 0")
        with pytest.raises(list_review.ListChanging, match="is changing"):
            list_review.review(ledger.db, "2025-07", "01")
        key = list_review.list_key(ledger.db, "2025-07", "01")
        ledger.run_payroll("2025-07", None, "maker")  # drafted again: whole again
        assert list_review.review(ledger.db, "2025-07", "01").lines == 3
        ledger.approve_payroll("2025-07", None, "checker")
        approved = list_review.list_key(ledger.db, "2025-07", "01")
    assert key is not None and approved is not None
    assert approved != key and approved.status == "APPROVED"  # a review kept for the draft
    assert approved.digest == key.digest  # is not the approved list's, though its digest is
