"""Rule 9 through the whole payroll, for any sequence of reorganisations: every person is on
exactly one list in each period, on the list of the unit the mapping gives, and each period
pays in total what it pays with no reorganisation at all (a reorganisation moves people
between lists, never money)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.application import Ledger
from ledger.inputs import InputRejected
from ledger.months import parse_month
from tests.conftest import Files, enrolment

MAKER, CHECKER = "maker", "checker"
CODES = ("01", "02", "04", "08", "77", "79")  # 02 became 08, 77 became 79 in 2025-07
COMMUNES = ("00001", "00002", "00003")
PERIODS = ("2025-07", "2025-08", "2025-09")

IN_FORCE = ("01", "04", "08", "79")  # the units of CODES from 2025-07: what a later one maps
rows = st.one_of(
    st.tuples(st.sampled_from(IN_FORCE), st.just(""), st.sampled_from(CODES), st.just("")),
    st.tuples(
        st.sampled_from(IN_FORCE),
        st.sampled_from(COMMUNES),
        st.sampled_from(CODES),
        st.sampled_from(COMMUNES),
    ),
)
reorganisations = st.lists(
    st.tuples(st.sampled_from(PERIODS[1:]), st.lists(rows, min_size=1, max_size=3)),
    min_size=1,
    max_size=3,
)
residents = st.lists(
    st.tuples(st.sampled_from(CODES), st.sampled_from(COMMUNES)), min_size=4, max_size=10
)


def month_by_month(
    root: Path, people: list[tuple[str, str]], reorganised: list[tuple[str, list[tuple]]]
) -> tuple[dict[str, dict[str, list[str]]], dict[str, int], list[tuple[str, list[tuple]]]]:
    """Each period's lines (person -> payment ids), its total, and the reorganisations in force
    (those the ledger accepted), on a store of its own."""
    files = Files(root)
    ids = [f"0012345{i:05d}" for i in range(len(people))]
    kept = []
    with Ledger(f"sqlite:///{root / 'ledger.sqlite'}") as ledger:
        ledger.enrol(
            files.enrolments(
                [
                    enrolment(pid, province_code=p, commune_code=c, effective_month="2025-07")
                    for pid, (p, c) in zip(ids, people, strict=True)
                ]
            ),
            MAKER,
        )
        for month, mapping in reorganised:
            path = files.units([(month, *row) for row in mapping])
            try:
                imported = ledger.import_units(path, MAKER)
            except InputRejected:
                continue  # a mapping the ledger refuses (a cycle, a code twice): not in force
            if imported.unchanged is None:  # else: the same one again, already in force
                ledger.approve_reference_changes(CHECKER)
                kept.append((month, mapping))
        lines: dict[str, dict[str, list[str]]] = {}
        totals: dict[str, int] = {}
        for period in PERIODS:
            ledger.run_payroll(period, None, MAKER)
            ledger.approve_payroll(period, None, CHECKER)
            lines[period] = {}
            for pid, payment_id in ledger.db.query(
                "SELECT personal_id, payment_id FROM payment_lines WHERE period = ?", (period,)
            ):
                lines[period].setdefault(pid, []).append(payment_id)
            totals[period] = ledger.db.query(
                "SELECT COALESCE(SUM(total_amount), 0) FROM payment_lines WHERE period = ?",
                (period,),
            )[0][0]
    return lines, totals, kept


def expected_province(
    recorded: tuple[str, str], kept: list[tuple[str, list[tuple]]], period: str
) -> str:
    """The unit by hand: the 2025 merger from July, then each accepted reorganisation in
    force, in order of month (then as imported); a commune's row before its province's."""
    merger = {"02": "08", "77": "79"}
    unit = (merger.get(recorded[0], recorded[0]), recorded[1])
    in_force = sorted(
        (r for r in kept if parse_month(r[0]) <= parse_month(period)),
        key=lambda r: parse_month(r[0]),
    )
    for _, mapping in in_force:
        communes = {(p, c): (np, nc) for p, c, np, nc in mapping if c}
        provinces = {p: np for p, c, np, _ in mapping if not c}
        unit = communes.get(unit) or (provinces.get(unit[0], unit[0]), unit[1])
    return unit[0]


@settings(max_examples=25, deadline=None)
@given(people=residents, reorganised=reorganisations)
def test_every_person_is_on_one_list_a_period_and_totals_do_not_move(
    people: list[tuple[str, str]], reorganised: list[tuple[str, list[tuple]]]
) -> None:
    with tempfile.TemporaryDirectory() as plain, tempfile.TemporaryDirectory() as mapped:
        base_lines, base_totals, _ = month_by_month(Path(plain), people, [])
        lines, totals, kept = month_by_month(Path(mapped), people, reorganised)
    assert totals == base_totals
    ids = [f"0012345{i:05d}" for i in range(len(people))]
    for period in PERIODS:
        assert set(lines[period]) == set(ids) == set(base_lines[period])
        for pid, recorded in zip(ids, people, strict=True):
            (payment_id,) = lines[period][pid]  # exactly one line
            assert payment_id == f"{period}-{expected_province(recorded, kept, period)}-{pid}"
